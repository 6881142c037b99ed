package upgrade

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// maxRefusalBytes bounds a response that does not upgrade: the upgrade
// route writes only short errors.
const maxRefusalBytes = 64 << 10

// refusalLinger is how long a refused client has to read the response and
// close before the server closes anyway; net/http waits 500 ms.
const refusalLinger = time.Second

var errRefusalTooLarge = errors.New("upgrade: a response on the WebSocket route is over 64 KiB")

// responseWriter is what the handler gets for a request served here. A
// handler that upgrades hijacks the connection; any other response is
// buffered and written whole, with Connection: close, once the handler
// returns.
type responseWriter struct {
	listener     *Listener
	conn         net.Conn
	head         *bufio.Reader // the pooled reader; the handler never sees it
	header       http.Header
	status       int
	body         bytes.Buffer
	hijacked     bool
	writeTimeout time.Duration
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(status int) {
	if w.status == 0 && !w.hijacked {
		w.status = status
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Len()+len(p) > maxRefusalBytes {
		return 0, errRefusalTooLarge
	}
	return w.body.Write(p)
}

// Hijack hands over the connection, with a reader holding whatever the
// client sent behind the request's head: the pooled buffer it was read
// into stays here.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	// Only the head's read deadline was set; the handler sets its own.
	if err := w.conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, nil, fmt.Errorf("upgrade: hijack: %w", err)
	}
	w.hijacked = true
	w.listener.release(w.conn) // the handler's now: closing the Listener leaves it open
	n := w.head.Buffered()
	if n == 0 {
		return w.conn, bufio.NewReadWriter(bufio.NewReaderSize(w.conn, 16), bufio.NewWriterSize(w.conn, 16)), nil
	}
	early, _ := w.head.Peek(n)
	reader := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), w.conn), n)
	if _, err := reader.Peek(n); err != nil {
		return nil, nil, fmt.Errorf("upgrade: hijack: %w", err)
	}
	return w.conn, bufio.NewReadWriter(reader, bufio.NewWriterSize(w.conn, 16)), nil
}

// refuse answers a request that could not be read.
func (w *responseWriter) refuse(status int, reason string) {
	w.header.Set("Content-Type", "text/plain; charset=utf-8")
	w.status = status
	w.body.Reset()
	fmt.Fprintf(&w.body, "%d %s: %s", status, http.StatusText(status), reason)
	w.finish()
}

// finish writes the buffered response, as net/http would have, and closes
// the connection: a connection whose upgrade was refused is not reused.
func (w *responseWriter) finish() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	h := w.header
	if _, ok := h["Date"]; !ok {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	body := w.body.Bytes()
	if bodyAllowed(w.status) {
		if len(body) > 0 && h.Get("Content-Type") == "" {
			h.Set("Content-Type", http.DetectContentType(body))
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
	} else {
		body = nil
		h.Del("Content-Length")
	}
	h.Set("Connection", "close")
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 %03d %s\r\n", w.status, http.StatusText(w.status))
	_ = h.Write(&out)
	out.WriteString("\r\n")
	out.Write(body)
	if err := w.conn.SetWriteDeadline(time.Now().Add(w.writeTimeout)); err == nil {
		_, _ = w.conn.Write(out.Bytes())
	}
	closeAfterResponse(w.conn)
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// closeAfterResponse closes conn without losing the response: closing a
// socket that still holds unread bytes from the client sends a reset,
// which can destroy the response before the client reads it. So it ends
// its side, then reads until the client closes too, for at most
// refusalLinger.
func closeAfterResponse(conn net.Conn) {
	defer conn.Close()
	closer, ok := conn.(interface{ CloseWrite() error })
	if !ok || closer.CloseWrite() != nil {
		return
	}
	if conn.SetReadDeadline(time.Now().Add(refusalLinger)) != nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, maxRefusalBytes))
}

// replayConn is a connection handed to net/http: what the Listener read
// from it comes first, then the rest of the stream. Its writes can be told
// to stop waiting for room in a full socket (StopWaiting).
type replayConn struct {
	net.Conn
	pending []byte
	raw     syscall.RawConn // nil where a write cannot be made without waiting
	noWait  atomic.Bool     // StopWaiting was called
	waiting atomic.Bool     // a write found the socket full and waits for room
}

func newReplayConn(conn net.Conn, pending []byte) *replayConn {
	return &replayConn{Conn: conn, pending: pending, raw: rawSocket(conn)}
}

// errSocketFull fails a write, after StopWaiting, that found no room.
var errSocketFull = errors.New("the socket is full and the server has stopped waiting for the client to read")

// Write writes p, and while the socket is full waits for room, as the
// connection's own Write does, unless StopWaiting was called.
func (c *replayConn) Write(p []byte) (int, error) {
	if c.raw == nil {
		return c.Conn.Write(p)
	}
	if c.noWait.Load() {
		// No write waits any more, so no deadline is needed, and one that
		// StopWaiting set to wake a write must not fail the next.
		_ = c.Conn.SetWriteDeadline(time.Time{})
	}
	written := 0
	var writeErr error
	err := c.raw.Write(func(fd uintptr) bool {
		for written < len(p) {
			n, full, err := writeSocket(fd, p[written:])
			written += n
			switch {
			case err != nil:
				writeErr = err
				return true
			case full:
				// Said before looking, where StopWaiting looks after
				// saying: one of the two sees the other.
				c.waiting.Store(true)
				if c.noWait.Load() {
					writeErr = errSocketFull
					return true
				}
				return false // Go's poller waits for room, or the deadline
			}
		}
		return true
	})
	c.waiting.Store(false)
	if writeErr == nil {
		writeErr = err
	}
	if writeErr == nil {
		return written, nil
	}
	if c.noWait.Load() && errors.Is(writeErr, os.ErrDeadlineExceeded) {
		writeErr = errSocketFull // the deadline was StopWaiting's
	}
	return written, &net.OpError{Op: "write", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: writeErr}
}

// StopWaitingListener wraps l so that the connections it accepts can stop
// waiting for room in a full socket, as those a Listener hands to net/http
// can (see replayConn.StopWaiting). It is for connections that do not come
// through a Listener, such as those a server serves TLS over.
func StopWaitingListener(l net.Listener) net.Listener { return stopWaitingListener{l} }

type stopWaitingListener struct{ net.Listener }

func (l stopWaitingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newReplayConn(conn, nil), nil
}

// StopWaiting ends a write that is waiting for room in the full socket,
// and has every later write that finds it full return at once, with an
// error, what fitted written. A server that is shutting down uses it, so
// that a client that stopped reading does not hold it up; a client that
// reads gets everything that fits in its socket, which is all it is owed
// unless it had fallen behind.
func (c *replayConn) StopWaiting() {
	c.noWait.Store(true)
	if c.waiting.Load() {
		_ = c.Conn.SetWriteDeadline(time.Now()) // wakes the waiting write
	}
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		return c.Conn.Read(p)
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// CloseWrite lets net/http end its side first, as it does before closing
// a connection it has answered with an error.
func (c *replayConn) CloseWrite() error {
	if closer, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return closer.CloseWrite()
	}
	return c.Conn.Close()
}

// ReadFrom keeps sendfile(2) for net/http's file responses.
func (c *replayConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.Conn, r)
}
