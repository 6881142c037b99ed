package handlers

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"herald/app"
	"herald/handlers/upgrade"
)

// sseRetry is the reconnect delay an EventSource is told to use.
const sseRetry = 2 * time.Second

// eventsHandler serves Server-Sent Events: the same subscriptions as the
// WebSocket route, for curl -N and the browser's EventSource. The
// request's goroutine is the stream's only writer: net/http keeps it for
// the stream anyway.
type eventsHandler struct {
	now               func() time.Time // the clock credentials expire by
	node              *app.Node
	log               *slog.Logger
	metrics           *metrics
	heartbeatInterval time.Duration
	writeTimeout      time.Duration
}

func (h *eventsHandler) stream(c echo.Context) error {
	req := c.Request()
	sub, params, err := subscribe(h.node, req, c.QueryParams(), c.RealIP(), true) // every stream can carry a "lost" event
	if err != nil {
		return err
	}
	defer sub.Close()
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
	conn := upgrade.WaitStopperFrom(req.Context())
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

	w.comment("subscribed to " + sub.Topic())
	// The stream's position comes as an event with an id and no data,
	// which sets an EventSource's Last-Event-ID without showing anything:
	// a client that reconnects before its first message then resumes from
	// where it joined and misses nothing.
	w.buf.WriteString("retry: " + strconv.FormatInt(sseRetry.Milliseconds(), 10) + "\n")
	w.buf.WriteString("id: " + strconv.FormatUint(sub.StartsAfter(), 10) + "\n\n")
	// The stream ends with an "expired" event when the credential runs
	// out; the EventSource's reconnect then meets a 401.
	expired := make(chan struct{})
	defer whenCredentialExpires(c, h.now, func() { close(expired) })()
	err = h.deliver(sub, w, req.Context().Done(), expired)
	if err == nil && errors.Is(sub.Err(), app.ErrHubClosed) {
		// Acknowledged messages go out before the stream ends.
		err = h.drain(sub, w)
	}
	if err != nil {
		h.log.Debug("event stream ended", "remote", c.RealIP(), "subscriber", sub.ID(), "err", err)
	}
	sub.Leave()
	return nil
}

// errCredentialExpired ends a stream whose token or JWT ran out.
var errCredentialExpired = errors.New("the credential expired")

// deliver writes what the subscriber is owed, a delivery at a time, until
// the subscription ends, peerGone closes, the credential expires, or a
// write fails; it returns why, unless the subscription ended or the peer
// went. A stream that falls behind catches up in a few writes rather than
// one write per message.
func (h *eventsHandler) deliver(sub *app.Subscriber, w *sseWriter, peerGone, expired <-chan struct{}) error {
	keepalive := time.NewTicker(h.heartbeatInterval)
	defer keepalive.Stop()
	var d app.Delivery
	for {
		delivered := sub.Next(&d, app.DeliveryBytes)
		w.addDelivery(&d)
		if w.pending() {
			if err := h.send(sub, w, &d); err != nil {
				return err
			}
		}
		if delivered {
			continue // more may have come while writing: take it before waiting
		}
		select {
		case <-sub.Ready():
		case <-keepalive.C:
			w.addKeepalive()
		case <-expired:
			w.addNotice(app.ExpiredNotice(sub.Topic()))
			if err := h.send(sub, w, &d); err != nil {
				return err
			}
			return errCredentialExpired
		case <-sub.Done():
			return nil
		case <-peerGone:
			return nil
		}
	}
}

// drain writes what was published to the subscriber before it ended. A
// write to a client that stopped reading fails at once (see
// upgrade.WaitStopper); the hub counts whatever is left when the
// subscriber is closed.
func (h *eventsHandler) drain(sub *app.Subscriber, w *sseWriter) error {
	var d app.Delivery
	for sub.Next(&d, app.DeliveryBytes) {
		w.addDelivery(&d)
		if err := h.send(sub, w, &d); err != nil {
			return err
		}
	}
	return nil
}

// send writes what is buffered and settles the delivery it carries.
func (h *eventsHandler) send(sub *app.Subscriber, w *sseWriter, d *app.Delivery) error {
	if err := w.flush(); err != nil {
		sub.Unsent(d, err, h.writeTimeout)
		return err
	}
	sub.Sent(d)
	return nil
}
