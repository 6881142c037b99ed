package handlers

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/net/websocket"

	"herald/app"
)

// Subscription is one open WebSocket connection and the hub subscription it
// feeds. The Subscription middleware creates it; the route's handler moves
// messages over it.
type Subscription struct {
	Conn       *websocket.Conn
	Subscriber *app.Subscriber
	raw        *livenessConn
}

const subscriptionKey = "herald.subscription"

// SubscriptionFrom returns the Subscription that the middleware stored in c,
// or nil outside the middleware.
func SubscriptionFrom(c echo.Context) *Subscription {
	s, _ := c.Get(subscriptionKey).(*Subscription)
	return s
}

// SubscriptionConfig configures the Subscription middleware.
type SubscriptionConfig struct {
	// Skipper skips the middleware for requests it returns true for.
	Skipper middleware.Skipper
	// Hub receives every connection's subscription. Required.
	Hub *app.Hub
	// Logger receives connection problems; nil discards them.
	Logger *slog.Logger
	// MaxFrameBytes is the largest frame a subscriber may send.
	MaxFrameBytes int
	// IdleTimeout is how long a peer may send nothing at all, not even a
	// pong, before it is taken for dead.
	IdleTimeout time.Duration
}

// DefaultSubscriptionConfig holds the defaults that SubscriptionWithConfig
// fills in; Hub has none.
var DefaultSubscriptionConfig = SubscriptionConfig{
	Skipper:       middleware.DefaultSkipper,
	MaxFrameBytes: 4 << 10,
	IdleTimeout:   40 * time.Second,
}

// SubscriptionWithConfig returns middleware that upgrades the request to a
// WebSocket, registers the connection with the hub while it is open and
// removes it when it closes. The next handler only moves messages.
//
// The subscriber is registered during the handshake, before the 101 reply
// is written: a client that has connected has subscribed, so nothing
// published after its handshake completes can miss it.
//
// Clients without an Origin header (curl, Python, other servers) are
// accepted: x/net's websocket.Handler would refuse them with 403.
//
// It panics if config has no Hub.
func SubscriptionWithConfig(config SubscriptionConfig) echo.MiddlewareFunc {
	if config.Hub == nil {
		panic("echo: subscription middleware requires a hub")
	}
	if config.Skipper == nil {
		config.Skipper = DefaultSubscriptionConfig.Skipper
	}
	if config.MaxFrameBytes <= 0 {
		config.MaxFrameBytes = DefaultSubscriptionConfig.MaxFrameBytes
	}
	if config.IdleTimeout <= 0 {
		config.IdleTimeout = DefaultSubscriptionConfig.IdleTimeout
	}
	if config.Logger == nil {
		config.Logger = slog.New(slog.DiscardHandler)
	}

	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if config.Skipper(c) {
				return next(c)
			}
			req := c.Request()
			if !isWebSocketUpgrade(req) {
				c.Response().Header().Set(echo.HeaderUpgrade, "websocket")
				return newClientError(http.StatusUpgradeRequired,
					"this is the WebSocket route: connect with a WebSocket client, not plain HTTP")
			}
			if _, ok := c.Response().Writer.(http.Hijacker); !ok {
				return errors.New("websocket upgrade: response writer cannot hijack the connection")
			}
			if config.Hub.Closed() {
				return app.ErrHubClosed
			}

			hijacker := &livenessHijacker{ResponseWriter: c.Response().Writer, idleTimeout: config.IdleTimeout}
			var sub *app.Subscriber
			defer func() {
				if sub != nil {
					config.Hub.Unsubscribe(sub)
				}
			}()
			server := websocket.Server{
				Handshake: func(_ *websocket.Config, r *http.Request) error {
					var err error
					sub, err = config.Hub.Subscribe(app.DefaultTopic, c.RealIP())
					return err
				},
				Handler: func(conn *websocket.Conn) {
					conn.MaxPayloadBytes = config.MaxFrameBytes
					c.Set(subscriptionKey, &Subscription{Conn: conn, Subscriber: sub, raw: hijacker.conn})
					if err := next(c); err != nil {
						config.Logger.Warn("websocket handler failed", "remote", c.RealIP(), "err", err)
					}
				},
			}
			server.ServeHTTP(hijacker, req)
			// The connection is hijacked and closed: there is nothing left to
			// write, and returning an error would make Echo try.
			c.Response().Status = http.StatusSwitchingProtocols
			return nil
		}
	}
}

func isWebSocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, value := range h.Values(name) {
		for part := range strings.SplitSeq(value, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// livenessHijacker hands x/net/websocket a connection wrapped in a
// livenessConn when it hijacks the request.
type livenessHijacker struct {
	http.ResponseWriter
	idleTimeout time.Duration
	conn        *livenessConn // set by Hijack
}

func (h *livenessHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	raw, rw, err := h.ResponseWriter.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// net/http leaves its request deadlines on a hijacked connection; from
	// here on each read and write sets its own.
	if err := raw.SetDeadline(time.Time{}); err != nil {
		raw.Close()
		return nil, nil, err
	}
	conn := &livenessConn{Conn: raw, idleTimeout: h.idleTimeout}
	conn.extendReadDeadline()
	// Bytes net/http has already buffered belong to the WebSocket stream.
	var reader io.Reader = conn
	if n := rw.Reader.Buffered(); n > 0 {
		buffered, _ := rw.Reader.Peek(n)
		reader = io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), conn)
	}
	h.conn = conn
	return conn, bufio.NewReadWriter(bufio.NewReader(reader), bufio.NewWriter(conn)), nil
}

// livenessConn pushes its read deadline forward whenever the peer sends
// anything. x/net/websocket answers pings and swallows pongs inside Receive,
// so bytes arriving on the wire are the only sign of life the server sees:
// a peer that answers nothing for idleTimeout is dead.
type livenessConn struct {
	net.Conn
	idleTimeout time.Duration
	closing     atomic.Bool // set once a close frame is sent; deadlines stop moving
}

func (c *livenessConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.closing.Load() {
		c.extendReadDeadline()
	}
	return n, err
}

func (c *livenessConn) extendReadDeadline() {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.idleTimeout)) // a closed conn fails its next read anyway
}

// lingerUntil stops extending the read deadline and sets it to t, so a peer
// gets until t to answer a close frame.
func (c *livenessConn) lingerUntil(t time.Time) {
	c.closing.Store(true)
	_ = c.Conn.SetReadDeadline(t)
}
