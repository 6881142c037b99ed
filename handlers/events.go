package handlers

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"herald/app"
)

// sseRetry is the reconnect delay an EventSource is told to use.
const sseRetry = 2 * time.Second

// eventsHandler serves Server-Sent Events: the same subscriptions as the
// WebSocket route, for curl -N and the browser's EventSource. The request's
// goroutine is the stream's only writer.
type eventsHandler struct {
	now               func() time.Time // the clock credentials expire by
	broker            app.Broker
	hub               *app.Hub
	log               *slog.Logger
	metrics           *metrics
	heartbeatInterval time.Duration
	writeTimeout      time.Duration
	drainTimeout      time.Duration
}

func (h *eventsHandler) stream(c echo.Context) error {
	req := c.Request()
	sub, params, err := subscribe(h.broker, req, c.QueryParams(), c.RealIP(), true) // every stream can carry a "lost" event
	if err != nil {
		return err
	}
	defer h.hub.Unsubscribe(sub)
	defer h.metrics.connected(transportSSE)()

	w := &sseWriter{
		response:     c.Response(),
		control:      http.NewResponseController(c.Response()),
		writeTimeout: h.writeTimeout,
		json:         params.json,
	}
	// The stream outlives the server's request timeouts: no read deadline
	// (net/http would end the request when it passed), and a deadline per
	// write instead of one for the whole response.
	if err := w.control.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	// A slow subscriber's stream is usually stuck in a write; eviction
	// breaks it at once. On shutdown, so is a write waiting for room in a
	// full socket, now or while the stream drains: a client that is not
	// reading would never get the end of its stream, and the server would
	// wait on it. That takes a connection that can stop waiting, which
	// net/http's are when Herald's server made them (see ConnContext).
	conn := waitStopperOf(req.Context().Value(connKey{}))
	stopInterrupt := sub.OnEnd(func() {
		switch {
		case sub.EndedSlow():
			w.interrupt()
		case conn != nil && errors.Is(sub.Err(), app.ErrHubClosed):
			conn.StopWaiting()
		}
	})
	defer stopInterrupt()

	header := c.Response().Header()
	header.Set(echo.HeaderContentType, "text/event-stream; charset=utf-8")
	header.Set(echo.HeaderCacheControl, "no-store")
	header.Set("X-Accel-Buffering", "no") // nginx: pass events on at once
	c.Response().WriteHeader(http.StatusOK)

	log := h.log.With("remote", c.RealIP(), "subscriber", sub.ID())
	w.comment("subscribed to " + sub.Topic())
	w.buf.WriteString("retry: " + strconv.FormatInt(sseRetry.Milliseconds(), 10) + "\n\n")
	d := &delivery{
		hub:          h.hub,
		sub:          sub,
		out:          w,
		metrics:      h.metrics,
		keepalive:    h.heartbeatInterval,
		writeTimeout: h.writeTimeout,
	}
	if expires := grantExpiry(c); !expires.IsZero() {
		// The stream ends with an "expired" event when the credential runs
		// out; the EventSource's reconnect then meets a 401.
		timer := time.NewTimer(expires.Sub(h.now()))
		defer timer.Stop()
		d.expired = timer.C
	}
	err = d.run(req.Context().Done())
	if err == nil && errors.Is(sub.Err(), app.ErrHubClosed) {
		err = d.drain(h.drainTimeout) // acknowledged messages go out before the stream ends
	}
	if err != nil {
		log.Debug("event stream ended", "err", err)
	}
	h.hub.Leave(sub)
	return nil
}

// waitStopper is a connection whose writes can stop waiting for room in a
// full socket: from then on a write that finds it full fails at once.
type waitStopper interface {
	StopWaiting()
}

// waitStopperOf is the waitStopper that conn is, or that it wraps with
// TLS; nil if there is none.
func waitStopperOf(conn any) waitStopper {
	if tlsConn, ok := conn.(interface{ NetConn() net.Conn }); ok {
		conn = tlsConn.NetConn()
	}
	stopper, _ := conn.(waitStopper)
	return stopper
}

type connKey struct{}

// ConnContext is for http.Server.ConnContext: it keeps the connection in
// the context of the requests it carries, so that an event stream can tell
// it to stop waiting on a full socket when the server shuts down.
func ConnContext(ctx context.Context, conn net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, conn)
}

// sseWriter formats events into a buffer and writes each event, or group
// of events, with its own deadline.
type sseWriter struct {
	response     *echo.Response
	control      *http.ResponseController
	writeTimeout time.Duration
	json         bool
	interrupted  atomic.Bool // writes fail at once
	buf          bytes.Buffer
}

var errStreamInterrupted = errors.New("event stream interrupted: subscriber too slow")

// addMessage adds m as one event: its id, then its text as data lines, or
// its JSON as one data line.
func (w *sseWriter) addMessage(m *app.Message) {
	w.buf.WriteString("id: ")
	w.buf.WriteString(strconv.FormatUint(m.ID, 10))
	w.buf.WriteByte('\n')
	if w.json {
		w.data(m.JSON())
	} else {
		w.text(m.Text)
	}
	w.buf.WriteByte('\n')
}

// addNotice adds a named event; such events have no id, so they leave an
// EventSource's Last-Event-ID where it was.
func (w *sseWriter) addNotice(name string, data []byte) {
	w.buf.WriteString("event: " + name + "\n")
	w.data(data)
	w.buf.WriteByte('\n')
}

// text adds one data line per line of s. SSE ends a line at CRLF, CR or LF
// and the client joins data lines with LF, so each line break arrives as LF.
func (w *sseWriter) text(s string) {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	for line := range strings.SplitSeq(s, "\n") {
		w.data(textBytes(line))
	}
}

func (w *sseWriter) data(b []byte) {
	w.buf.WriteString("data: ")
	w.buf.Write(b)
	w.buf.WriteByte('\n')
}

func (w *sseWriter) addKeepalive() { w.comment("heartbeat") }

func (w *sseWriter) pending() bool { return w.buf.Len() > 0 }

// comment adds a comment line, which clients ignore and proxies see as
// traffic.
func (w *sseWriter) comment(text string) {
	w.buf.WriteString(": " + text + "\n\n")
}

// flush writes what is buffered and pushes it to the client.
func (w *sseWriter) flush() error {
	if err := w.control.SetWriteDeadline(time.Now().Add(w.writeTimeout)); err != nil {
		return err
	}
	// Checked after the deadline is set, as deadlineConn.Write does.
	if w.interrupted.Load() {
		return errStreamInterrupted
	}
	_, err := w.response.Write(w.buf.Bytes())
	w.buf.Reset()
	if err != nil {
		return err
	}
	return w.control.Flush()
}

// interrupt fails the write in progress and every later one.
func (w *sseWriter) interrupt() {
	w.interrupted.Store(true)
	_ = w.control.SetWriteDeadline(time.Now())
}
