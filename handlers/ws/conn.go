package ws

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/websocket"

	"herald/app"
	"herald/handlers/upgrade"
)

// Conn is one WebSocket subscriber connection. Its reader owns it: it
// reads the peer's frames, and when they end it closes the connection and
// releases what the request held. The reader is a goroutine that runs only
// while there is something to read (see onDemand). Writing belongs to
// whoever holds the writing flag: the writer pool's shard, the reader (for
// a close), or, while the socket is full, a goroutine of the connection's
// own. Every byte written goes through that one owner, x/net's pongs
// included, so frames never interleave.
//
// The files of this package split Conn by side: conn.go its life,
// write.go the writing side, read.go the reading side, close.go closing.
type Conn struct {
	// A publish wakes every connection of its topic, and then the writer
	// goes round them, each one cold after the thousand writes since the
	// last message. So what they read comes first, in two cache lines
	// (see app.Subscriber).
	queued  atomic.Bool // on the shard's queue
	dirty   atomic.Bool // something may be pending since the last collect
	pingDue atomic.Bool
	// Guarded by mu.
	writing   bool // someone owns the socket's writing side
	closed    bool // the socket is closed: nothing more is written
	closeSent bool // our close frame is written: the peer gets closeLinger to answer
	json      bool // each message as its JSON object, and notices too
	fdClosed  bool // guarded by fdMu
	shard     *writerShard
	sub       *app.Subscriber
	mu        sync.Mutex
	closeWith int // a close frame to send once what is pending is out; 0 for none
	// pong is the answer to the latest ping, whole, until it is written;
	// a newer ping's replaces it. pingBytes counts the pings that came
	// while it waited (see maxPingBytesWhilePongWaits).
	pong      []byte
	pingBytes int
	delivery  app.Delivery // what the write in progress carries
	// fdNum is the socket's descriptor, written to directly so that a
	// write never blocks and costs no more than the system call; -1 over
	// TLS. fdMu guards it against closing: writes hold it for reading,
	// closeSocket for writing, so a write never lands on a descriptor
	// that has been closed and perhaps given to another connection.
	fdNum int
	fdMu  sync.RWMutex
	idle  sync.Cond // on mu: signalled when writing ends

	server *Server
	ws     *websocket.Conn // x/net's connection: frames are read through it
	raw    *deadlineConn   // the hijacked connection under it
	remote string          // the client's address, for logs
	fd     syscall.RawConn // for waiting on reads at a shallow point; nil over TLS
	// stopWaiting, where fdNum is -1, ends writes that wait for room in a
	// full socket (over TLS, or on a connection net/http upgraded); nil if
	// the connection cannot.
	stopWaiting upgrade.WaitStopper
	reader      *bufio.Reader // x/net's read buffer, to know whether bytes wait in it
	early       *bytes.Reader // frames that came with the handshake; nil if none
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

// newConn is the connection that Accept upgraded.
func newConn(s *Server, upgraded *websocket.Conn, h *deadlineHijacker, sub *app.Subscriber, json bool, remote string) *Conn {
	c := &Conn{server: s, ws: upgraded, raw: h.conn, reader: h.reader, early: h.early, sub: sub, json: json, remote: remote,
		started: time.Now(), closeAsked: make(chan struct{})}
	c.idle.L = &c.mu
	c.fdNum = -1
	c.messages = messageChecker{limit: upgraded.MaxPayloadBytes}
	c.reading.Store(true) // until Start
	if tcp, ok := c.raw.Conn.(*net.TCPConn); ok && socketCallsWork {
		if fd, err := tcp.SyscallConn(); err == nil {
			c.fd = fd
			_ = fd.Control(func(fd uintptr) { c.fdNum = int(fd) })
		}
	}
	if c.fd != nil {
		c.onDemand = true
		c.raw.alarmAtReadDeadline(c.readSoon)
	}
	if c.fdNum < 0 {
		c.stopWaiting = upgrade.WaitStopperOf(c.raw.Conn)
	}
	c.raw.divert(c.sendControl) // x/net's pongs and closes go through the writer
	return c
}

// logger is the engine's logger with this connection's address and
// subscriber id, built when there is something to log rather than kept
// for the life of every connection.
func (c *Conn) logger() *slog.Logger {
	return c.server.log.With("remote", c.remote, "subscriber", c.sub.ID())
}

var _ app.Waker = (*Conn)(nil)

// Start begins the connection's life: the subscriber's messages are
// written to it, and its frames are read, until the client or the server
// ends it; then it closes and releases everything, and calls end, which
// releases what the request held (the subscription, the connection slot).
// Start returns at once.
func (c *Conn) Start(end func()) {
	c.end = end
	c.server.pool.add(c)
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
		err := c.server.poller.Watch(c.sub.ID(), c.fd, c)
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

// finish closes the connection once reading has ended, and releases
// everything it held.
func (c *Conn) finish(readErr error) {
	c.finishAfterRead(readErr)

	c.stopWatching()
	c.sub.Leave()
	c.waitWriterIdle(closeLinger)
	c.closeSocket()
	c.mu.Lock()
	for c.writing { // a blocked write fails once the socket is closed
		c.idle.Wait()
	}
	c.mu.Unlock()
	c.raw.stopAlarm()
	if c.onDemand {
		c.server.poller.Forget(c.sub.ID())
	}
	c.server.pool.remove(c)
	c.logger().Info("websocket closed", "duration", time.Since(c.started).Round(time.Millisecond))
	c.end()
}

// finishAfterRead answers however the reading ended.
func (c *Conn) finishAfterRead(err error) {
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
