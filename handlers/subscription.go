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
	JSON   bool
	hub    *app.Hub
	raw    *deadlineConn
	reader *bufio.Reader // the buffer x/net reads frames from
	early  *bytes.Reader // frames that came with the handshake; nil if none
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
	// Broker registers the subscriptions; nil is app.MemoryBroker over Hub.
	Broker app.Broker
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
	if config.Broker == nil {
		config.Broker = app.NewMemoryBroker(config.Hub)
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
			sub, params, err := subscribe(config.Broker, req, c.QueryParams(), c.RealIP(), false) // text mode has no room for notices
			if err != nil {
				return err
			}
			// Released when the connection closes, which is after this
			// returns once the connection is upgraded.
			scopeOf(c).onEnd(func() { config.Hub.Unsubscribe(sub) })
			if _, ok := c.Response().Writer.(http.Hijacker); !ok {
				return errors.New("websocket upgrade: response writer cannot hijack the connection")
			}

			hijacker := &deadlineHijacker{
				ResponseWriter: c.Response().Writer,
				idleTimeout:    config.IdleTimeout,
				writeTimeout:   config.WriteTimeout,
			}
			// x/net's Conn keeps a pointer into this Server for the life
			// of the connection, so its Handler captures nothing but where
			// to put the Conn: capturing the request's writer would keep
			// net/http's buffers for the connection alive as long.
			var upgraded *websocket.Conn
			server := &websocket.Server{
				// Accept every origin, including none; x/net's default
				// handshake refuses clients that send no Origin.
				Handshake: acceptAnyOrigin,
				Handler:   func(conn *websocket.Conn) { upgraded = conn },
			}
			slim := handshakeRequest(req)
			server.ServeHTTP(hijacker, slim)
			// x/net keeps the request for the life of the connection
			// (Conn.Request) but reads its headers only in the handshake:
			// half a KiB a connection.
			slim.Header = nil
			// The connection is hijacked: there is nothing left to write,
			// and returning an error would make Echo try. x/net wrote its
			// own refusal, if any, so the log can only say it was not 101.
			if upgraded == nil {
				c.Response().Status = http.StatusBadRequest
				if hijacker.conn != nil {
					_ = hijacker.conn.closeNow()
				}
				return nil
			}
			c.Response().Status = http.StatusSwitchingProtocols
			upgraded.MaxPayloadBytes = config.MaxFrameBytes
			c.Set(subscriptionKey, &Subscription{
				Conn: upgraded, Subscriber: sub, JSON: params.json, hub: config.Hub, raw: hijacker.conn, reader: hijacker.reader, early: hijacker.early,
			})
			if err := next(c); err != nil {
				config.Logger.Warn("websocket handler failed", "remote", c.RealIP(), "err", err)
				_ = hijacker.conn.closeNow()
			}
			return nil
		}
	}
}

// handshakeRequest is what x/net needs of the request to complete the
// handshake, which is all it keeps for the life of the connection: the
// method, the URL, the host and the WebSocket headers, not every header
// the client sent.
func handshakeRequest(r *http.Request) *http.Request {
	header := make(http.Header, 8)
	for _, name := range []string{"Upgrade", "Connection", "Origin", "Sec-Websocket-Key", "Sec-Websocket-Version",
		"Sec-Websocket-Protocol", "Sec-Websocket-Extensions"} {
		if v, ok := r.Header[name]; ok {
			header[name] = v
		}
	}
	slim := &http.Request{Method: r.Method, URL: r.URL, Proto: r.Proto, ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor,
		Header: header, Host: r.Host, RemoteAddr: r.RemoteAddr, RequestURI: r.RequestURI, TLS: r.TLS}
	return slim
}

// acceptAnyOrigin is the handshake check: origins are checked before the
// upgrade, by the origin policy, so x/net's own check is not used.
func acceptAnyOrigin(*websocket.Config, *http.Request) error { return nil }

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
	reader       *bufio.Reader // set by Hijack
	early        *bytes.Reader // bytes net/http read past the handshake; nil if none
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
	// Small buffers of its own instead of net/http's 4 KiB pair, which
	// would otherwise live as long as the connection: x/net reads frame
	// headers a byte at a time from the reader and writes only pongs and
	// closes through the writer, and payloads bypass a small buffer anyway.
	// Bytes net/http has already buffered belong to the WebSocket stream.
	var reader io.Reader = conn
	if n := rw.Reader.Buffered(); n > 0 {
		buffered, _ := rw.Reader.Peek(n)
		h.early = bytes.NewReader(bytes.Clone(buffered))
		reader = io.MultiReader(h.early, conn)
	}
	h.conn = conn
	h.reader = bufio.NewReaderSize(reader, hijackBufferSize)
	return conn, bufio.NewReadWriter(h.reader, bufio.NewWriterSize(conn, hijackBufferSize)), nil
}

// hijackBufferSize is the size of each of a WebSocket connection's two
// buffers: enough for a frame header and a pong.
const hijackBufferSize = 256

// errInterrupted fails writes to a connection that has been given up on.
var errInterrupted = errors.New("connection interrupted: subscriber too slow")

// deadlineConn gives every read and write on a WebSocket connection a
// deadline, whoever makes it. Once the connection is upgraded, what x/net
// writes itself (pongs and close replies, from the reader) is diverted to
// the connection's writer, so that it never lands inside a frame that the
// writer has half written.
//
// Reads: every byte from the peer pushes the read deadline forward. x/net
// swallows pongs inside Receive, so bytes on the wire are the only sign of
// life the server sees; a peer that sends nothing for idleTimeout is dead.
type deadlineConn struct {
	net.Conn
	idleTimeout  time.Duration
	writeTimeout time.Duration
	interrupted  atomic.Bool // writes fail at once
	diverted     func([]byte) (int, error)

	// readBy is the read deadline, in Unix nanoseconds. When no reader
	// waits on the connection, a deadline that passes wakes no one, so
	// alarm, if set, calls for one at that time, to find it passed.
	readBy atomic.Int64
	alarm  *time.Timer

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

// Write is how x/net writes: its handshake reply directly, and once the
// connection is upgraded, its frames through the connection's writer.
func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.diverted != nil {
		return c.diverted(p)
	}
	return c.writeDirect(p)
}

// divert sends every later Write through write. It is set before the
// reader starts, and only the reader writes through x/net.
func (c *deadlineConn) divert(write func([]byte) (int, error)) { c.diverted = write }

// Close does nothing. x/net calls it when its handler returns, right after
// the handshake, while the connection goes on: Herald closes it with
// closeNow.
func (c *deadlineConn) Close() error { return nil }

// closeNow closes the connection.
func (c *deadlineConn) closeNow() error { return c.Conn.Close() }

// writeDirect writes p to the socket with the write timeout as its
// deadline, and clears the deadline afterwards: the writer's other writes
// never block, and the socket refuses even those once a deadline passes.
func (c *deadlineConn) writeDirect(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return 0, err
	}
	// Checked after the deadline is set: an interrupt that lands before
	// this check is seen here, and one that lands after it moves the
	// deadline to now, so either way the write is cut short.
	if c.interrupted.Load() {
		return 0, errInterrupted
	}
	n, err := c.Conn.Write(p)
	if err == nil && !c.interrupted.Load() {
		err = c.Conn.SetWriteDeadline(time.Time{})
	}
	return n, err
}

// interrupt fails the write in progress, if any, and every later one. It
// sets the flag before the deadline; Write does the opposite.
func (c *deadlineConn) interrupt() {
	c.interrupted.Store(true)
	_ = c.Conn.SetWriteDeadline(time.Now())
}

func (c *deadlineConn) extendReadDeadline() {
	c.setReadDeadline(time.Now().Add(c.idleTimeout))
}

// lingerUntil stops extending the read deadline and sets it to t, so a peer
// gets until t to answer a close frame.
func (c *deadlineConn) lingerUntil(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	c.setReadDeadline(t)
}

func (c *deadlineConn) setReadDeadline(t time.Time) {
	_ = c.Conn.SetReadDeadline(t) // a closed conn fails its next read anyway
	c.readBy.Store(t.UnixNano())
	if c.alarm != nil {
		c.alarm.Reset(time.Until(t))
	}
}

// alarmAtReadDeadline has call called whenever the read deadline passes,
// from now on. It is set before the connection is shared.
func (c *deadlineConn) alarmAtReadDeadline(call func()) {
	c.alarm = time.AfterFunc(time.Until(time.Unix(0, c.readBy.Load())), call)
}

// stopAlarm stops the alarm for good: the connection is over.
func (c *deadlineConn) stopAlarm() {
	if c.alarm != nil {
		c.alarm.Stop()
	}
}

// readDeadlinePassed reports whether a read now would time out.
func (c *deadlineConn) readDeadlinePassed() bool {
	return time.Now().UnixNano() >= c.readBy.Load()
}
