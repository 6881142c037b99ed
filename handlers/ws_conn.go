package handlers

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/websocket"

	"herald/app"
	"herald/handlers/readiness"
)

// WebSocket close codes (RFC 6455, section 7.4.1).
const (
	closeNormal          = 1000
	closeGoingAway       = 1001
	closeProtocolError   = 1002
	closePolicyViolation = 1008 // pings faster than the peer reads the pongs
	closeMessageTooBig   = 1009
	// closeCredentialExpired ends a subscription whose token or JWT ran
	// out while it was connected; 4000-4999 are for applications.
	closeCredentialExpired = 4401
)

// closePayload is a close frame's body: the code, and for the codes that
// could mean several things a reason that says which.
func closePayload(code int) []byte {
	payload := binary.BigEndian.AppendUint16(nil, uint16(code))
	switch code {
	case closeCredentialExpired:
		payload = append(payload, "token expired"...)
	case closePolicyViolation:
		payload = append(payload, "too many pings while not reading"...)
	}
	return payload
}

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
	// errNoInput ends a reader on demand that has read everything that came.
	errNoInput = errors.New("nothing more to read for now")
)

// wsConn is one WebSocket subscriber connection. Its reader owns it: it
// reads the peer's frames, and when they end it closes the connection and
// releases what the request held. The reader is a goroutine that runs only
// while there is something to read (see onDemand). Writing belongs to
// whoever holds the writing flag: the writer pool's shard, the reader (for
// a close), or, while the socket is full, a goroutine of the connection's
// own. Every byte written goes through that one owner, x/net's pongs
// included, so frames never interleave.
type wsConn struct {
	// A publish wakes every connection of its topic, and then the writer
	// goes round them, each one cold after the thousand writes since the
	// last message. So what they read comes first, in two cache lines
	// (see app.Subscriber), with the subscriber and its format copied out
	// of the Subscription, which would be one more line each time.
	queued  atomic.Bool // on the shard's queue
	dirty   atomic.Bool // something may be pending since the last collect
	pingDue atomic.Bool
	// Guarded by mu.
	writing   bool // someone owns the socket's writing side
	closed    bool // the socket is closed: nothing more is written
	closeSent bool // our close frame is written: the peer gets closeLinger to answer
	json      bool // the Subscription's JSON
	fdClosed  bool // guarded by fdMu
	shard     *writerShard
	sub       *app.Subscriber // the Subscription's Subscriber
	mu        sync.Mutex
	closeWith int // a close frame to send once what is pending is out; 0 for none
	// pong is the answer to the latest ping, whole, until it is written;
	// a newer ping's replaces it. pingBytes counts the pings that came
	// while it waited (see maxPingBytesWhilePongWaits).
	pong      []byte
	pingBytes int
	batch     []*app.Message
	// fdNum is the socket's descriptor, written to directly so that a
	// write never blocks and costs no more than the system call; -1 over
	// TLS. fdMu guards it against closing: writes hold it for reading,
	// closeSocket for writing, so a write never lands on a descriptor
	// that has been closed and perhaps given to another connection.
	fdNum int
	fdMu  sync.RWMutex
	idle  sync.Cond // on mu: signalled when writing ends

	*Subscription
	handler *streamHandler
	remote  string          // the client's address, for logs
	fd      syscall.RawConn // for waiting on reads at a shallow point; nil over TLS
	// stopWaiting, where fdNum is -1, ends writes that wait for room in a
	// full socket (over TLS, or on a connection net/http upgraded); nil if
	// the connection cannot.
	stopWaiting waitStopper
	reader      *bufio.Reader // x/net's read buffer, to know whether bytes wait in it
	started     time.Time

	closeAsked  chan struct{} // closed by the reader when a frame breaks a rule
	closeReason *closeRequest
	closeOnce   sync.Once

	// An idle connection has no reader goroutine: the handler's readiness
	// Poller asks for one when something comes to read, and so do the read
	// deadline's alarm and closing the socket (onDemand). A reader reads
	// what has come and ends. reading says one is running: it is held from
	// the start until start lets go, and the last reader holds it for good
	// as it closes the connection. readWanted keeps a request that came
	// while reading was held, for the reader to look at once it lets go.
	// Over TLS, or where there is no Poller, one reader runs for the
	// connection's life; so does the next reader once the Poller has
	// failed (unwatched).
	onDemand     bool
	reading      atomic.Bool
	readWanted   atomic.Bool
	unwatched    atomic.Bool
	messages     messageChecker // the subscriber's message in progress, from one reader to the next
	stopWatching func()         // stops the subscription's end callback
	end          func()         // the request's cleanups
}

func newWSConn(sub *Subscription, h *streamHandler, remote string) *wsConn {
	c := &wsConn{Subscription: sub, sub: sub.Subscriber, json: sub.JSON, handler: h, remote: remote, started: time.Now(), closeAsked: make(chan struct{}), reader: sub.reader}
	c.idle.L = &c.mu
	c.fdNum = -1
	c.messages = messageChecker{limit: sub.Conn.MaxPayloadBytes}
	c.reading.Store(true) // until start
	if tcp, ok := sub.raw.Conn.(*net.TCPConn); ok && socketCallsWork {
		if fd, err := tcp.SyscallConn(); err == nil {
			c.fd = fd
			_ = fd.Control(func(fd uintptr) { c.fdNum = int(fd) })
		}
	}
	if c.fd != nil && h.readiness != nil {
		c.onDemand = true
		c.raw.alarmAtReadDeadline(c.readSoon)
	}
	if c.fdNum < 0 {
		c.stopWaiting = waitStopperOf(sub.raw.Conn)
	}
	return c
}

// logger is the handler's logger with this connection's address and
// subscriber id, built when there is something to log rather than kept
// for the life of every connection.
func (c *wsConn) logger() *slog.Logger {
	return c.handler.log.With("remote", c.remote, "subscriber", c.sub.ID())
}

var _ app.Waker = (*wsConn)(nil)

// Wake is how the hub tells the connection that there is more to write.
func (c *wsConn) Wake() { c.enqueue() }

// enqueue asks the connection's shard to write whatever is pending.
func (c *wsConn) enqueue() {
	c.dirty.Store(true)
	if !c.queued.Swap(true) {
		c.shard.push(c)
	}
}

// flush writes what is pending unless another owner is writing, in which
// case that owner will find it. w is the calling goroutine's writer; nil
// makes one, for goroutines that write rarely.
func (c *wsConn) flush(w *batchWriter) {
	if c.own() {
		if w == nil {
			w = newBatchWriter()
		}
		c.writeOwned(w)
	}
}

// own takes the writing side, if it is free and the socket open.
func (c *wsConn) own() bool {
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
func (c *wsConn) release() bool {
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
func (c *wsConn) writeOwned(w *batchWriter) {
	for {
		buf, taken, closing := c.collect(w.buf[:0])
		w.keep(buf)
		if len(buf) == 0 {
			if c.release() {
				return
			}
			continue
		}
		n, err := c.tryWrite(buf)
		if !c.finishWrite(buf, n, err, taken, closing) {
			return
		}
	}
}

// finishWrite settles a batch once n of its bytes are written: an error
// ends the connection, a full socket gets a goroutine of its own to wait
// for it, and otherwise the messages count as delivered. It reports
// whether the caller is still the writing owner and must collect again.
func (c *wsConn) finishWrite(buf []byte, n int, err error, taken []*app.Message, closing bool) (more bool) {
	if err != nil {
		c.writeFailed(err, taken)
		return false
	}
	if n < len(buf) {
		rest := append([]byte(nil), buf[n:]...)
		go c.writeBlocking(rest, taken, closing)
		return false
	}
	drained := textBytesOf(taken) < maxBatchBytes // Take stopped at the head, not at the cap
	c.written(taken, closing)
	// Nothing has come since collect looked: let go without looking
	// again, which would take every lock a second time for nothing.
	// release checks, under the lock, that nothing came meanwhile. A
	// subscription that has ended must be looked at again: its close
	// frame goes out once nothing is left to take.
	return !(drained && !c.dirty.Load() && !c.sub.Ended() && c.release())
}

// textBytesOf is the message text in a batch, as Take measures it.
func textBytesOf(batch []*app.Message) int {
	n := 0
	for _, m := range batch {
		n += len(m.Text)
	}
	return n
}

// writeBlocking finishes a write that the socket could not take at once,
// with the write timeout as the limit on making no progress, then carries
// on as the writing owner.
func (c *wsConn) writeBlocking(rest []byte, taken []*app.Message, closing bool) {
	if _, err := c.raw.writeDirect(rest); err != nil {
		c.writeFailed(err, taken)
		return
	}
	c.written(taken, closing)
	c.writeOwned(newBatchWriter())
}

// tryWrite writes as much of buf as the socket takes now, without waiting:
// the descriptor is non-blocking, as Go's poller keeps it. Over TLS, where
// the socket is not Herald's to write, it writes nothing and leaves the
// whole batch to writeBlocking.
func (c *wsConn) tryWrite(buf []byte) (int, error) {
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
func (c *wsConn) holdFD() bool {
	c.fdMu.RLock()
	if c.fdClosed {
		c.fdMu.RUnlock()
		return false
	}
	return true
}

// collect builds the next batch: the pong owed, a ping if one is due,
// notices, the messages published since the last batch, and the close
// frame once the subscription has ended, appended to buf. It returns buf
// unchanged when there is nothing to send.
func (c *wsConn) collect(buf []byte) (_ []byte, taken []*app.Message, closing bool) {
	c.dirty.Store(false)
	if c.sub.EndedSlow() {
		c.closeSocket() // the hub has counted and logged it
		return buf, nil, false
	}
	c.mu.Lock()
	pong := c.pong
	c.pong, c.pingBytes = nil, 0
	closeWith, closeSent := c.closeWith, c.closeSent
	c.mu.Unlock()
	if closeSent {
		return buf, nil, false // nothing follows a close frame
	}

	add := func(opcode byte, payload []byte) { buf = appendFrame(buf, opcode, payload) }
	buf = append(buf, pong...)
	if c.pingDue.Swap(false) {
		add(opPing, nil)
	}
	select {
	case <-c.sub.PresenceChanged():
		add(opText, presenceNotice(c.sub.Topic(), c.sub.TopicSubscribers()))
	default:
	}
	if changed, up := c.sub.BrokerChanged(); changed && c.json {
		add(opText, brokerNotice(up))
	}
	if closeWith == 0 {
		var gap *app.Gap
		c.batch, gap = c.sub.Take(c.batch[:0], maxBatchBytes)
		if gap != nil && c.json {
			add(opText, lostNotice(c.sub.Topic(), gap))
		}
		for _, m := range c.batch {
			payload := textBytes(m.Text)
			if c.json {
				payload = m.JSON()
			}
			add(opText, payload)
		}
		taken = c.batch
		if len(taken) == 0 {
			closeWith = c.closeForEndedSubscription()
		}
	}
	if closeWith != 0 {
		add(websocket.CloseFrame, closePayload(closeWith))
		c.mu.Lock()
		c.closeWith, c.closeSent = closeWith, true
		c.mu.Unlock()
		closing = true
	}
	return buf, taken, closing
}

// closeForEndedSubscription says how to close once the subscription has
// ended and everything published to it before is written: 1001 on
// shutdown. A subscriber that left is on its way out through the reader,
// and a slow one is cut by collect, without a close frame, which would
// only queue behind data the peer is not reading.
func (c *wsConn) closeForEndedSubscription() int {
	if errors.Is(c.sub.Err(), app.ErrHubClosed) {
		return closeGoingAway
	}
	return 0
}

// written records a batch that reached the socket.
func (c *wsConn) written(taken []*app.Message, closing bool) {
	for _, m := range taken {
		if c.sub.Live(m) {
			c.handler.metrics.delivered(m)
		}
	}
	clear(taken)
	if closing {
		c.raw.lingerUntil(time.Now().Add(closeLinger)) // the reader waits for the answer
	}
}

// writeFailed gives up on the connection after a failed write. A write
// that made no progress for the write timeout is a stalled peer, which the
// hub counts and logs as slow.
func (c *wsConn) writeFailed(err error, taken []*app.Message) {
	c.sub.NotWritten(len(taken))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.hub.Stalled(c.sub, c.handler.writeTimeout)
	}
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
func (c *wsConn) sendControl(p []byte) (int, error) {
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
	c.flush(nil)
	return len(p), nil
}

// pingArrived counts a ping of n bytes that came while the pong to an
// earlier one waits, and reports whether the peer has sent too many.
func (c *wsConn) pingArrived(n int) (flooding bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pong == nil {
		return false
	}
	c.pingBytes += n
	return c.pingBytes > maxPingBytesWhilePongWaits
}

// requestClose has a close frame with code sent after what is already
// pending, and stops delivery. The close may wait behind a full socket for
// as long as any write may; once it is written, the peer gets closeLinger
// to answer (see written).
func (c *wsConn) requestClose(code int) {
	c.Leave()
	c.mu.Lock()
	if c.closeWith == 0 {
		c.closeWith = code
	}
	c.mu.Unlock()
	c.flush(nil)
	c.raw.lingerUntil(time.Now().Add(c.handler.writeTimeout + closeLinger))
}

// closeSocket closes the TCP connection: the reader's next read fails, and
// so does any write in progress. Closing takes the socket out of the
// readiness Poller without an edge, so a reader is started to find it
// closed and end the connection.
func (c *wsConn) closeSocket() {
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
func (c *wsConn) waitWriterIdle(d time.Duration) {
	stuck := time.AfterFunc(d, c.closeSocket)
	defer stuck.Stop()
	c.mu.Lock()
	for c.writing && !c.closed {
		c.idle.Wait()
	}
	c.mu.Unlock()
}

// start begins the connection's life: it reads until the peer or the
// server ends it, then closes and releases everything. end runs the
// request's cleanups (the subscription, the connection slot, the log
// line).
func (c *wsConn) start(end func()) {
	c.end = end
	// When the hub ends the subscription, the writer sends what is owed
	// and the close; a slow subscriber's stuck write is cut at once. So,
	// on shutdown, is a write waiting for room in a full socket, now or
	// later: a peer that is not reading would never get the close frame,
	// and the server would wait on it.
	c.stopWatching = c.sub.OnEnd(func() {
		switch {
		case c.sub.EndedSlow():
			c.raw.interrupt()
		case !errors.Is(c.sub.Err(), app.ErrHubClosed):
		case c.fdNum >= 0:
			c.raw.interrupt() // only a write to a full socket waits (see tryWrite)
		case c.stopWaiting != nil:
			c.stopWaiting.StopWaiting() // every write waits, so the socket must tell
		}
		c.enqueue()
	})
	c.sub.OnWake(c)

	if c.onDemand {
		// Bytes that came with the handshake are in x/net's reader, where
		// epoll cannot see them.
		buffered := c.inputBuffered()
		err := c.handler.readiness.Watch(c.sub.ID(), c.fd, c)
		if err == nil {
			c.reading.Store(false)
			// An edge since the watch, or a close or an alarm before it,
			// found reading held and left readWanted.
			if buffered || c.readWanted.Load() {
				c.readSoon()
			}
			return
		}
		c.logger().Debug("reading on a goroutine of its own", "err", err)
	}
	// This reader keeps reading held for good, so that the alarm and
	// closeSocket start no other.
	go func() { c.finish(c.discardFrames(false)) }()
}

var _ readiness.Watcher = (*wsConn)(nil)

// Ready is the readiness Poller saying that something came to read.
func (c *wsConn) Ready() { c.readSoon() }

// PollerFailed is the readiness Poller saying that it has stopped for
// good: the next reader stays for the connection's life, as where there is
// no Poller.
func (c *wsConn) PollerFailed(err error) {
	c.handler.pollerFailed.Do(func() {
		c.handler.log.Error("the readiness poller failed: every WebSocket connection now has a reader goroutine of its own", "err", err)
	})
	c.unwatched.Store(true)
	c.readSoon()
}

// readSoon has a reader read what has come: it starts one, or leaves the
// request for the one running.
func (c *wsConn) readSoon() {
	c.readWanted.Store(true)
	if c.reading.CompareAndSwap(false, true) {
		go c.readWhileInput()
	}
}

// readWhileInput reads what has come, and ends the connection if reading
// fails; otherwise it returns once nothing is left to read.
func (c *wsConn) readWhileInput() {
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

// finish closes the connection once reading has ended, and releases
// everything it held.
func (c *wsConn) finish(readErr error) {
	c.finishAfterRead(readErr)

	c.stopWatching()
	c.Leave()
	c.waitWriterIdle(closeLinger)
	c.closeSocket()
	c.mu.Lock()
	for c.writing { // a blocked write fails once the socket is closed
		c.idle.Wait()
	}
	c.mu.Unlock()
	c.raw.stopAlarm()
	if c.onDemand {
		c.handler.readiness.Forget(c.sub.ID())
	}
	c.handler.pool.remove(c)
	c.logger().Info("websocket closed", "duration", time.Since(c.started).Round(time.Millisecond))
	c.end()
}

// finishAfterRead answers however the reading ended.
func (c *wsConn) finishAfterRead(err error) {
	c.mu.Lock()
	closeSent := c.closeSent || c.closeWith != 0
	c.mu.Unlock()
	var netErr net.Error
	switch {
	case isClosed(c.closeAsked):
		// The close asked for was sent; the peer answered or ran out of time.
		c.logger().Info("closed connection: the subscriber broke a rule", "code", c.closeReason.code, "reason", c.closeReason.why)
	case errors.Is(err, errFrameRefused):
		c.logger().Info("closing connection: bad frame from peer", "err", err) // x/net's 1002 is the close frame
	case closeSent:
		// Our close (shutdown) was answered, or the linger ran out.
	case errors.Is(err, errPeerClosed):
		c.requestClose(closeNormal) // answer the peer's close frame
	case errors.Is(err, errBadOpcode):
		c.logger().Info("closing connection: bad frame from peer", "err", err)
		c.requestClose(closeProtocolError)
	case errors.As(err, &netErr) && netErr.Timeout():
		c.logger().Info("closing connection: peer silent past the idle timeout")
	case errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF):
		// the writer or the peer closed it
	default:
		c.logger().Debug("connection failed", "during", "read", "err", err)
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
func (c *wsConn) discardFrames(onDemand bool) error {
	for {
		if onDemand {
			if !c.inputBuffered() && !c.socketReadable() {
				return errNoInput
			}
		} else if err := c.waitReadable(); err != nil {
			return err
		}
		frame, err := c.Conn.NewFrameReader()
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
		if n < 0 || n > c.Conn.MaxPayloadBytes {
			c.askClose(&closeRequest{closeMessageTooBig, "a frame is over limits.max_frame_bytes"})
			if _, err := io.Copy(io.Discard, frame); err != nil {
				return err
			}
			continue
		}
		payload, err := c.Conn.HandleFrame(frame) // answers pings, refuses unmasked frames
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
func (c *wsConn) waitReadable() error {
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
func (c *wsConn) inputBuffered() bool {
	return c.reader.Buffered() > 0 || (c.early != nil && c.early.Len() > 0)
}

// socketReadable reports, without waiting, whether a read of the socket
// would return at once: bytes have come, the peer has closed, the socket
// is closed or the read deadline has passed. The read then says which.
func (c *wsConn) socketReadable() bool {
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

// askClose closes with the request's code; only the first request counts.
func (c *wsConn) askClose(request *closeRequest) {
	c.closeOnce.Do(func() {
		c.closeReason = request
		close(c.closeAsked)
		c.requestClose(request.code)
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

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
