package ws

import (
	"errors"
	"io"
	"os"

	"golang.org/x/net/websocket"

	"herald/handlers/readiness"
)

// Reasons the reader stops, besides the connection's own errors.
var (
	errPeerClosed   = errors.New("peer sent a close frame")
	errFrameRefused = errors.New("peer sent an unmasked frame, which x/net answered with 1002")
	errBadOpcode    = errors.New("peer sent a frame with an unknown opcode")
	// errNoInput ends a reader on demand that has read everything that came.
	errNoInput = errors.New("nothing more to read for now")
)

var _ readiness.Watcher = (*Conn)(nil)

// Ready is the readiness Poller saying that something came to read.
func (c *Conn) Ready() { c.readSoon() }

// PollerFailed is the readiness Poller saying that it has stopped for
// good: the next reader stays for the connection's life, as where there is
// no Poller.
func (c *Conn) PollerFailed(err error) {
	c.server.pollerFailed.Do(func() {
		c.server.log.Error("the readiness poller failed: every WebSocket connection now has a reader goroutine of its own", "err", err)
	})
	c.unwatched.Store(true)
	c.readSoon()
}

// readSoon has a reader read what has come: it starts one, or leaves the
// request for the one running.
func (c *Conn) readSoon() {
	c.readWanted.Store(true)
	if c.reading.CompareAndSwap(false, true) {
		go c.readWhileInput()
	}
}

// readWhileInput reads what has come, and ends the connection if reading
// fails; otherwise it returns once nothing is left to read.
func (c *Conn) readWhileInput() {
	for {
		c.readWanted.Store(false) // this pass reads whatever was asked for so far
		if c.unwatched.Load() {
			c.finish(c.discardFrames(false))
			return // reading stays held: this reader was the last
		}
		err := c.discardFrames(true)
		if !errors.Is(err, errNoInput) {
			c.finish(err)
			return // reading stays held: the connection is over
		}
		c.reading.Store(false)
		// A request that came during the pass found reading held.
		if !c.readWanted.Load() || !c.reading.CompareAndSwap(false, true) {
			return
		}
	}
}

// discardFrames reads and throws away the subscriber's frames, one by one.
// Reading frames rather than x/net's Receive tells a peer's close apart
// from a frame x/net refused, rejects unknown opcodes, which x/net lets
// through, checks what x/net does not (fragments, whole-message size, UTF-8
// in text), and skips payloads without holding more than one message of at
// most max_frame_bytes. A frame that breaks a rule sends a close with the
// matching code, and reading goes on, discarding, so that the peer's
// answer to the close is consumed.
//
// onDemand, it returns errNoInput at a frame boundary once nothing is left
// to read, instead of waiting for more.
func (c *Conn) discardFrames(onDemand bool) error {
	for {
		if onDemand {
			if !c.inputBuffered() && !c.socketReadable() {
				return errNoInput
			}
		} else if err := c.waitReadable(); err != nil {
			return err
		}
		frame, err := c.ws.NewFrameReader()
		if err != nil {
			return err
		}
		opcode := frame.PayloadType()
		if !knownOpcode(opcode) {
			return errBadOpcode
		}
		n, first := payloadLen(frame), frameFirstByte(frame)
		if problem := headerProblem(first, opcode, n); problem != "" {
			c.askClose(&closeRequest{closeProtocolError, problem})
		}
		if opcode == websocket.PingFrame && c.pingArrived(frame.Len()) {
			c.askClose(&closeRequest{closePolicyViolation, "pings keep coming while the pong to an earlier one waits: the peer is not reading"})
		}
		// The length overflows to negative near 2^63.
		if n < 0 || n > c.ws.MaxPayloadBytes {
			c.askClose(&closeRequest{closeMessageTooBig, "a frame is over limits.max_frame_bytes"})
			if _, err := io.Copy(io.Discard, frame); err != nil {
				return err
			}
			continue
		}
		payload, err := c.ws.HandleFrame(frame) // answers pings, refuses unmasked frames
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
		if isClosed(c.closeAsked) {
			if _, err := io.Copy(io.Discard, payload); err != nil {
				return err
			}
			continue
		}
		request, err := c.messages.frame(opcode, first&0x80 != 0, n, payload)
		if err != nil {
			return err
		}
		if request != nil {
			c.askClose(request)
		}
	}
}

// waitReadable parks a reader that has the connection for its life (over
// TLS, or without a readiness Poller), while the peer is silent, at a shallow
// point of its stack rather than deep inside x/net's frame parsing: the
// garbage collector shrinks the stack of a goroutine parked there to its
// smallest size, which most of an idle connection's memory would
// otherwise be. It returns at once if bytes are buffered or waiting, and
// when the peer closes or the read deadline passes, so that the read that
// follows reports it. Bytes that came with the handshake wait in x/net's
// reader, not in the socket.
func (c *Conn) waitReadable() error {
	if c.fd == nil || c.inputBuffered() {
		return nil
	}
	var peek [1]byte
	err := c.fd.Read(func(fd uintptr) bool {
		return !peekWouldBlock(fd, peek[:])
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil // the read that follows times out and says so
	}
	return err
}

// inputBuffered reports whether bytes wait in x/net's reader, or came
// with the handshake. Only the reader may ask.
func (c *Conn) inputBuffered() bool {
	return c.reader.Buffered() > 0 || (c.early != nil && c.early.Len() > 0)
}

// socketReadable reports, without waiting, whether a read of the socket
// would return at once: bytes have come, the peer has closed, the socket
// is closed or the read deadline has passed. The read then says which.
func (c *Conn) socketReadable() bool {
	if c.raw.readDeadlinePassed() {
		return true
	}
	var peek [1]byte
	wouldBlock := false
	if err := c.fd.Control(func(fd uintptr) { wouldBlock = peekWouldBlock(fd, peek[:]) }); err != nil {
		return true
	}
	return !wouldBlock
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

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
