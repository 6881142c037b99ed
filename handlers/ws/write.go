package ws

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/net/websocket"

	"herald/app"
)

// maxPingBytesWhilePongWaits is how many bytes of pings, headers included,
// a peer may send while the pong to an earlier one still waits to be
// written, before it is closed with 1008. Only the latest ping is answered
// (RFC 6455, section 5.5.3), so the pings cost no memory whatever this is;
// it ends a peer that keeps sending what it never reads. A pong waits only
// while the socket is full, no longer than one write may take
// (websocket.write_timeout), and a healthy client pings every few seconds
// at most, or waits for each pong: in a default write timeout it sends a
// few hundred bytes, far under this. Counting bytes rather than pings
// makes empty pings count too.
const maxPingBytesWhilePongWaits = 64 << 10

// Wake is how the hub tells the connection that there is more to write.
func (c *Conn) Wake() { c.enqueue() }

// enqueue asks the connection's shard to write whatever is pending.
func (c *Conn) enqueue() {
	c.dirty.Store(true)
	if !c.queued.Swap(true) {
		c.shard.push(c)
	}
}

// writePending writes what is pending unless another owner is writing, in which
// case that owner will find it. w is the calling goroutine's writer; nil
// makes one, for goroutines that write rarely.
func (c *Conn) writePending(w *batchWriter) {
	if c.own() {
		if w == nil {
			w = newBatchWriter()
		}
		c.writeOwned(w)
	}
}

// own takes the writing side, if it is free and the socket open.
func (c *Conn) own() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writing || c.closed {
		return false
	}
	c.writing = true
	return true
}

// release gives up the writing side, unless something arrived meanwhile
// that the owner must write first; it reports whether it let go.
func (c *Conn) release() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A wake that came while the owner was writing found the side taken:
	// the owner must look again rather than leave it pending.
	if !c.closed && (c.dirty.Load() || c.pong != nil || (c.closeWith != 0 && !c.closeSent)) {
		return false
	}
	c.writing = false
	c.idle.Broadcast()
	return true
}

// writeOwned writes batches until nothing is pending. The caller owns the
// writing side; this returns it, or hands it to a goroutine that waits for
// a full socket to drain.
func (c *Conn) writeOwned(w *batchWriter) {
	for {
		buf, closing := c.collect(w.buf[:0])
		w.keep(buf)
		if len(buf) == 0 {
			if c.release() {
				return
			}
			continue
		}
		n, err := c.tryWrite(buf)
		if !c.finishWrite(buf, n, err, closing) {
			return
		}
	}
}

// finishWrite settles a batch once n of its bytes are written: an error
// ends the connection, a full socket gets a goroutine of its own to wait
// for it, and otherwise the delivery is sent. It reports whether the
// caller is still the writing owner and must collect again.
func (c *Conn) finishWrite(buf []byte, n int, err error, closing bool) (more bool) {
	if err != nil {
		c.writeFailed(err)
		return false
	}
	if n < len(buf) {
		rest := append([]byte(nil), buf[n:]...)
		go c.writeBlocking(rest, closing)
		return false
	}
	drained := !c.delivery.Full
	c.written(closing)
	// Nothing has come since collect looked: let go without looking
	// again, which would take every lock a second time for nothing.
	// release checks, under the lock, that nothing came meanwhile. A
	// subscription that has ended must be looked at again: its close
	// frame goes out once nothing is left to take.
	return !(drained && !c.dirty.Load() && !c.sub.Ended() && c.release())
}

// writeBlocking finishes a write that the socket could not take at once,
// with the write timeout as the limit on making no progress, then carries
// on as the writing owner.
func (c *Conn) writeBlocking(rest []byte, closing bool) {
	if _, err := c.raw.writeDirect(rest); err != nil {
		c.writeFailed(err)
		return
	}
	c.written(closing)
	c.writeOwned(newBatchWriter())
}

// tryWrite writes as much of buf as the socket takes now, without waiting:
// the descriptor is non-blocking, as Go's poller keeps it. Over TLS, where
// the socket is not Herald's to write, it writes nothing and leaves the
// whole batch to writeBlocking.
func (c *Conn) tryWrite(buf []byte) (int, error) {
	if c.fdNum < 0 {
		return 0, nil
	}
	if c.sub.EndedSlow() { // as c.raw.interrupted, which is set when this is
		return 0, errInterrupted
	}
	if !c.holdFD() {
		return 0, net.ErrClosed
	}
	defer c.fdMu.RUnlock()
	written := 0
	for written < len(buf) {
		n, err := writeSocket(c.fdNum, buf[written:])
		if n > 0 {
			written += n
		}
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return written, nil // full: the rest goes to writeBlocking
		case err != nil:
			return written, err
		case n == 0:
			return written, nil
		}
	}
	return written, nil
}

// holdFD keeps the descriptor from being closed until c.fdMu.RUnlock, and
// reports false, holding nothing, if it is closed already.
func (c *Conn) holdFD() bool {
	c.fdMu.RLock()
	if c.fdClosed {
		c.fdMu.RUnlock()
		return false
	}
	return true
}

// collect builds the next batch: the pong owed, a ping if one is due,
// the subscriber's next delivery (its notices only in JSON mode, which
// has room for them), and the close frame once the subscription has ended
// and nothing is left to take, appended to buf. It returns buf unchanged
// when there is nothing to send.
func (c *Conn) collect(buf []byte) (_ []byte, closing bool) {
	c.dirty.Store(false)
	if c.sub.EndedSlow() {
		c.closeSocket() // the hub has counted and logged it
		return buf, false
	}
	c.mu.Lock()
	pong := c.pong
	c.pong, c.pingBytes = nil, 0
	closeWith, closeSent := c.closeWith, c.closeSent
	c.mu.Unlock()
	if closeSent {
		return buf, false // nothing follows a close frame
	}

	buf = append(buf, pong...)
	if c.pingDue.Swap(false) {
		buf = appendFrame(buf, opPing, nil)
	}
	if closeWith == 0 {
		if c.sub.Next(&c.delivery, app.DeliveryBytes) {
			buf = c.appendDelivery(buf)
		}
		if len(c.delivery.Messages) == 0 {
			closeWith = c.closeForEndedSubscription()
		}
	}
	if closeWith != 0 {
		buf = appendFrame(buf, websocket.CloseFrame, closePayload(closeWith))
		c.mu.Lock()
		c.closeWith, c.closeSent = closeWith, true
		c.mu.Unlock()
		closing = true
	}
	return buf, closing
}

// appendDelivery frames the delivery: a text frame per message, holding
// exactly its text, or its JSON object in JSON mode, where notices come
// first as frames of their own. A plain client has no way to be told of a
// notice, so it gets none.
func (c *Conn) appendDelivery(buf []byte) []byte {
	if c.json {
		for _, n := range c.delivery.Notices {
			buf = appendFrame(buf, opText, n.JSON)
		}
		for _, m := range c.delivery.Messages {
			buf = appendFrame(buf, opText, m.JSON())
		}
		return buf
	}
	for _, m := range c.delivery.Messages {
		buf = appendFrame(buf, opText, textBytes(m.Text))
	}
	return buf
}

// closeForEndedSubscription says how to close once the subscription has
// ended and everything published to it before is written: 1001 on
// shutdown. A subscriber that left is on its way out through the reader,
// and a slow one is cut by collect, without a close frame, which would
// only queue behind data the peer is not reading.
func (c *Conn) closeForEndedSubscription() int {
	if errors.Is(c.sub.Err(), app.ErrHubClosed) {
		return closeGoingAway
	}
	return 0
}

// written records a batch that reached the socket.
func (c *Conn) written(closing bool) {
	c.sub.Sent(&c.delivery)
	if closing {
		c.raw.lingerUntil(time.Now().Add(closeLinger)) // the reader waits for the answer
	}
}

// writeFailed gives up on the connection after a failed write. A write
// that made no progress for the write timeout is a stalled peer, which the
// hub counts and logs as slow.
func (c *Conn) writeFailed(err error) {
	c.sub.Unsent(&c.delivery, err, c.server.cfg.WriteTimeout)
	c.logger().Debug("write failed", "err", err)
	c.closeSocket()
	c.mu.Lock()
	c.writing = false
	c.idle.Broadcast()
	c.mu.Unlock()
}

// sendControl takes a frame that x/net wrote, whole: a pong, which goes
// out at the next frame boundary in place of any pong still waiting, or
// x/net's own close, which becomes the connection's close frame. It
// writes now if no one else is writing. Nothing is sent after a close
// frame, so a pong that comes once one is due is dropped.
func (c *Conn) sendControl(p []byte) (int, error) {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return 0, net.ErrClosed
	case c.closeWith != 0:
	case len(p) > 0 && p[0]&0x0f == websocket.CloseFrame:
		c.closeWith = closeProtocolError // x/net closes only on a frame it refuses
		if len(p) >= 4 {
			c.closeWith = int(binary.BigEndian.Uint16(p[2:4]))
		}
	default:
		c.pong = append(c.pong[:0:0], p...) // p is x/net's buffer
	}
	c.mu.Unlock()
	c.writePending(nil)
	return len(p), nil
}

// pingArrived counts a ping of n bytes that came while the pong to an
// earlier one waits, and reports whether the peer has sent too many.
func (c *Conn) pingArrived(n int) (flooding bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pong == nil {
		return false
	}
	c.pingBytes += n
	return c.pingBytes > maxPingBytesWhilePongWaits
}
