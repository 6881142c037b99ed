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
	"sync"
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
	// JSON is set when the client asked for ?format=json.
	JSON bool
	hub  *app.Hub
	raw  *deadlineConn
}

// Leave stops delivery now, before the connection finishes closing, so that
// no publish counts a subscriber that is on its way out. The middleware
// unsubscribes once the connection is closed.
func (s *Subscription) Leave() { s.hub.Leave(s.Subscriber) }

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
	// MaxFrameBytes is the largest frame payload a subscriber may send. It
	// becomes the Conn's MaxPayloadBytes, which the route's handler enforces.
	MaxFrameBytes int
	// IdleTimeout is how long a peer may send nothing at all, not even a
	// pong, before it is taken for dead.
	IdleTimeout time.Duration
	// WriteTimeout bounds every write to the connection.
	WriteTimeout time.Duration
}

// DefaultSubscriptionConfig holds the defaults that SubscriptionWithConfig
// fills in; Hub has none.
var DefaultSubscriptionConfig = SubscriptionConfig{
	Skipper:       middleware.DefaultSkipper,
	MaxFrameBytes: 4 << 10,
	IdleTimeout:   40 * time.Second,
	WriteTimeout:  10 * time.Second,
}

// SubscriptionWithConfig returns middleware that upgrades the request to a
// WebSocket, registers the connection with the hub while it is open and
// removes it when it closes. The next handler only moves messages.
//
// The request's ?topic=, ?since= and ?format= are checked first, and a bad
// one is refused with 400 before any upgrade. The subscriber is registered
// before the 101 reply is written: a client that has connected has
// subscribed, so nothing published after its handshake completes can miss
// it.
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
	if config.WriteTimeout <= 0 {
		config.WriteTimeout = DefaultSubscriptionConfig.WriteTimeout
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
			sub, params, err := subscribe(config.Hub, req, c.RealIP())
			if err != nil {
				return err
			}
			defer config.Hub.Unsubscribe(sub)
			if _, ok := c.Response().Writer.(http.Hijacker); !ok {
				return errors.New("websocket upgrade: response writer cannot hijack the connection")
			}

			hijacker := &deadlineHijacker{
				ResponseWriter: c.Response().Writer,
				idleTimeout:    config.IdleTimeout,
				writeTimeout:   config.WriteTimeout,
			}
			upgraded := false
			server := websocket.Server{
				// Accept every origin, including none; x/net's default
				// handshake refuses clients that send no Origin.
				Handshake: func(*websocket.Config, *http.Request) error { return nil },
				Handler: func(conn *websocket.Conn) {
					upgraded = true
					conn.MaxPayloadBytes = config.MaxFrameBytes
					c.Set(subscriptionKey, &Subscription{
						Conn: conn, Subscriber: sub, JSON: params.json, hub: config.Hub, raw: hijacker.conn,
					})
					if err := next(c); err != nil {
						config.Logger.Warn("websocket handler failed", "remote", c.RealIP(), "err", err)
					}
				},
			}
			server.ServeHTTP(hijacker, req)
			// The connection is hijacked and closed: there is nothing left to
			// write, and returning an error would make Echo try. x/net wrote
			// its own refusal, if any, so the log can only say it was not 101.
			if upgraded {
				c.Response().Status = http.StatusSwitchingProtocols
			} else {
				c.Response().Status = http.StatusBadRequest
			}
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

// deadlineHijacker hands x/net/websocket a connection wrapped in a
// deadlineConn when it hijacks the request.
type deadlineHijacker struct {
	http.ResponseWriter
	idleTimeout  time.Duration
	writeTimeout time.Duration
	conn         *deadlineConn // set by Hijack
}

func (h *deadlineHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	raw, rw, err := h.ResponseWriter.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// net/http has cleared its request deadlines; from here on each read
	// and write sets its own.
	conn := &deadlineConn{Conn: raw, idleTimeout: h.idleTimeout, writeTimeout: h.writeTimeout}
	conn.extendReadDeadline()
	// Keep net/http's buffers, but read and write through the deadlineConn.
	// Bytes net/http has already buffered belong to the WebSocket stream.
	var reader io.Reader = conn
	if n := rw.Reader.Buffered(); n > 0 {
		buffered, _ := rw.Reader.Peek(n)
		reader = io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), conn)
	}
	rw.Reader.Reset(reader)
	rw.Writer.Reset(conn)
	h.conn = conn
	return conn, rw, nil
}

// errInterrupted fails writes to a connection that has been given up on.
var errInterrupted = errors.New("connection interrupted: subscriber too slow")

// deadlineConn gives every read and write on a WebSocket connection a
// deadline, whoever makes it. That matters because x/net/websocket writes
// pongs and close replies itself, from the reader, outside our writer.
//
// Reads: every byte from the peer pushes the read deadline forward. x/net
// swallows pongs inside Receive, so bytes on the wire are the only sign of
// life the server sees; a peer that sends nothing for idleTimeout is dead.
type deadlineConn struct {
	net.Conn
	idleTimeout  time.Duration
	writeTimeout time.Duration
	interrupted  atomic.Bool // writes fail at once

	// mu makes "extend unless closing" one step, so a read finishing just
	// as a close frame goes out cannot push the close's deadline back.
	mu      sync.Mutex
	closing bool // a close frame is sent: the read deadline stops moving
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if !c.closing {
			c.extendReadDeadline()
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return 0, err
	}
	// Checked after the deadline is set: an interrupt that lands before
	// this check is seen here, and one that lands after it moves the
	// deadline to now, so either way the write is cut short.
	if c.interrupted.Load() {
		return 0, errInterrupted
	}
	return c.Conn.Write(p)
}

// interrupt fails the write in progress, if any, and every later one. It
// sets the flag before the deadline; Write does the opposite.
func (c *deadlineConn) interrupt() {
	c.interrupted.Store(true)
	_ = c.Conn.SetWriteDeadline(time.Now())
}

func (c *deadlineConn) extendReadDeadline() {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.idleTimeout)) // a closed conn fails its next read anyway
}

// lingerUntil stops extending the read deadline and sets it to t, so a peer
// gets until t to answer a close frame.
func (c *deadlineConn) lingerUntil(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	_ = c.Conn.SetReadDeadline(t)
}
