package handlers

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"herald/handlers/readiness"
)

// streamHandler serves the WebSocket route once the Subscription
// middleware has upgraded the connection. It hands the connection to a
// wsConn, whose reader owns it from then on, and returns at once, so that
// the request's goroutine and buffers are freed; the
// request's cleanups run when the connection closes. The writer pool
// writes to every connection.
type streamHandler struct {
	now          func() time.Time // the clock credentials expire by
	log          *slog.Logger
	metrics      *metrics
	pool         *writerPool
	readiness    *readiness.Poller // starts readers when there is something to read; nil: each connection has one for its life
	pollerFailed sync.Once         // says so once, when the Poller fails
	writeTimeout time.Duration
}

func (h *streamHandler) serve(c echo.Context) error {
	sub := SubscriptionFrom(c)
	if sub == nil {
		return errors.New("stream handler: no subscription: the route needs the Subscription middleware")
	}
	scope := scopeOf(c)
	scope.onEnd(h.metrics.connected(transportWebSocket))
	conn := newWSConn(sub, h, c.RealIP())
	sub.raw.divert(conn.sendControl) // x/net's pongs and closes go through the writer
	h.pool.add(conn)
	if expires := grantExpiry(c); !expires.IsZero() {
		// The credential was good when the client connected; when it runs
		// out, so does the subscription, with a close code that says why.
		timer := time.AfterFunc(expires.Sub(h.now()), func() { conn.requestClose(closeCredentialExpired) })
		scope.onEnd(func() { timer.Stop() })
	}
	conn.start(scope.detach())
	return nil
}
