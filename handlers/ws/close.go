package ws

import (
	"encoding/binary"
	"time"
)

// WebSocket close codes (RFC 6455, section 7.4.1).
const (
	closeNormal          = 1000
	closeGoingAway       = 1001
	closeProtocolError   = 1002
	closeInvalidPayload  = 1007 // a text message that is not UTF-8
	closePolicyViolation = 1008 // pings faster than the peer reads the pongs
	closeMessageTooBig   = 1009
)

// CloseCredentialExpired ends a subscription whose token or JWT ran out
// while it was connected; 4000-4999 are for applications.
const CloseCredentialExpired = 4401

// Close ends the connection with a close frame of code, sent after what
// is already pending: the subscription stops at once, and the client gets
// closeLinger to answer.
func (c *Conn) Close(code int) { c.requestClose(code) }

// closePayload is a close frame's body: the code, and for the codes that
// could mean several things a reason that says which.
func closePayload(code int) []byte {
	payload := binary.BigEndian.AppendUint16(nil, uint16(code))
	switch code {
	case CloseCredentialExpired:
		payload = append(payload, "token expired"...)
	case closePolicyViolation:
		payload = append(payload, "too many pings while not reading"...)
	}
	return payload
}

// closeLinger is how long a peer gets to answer our close frame before the
// connection is cut. Waiting for the answer, instead of closing at once,
// keeps unread bytes from turning our close into a TCP reset that could
// destroy the close frame before the peer reads it.
const closeLinger = 2 * time.Second

// requestClose has a close frame with code sent after what is already
// pending, and stops delivery. The close may wait behind a full socket for
// as long as any write may; once it is written, the peer gets closeLinger
// to answer (see written).
func (c *Conn) requestClose(code int) {
	c.sub.Leave()
	c.mu.Lock()
	if c.closeWith == 0 {
		c.closeWith = code
	}
	c.mu.Unlock()
	c.writePending(nil)
	c.raw.lingerUntil(time.Now().Add(c.server.cfg.WriteTimeout + closeLinger))
}

// closeSocket closes the TCP connection: the reader's next read fails, and
// so does any write in progress. Closing takes the socket out of the
// readiness Poller without an edge, so a reader is started to find it
// closed and end the connection.
func (c *Conn) closeSocket() {
	c.mu.Lock()
	c.closed = true
	c.idle.Broadcast()
	c.mu.Unlock()
	c.fdMu.Lock()
	c.fdClosed = true
	c.fdMu.Unlock()
	_ = c.raw.closeNow()
	if c.onDemand {
		c.readSoon()
	}
}

// waitWriterIdle waits until no one is writing, for at most d, after which
// it closes the socket to stop a write that is stuck.
func (c *Conn) waitWriterIdle(d time.Duration) {
	stuck := time.AfterFunc(d, c.closeSocket)
	defer stuck.Stop()
	c.mu.Lock()
	for c.writing && !c.closed {
		c.idle.Wait()
	}
	c.mu.Unlock()
}

// closeRequest is a close code the reader asks the writer to send, and the
// reason it is logged with.
type closeRequest struct {
	code int
	why  string
}

// askClose closes with the request's code; only the first request counts.
func (c *Conn) askClose(request *closeRequest) {
	c.closeOnce.Do(func() {
		c.closeReason = request
		close(c.closeAsked)
		c.requestClose(request.code)
	})
}

// Abort closes a connection that was never started.
func (c *Conn) Abort() {
	c.raw.stopAlarm()
	_ = c.raw.closeNow()
}
