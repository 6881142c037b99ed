package handlers

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/net/websocket"

	"herald/app"
)

// WebSocket close codes (RFC 6455, section 7.4.1).
const (
	closeNormal        = 1000
	closeGoingAway     = 1001
	closeProtocolError = 1002
	closeMessageTooBig = 1009
)

// closeLinger is how long a peer gets to answer our close frame before the
// connection is cut. Waiting for the answer, instead of closing at once,
// keeps unread bytes from turning our close into a TCP reset that could
// destroy the close frame before the peer reads it.
const closeLinger = 2 * time.Second

// Reasons the reader stops, besides the connection's own errors.
var (
	errPeerClosed   = errors.New("peer sent a close frame")
	errFrameRefused = errors.New("peer sent an unmasked frame, which x/net answered with 1002")
	errBadOpcode    = errors.New("peer sent a frame with an unknown opcode")
)

// streamHandler moves messages from a subscription to its WebSocket. Each
// connection has exactly one reader (the request's goroutine) and one
// writer (started here); only the writer writes frames.
type streamHandler struct {
	hub          *app.Hub
	log          *slog.Logger
	metrics      *metrics
	buffers      *batchBuffers
	pingInterval time.Duration
	writeTimeout time.Duration
	// drainTimeout bounds how long shutdown spends writing queued messages
	// to one subscriber.
	drainTimeout time.Duration
}

func (h *streamHandler) serve(c echo.Context) error {
	sub := SubscriptionFrom(c)
	if sub == nil {
		return errors.New("stream handler: no subscription: the route needs the Subscription middleware")
	}
	s := &session{
		Subscription: sub,
		handler:      h,
		log:          h.log.With("remote", c.RealIP(), "subscriber", sub.Subscriber.ID()),
		closeAsked:   make(chan struct{}),
		readDone:     make(chan struct{}),
	}
	defer s.handler.metrics.connected(transportWebSocket)()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.write()
	}()
	s.read()
	<-writerDone
	return nil
}

// session is the state one connection's reader and writer share.
type session struct {
	*Subscription
	handler  *streamHandler
	log      *slog.Logger
	delivery *delivery // the writer's

	closeAsked  chan struct{} // closed by the reader: close with closeReason
	closeReason *closeRequest // set once, before closeAsked closes
	closeOnce   sync.Once
	readDone    chan struct{} // closed by the reader when it stops
	readErr     error         // why the reader stopped; read only after readDone
}

// read discards what the subscriber sends until the connection ends.
func (s *session) read() {
	defer close(s.readDone)
	s.readErr = s.discardFrames()
}

// discardFrames reads and throws away the subscriber's frames, one by one.
// Reading frames rather than x/net's Receive tells a peer's close apart
// from a frame x/net refused, rejects unknown opcodes, which x/net lets
// through, checks what x/net does not (fragments, whole-message size, UTF-8
// in text), and skips payloads without holding more than one message of at
// most max_frame_bytes. A frame that breaks a rule asks the writer to close
// with the matching code, and reading goes on, discarding, so that the
// peer's answer to the close is consumed.
func (s *session) discardFrames() error {
	messages := messageChecker{limit: s.Conn.MaxPayloadBytes}
	for {
		frame, err := s.Conn.NewFrameReader()
		if err != nil {
			return err
		}
		opcode := frame.PayloadType()
		if !knownOpcode(opcode) {
			return errBadOpcode
		}
		n, first := payloadLen(frame), frameFirstByte(frame)
		if problem := headerProblem(first, opcode, n); problem != "" {
			s.askClose(&closeRequest{closeProtocolError, problem})
		}
		// The length overflows to negative near 2^63.
		if n < 0 || n > s.Conn.MaxPayloadBytes {
			s.askClose(&closeRequest{closeMessageTooBig, "a frame is over limits.max_frame_bytes"})
			if _, err := io.Copy(io.Discard, frame); err != nil {
				return err
			}
			continue
		}
		payload, err := s.Conn.HandleFrame(frame) // answers pings, refuses unmasked frames
		switch {
		case err != nil && opcode == websocket.CloseFrame:
			return errPeerClosed
		case errors.Is(err, io.EOF):
			return errFrameRefused
		case err != nil:
			return err
		case payload == nil:
			continue // a ping or pong, already answered
		}
		if isClosed(s.closeAsked) {
			if _, err := io.Copy(io.Discard, payload); err != nil {
				return err
			}
			continue
		}
		request, err := messages.frame(opcode, first&0x80 != 0, n, payload)
		if err != nil {
			return err
		}
		if request != nil {
			s.askClose(request)
		}
	}
}

// askClose asks the writer to close the connection; only the first
// request counts.
func (s *session) askClose(request *closeRequest) {
	s.closeOnce.Do(func() {
		s.closeReason = request
		close(s.closeAsked)
	})
}

// payloadLen is a frame's payload length. x/net's Len counts the header
// too, and its HeaderReader holds the header's bytes until HandleFrame
// consumes them.
func payloadLen(frame interface {
	Len() int
	HeaderReader() io.Reader
}) int {
	n := frame.Len()
	if header, ok := frame.HeaderReader().(interface{ Len() int }); ok {
		n -= header.Len()
	}
	return n
}

func knownOpcode(opcode byte) bool {
	switch opcode {
	case websocket.ContinuationFrame, websocket.TextFrame, websocket.BinaryFrame,
		websocket.CloseFrame, websocket.PingFrame, websocket.PongFrame:
		return true
	}
	return false
}

// write sends the subscriber's messages and pings until the subscription
// or the connection ends, then closes the connection the way the ending
// calls for.
func (s *session) write() {
	// A slow subscriber's writer is usually stuck in a write that the peer
	// is not reading; eviction breaks that write at once instead of letting
	// it hold the connection until its deadline.
	stopInterrupt := context.AfterFunc(s.Subscriber.Context(), func() {
		if errors.Is(s.Subscriber.Err(), app.ErrSlowSubscriber) {
			s.raw.interrupt()
		}
	})
	defer stopInterrupt()

	s.delivery = &delivery{
		hub:          s.handler.hub,
		sub:          s.Subscriber,
		out:          &wsTransport{conn: s.raw, json: s.JSON, buffers: s.handler.buffers},
		metrics:      s.handler.metrics,
		keepalive:    s.handler.pingInterval,
		writeTimeout: s.handler.writeTimeout,
	}
	err := s.delivery.run(s.readDone, s.closeAsked)
	switch {
	case err != nil:
		s.abort("write", err)
	case isClosed(s.closeAsked):
		s.log.Info("closing connection: the subscriber broke a framing rule", "code", s.closeReason.code, "reason", s.closeReason.why)
		s.close(s.closeReason.code)
	case isClosed(s.readDone):
		s.finishAfterRead()
	default:
		s.finishSubscription()
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// finishSubscription closes the connection after the hub ended the
// subscription.
func (s *session) finishSubscription() {
	switch err := s.Subscriber.Err(); {
	case errors.Is(err, app.ErrHubClosed):
		// Acknowledged messages still queued go out before the close.
		s.drain()
		s.close(closeGoingAway)
	case errors.Is(err, app.ErrSlowSubscriber):
		// The hub has logged and counted it; a close frame would only queue
		// behind the data the peer is not reading.
		s.abort("", nil)
	default:
		s.close(closeNormal)
	}
}

// finishAfterRead answers however the peer ended the connection.
func (s *session) finishAfterRead() {
	var netErr net.Error
	switch err := s.readErr; {
	case errors.Is(err, errPeerClosed):
		s.close(closeNormal) // answer the peer's close frame
	case errors.Is(err, errBadOpcode):
		s.log.Info("closing connection: bad frame from peer", "err", err)
		s.close(closeProtocolError)
	case errors.Is(err, errFrameRefused):
		s.log.Info("closing connection: bad frame from peer", "err", err)
		s.abort("", nil) // x/net has sent the close frame
	case errors.As(err, &netErr) && netErr.Timeout():
		s.log.Info("closing connection: peer silent past the idle timeout")
		s.abort("", nil)
	case errors.Is(err, net.ErrClosed):
		// the writer or the server closed it
	default:
		s.abort("read", err) // gone without a close frame, or reset
	}
}

// drain writes what was published before the shutdown, for at most
// drainTimeout. The hub counts and logs anything left when the subscriber
// is released.
func (s *session) drain() {
	if err := s.delivery.drain(s.handler.drainTimeout); err != nil {
		s.log.Debug("shutdown: write failed", "err", err)
	}
}

// close sends a close frame and gives the peer closeLinger to answer; the
// reader sees the answer, or the deadline, and the connection ends.
func (s *session) close(code int) {
	s.Leave()
	if err := s.Conn.WriteClose(code); err != nil {
		s.abort("write close", err)
		return
	}
	s.raw.lingerUntil(time.Now().Add(closeLinger))
}

// abort cuts the connection without a closing handshake.
func (s *session) abort(what string, err error) {
	s.Leave()
	if err != nil {
		s.log.Debug("connection failed", "during", what, "err", err)
	}
	_ = s.raw.Close()
}
