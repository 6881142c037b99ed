package ws

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

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
