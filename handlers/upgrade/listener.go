// Package upgrade serves WebSocket upgrade requests straight off the
// listener, with the same handler net/http serves, and hands every other
// connection to net/http untouched.
//
// Why: net/http gives each connection a 4 KiB read buffer and a 4 KiB write
// buffer from its pools, a cancelable context, and a goroutine that reads
// ahead while the handler runs. A hijacked connection hands none of it
// back, so every WebSocket used to leave 8 KiB of garbage behind it, and
// with thousands connecting at once the collections that garbage set off
// were the largest part of what a connection cost the server beyond the
// kernel's own work. Here the request's head is read into a pooled buffer
// that goes back to the pool as soon as the handler has taken the
// connection, and the handler (Echo: its routes, its middleware and the
// upgrade) runs on a goroutine kept from earlier connections.
//
// Only a connection's first request takes this path, and only a GET for
// one of the configured paths whose head fits in the buffer. Any other
// connection goes to net/http with every byte read so far put back in
// front of the rest, so net/http sees exactly what the client sent.
package upgrade

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Config says which requests the Listener serves itself, and how.
type Config struct {
	// Handler serves the upgrade requests: the handler net/http serves.
	Handler http.Handler
	// Paths are the request paths whose GET requests are served here,
	// matched exactly, before the query.
	Paths []string
	// ReadHeaderTimeout bounds how long a client may take to send its
	// first request's head, as net/http's Server.ReadHeaderTimeout does.
	ReadHeaderTimeout time.Duration
	// WriteTimeout bounds writing a response that refuses the upgrade.
	WriteTimeout time.Duration
	// Logger receives handler panics; nil discards them.
	Logger *slog.Logger
}

// headBufferSize is the most of a request's head the Listener reads:
// WebSocket handshakes are a few hundred bytes. A longer head (many
// cookies, say) goes to net/http, which allows up to a megabyte.
const headBufferSize = 4 << 10

var headReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, headBufferSize) }}

// Listener wraps a net.Listener for http.Server.Serve: its Accept returns
// the connections that net/http serves, and it serves the upgrade requests
// itself.
type Listener struct {
	inner    net.Listener
	cfg      Config
	paths    [][]byte // "GET " + path, each
	ctx      context.Context
	stop     context.CancelFunc
	accepted chan acceptResult // from the accept loop and the connections handed on

	mu      sync.Mutex
	closed  bool
	reading map[net.Conn]struct{} // connections whose first request is being read or served, until hijacked
	serving sync.WaitGroup        // one per connection not yet served or handed on

	// Routers are the goroutines that read and serve first requests. One
	// that has finished waits a while for the next connection instead of
	// exiting: its stack has grown to what serving an upgrade takes, and
	// a new goroutine would grow its own again, copying it twice on the
	// way.
	next    chan net.Conn  // a waiting router takes the connection
	routers sync.WaitGroup // every router
	looped  chan struct{}  // closed when the accept loop has returned

	// handedOn, set only by tests, runs once a connection has been
	// handed to net/http, before its router goes on.
	handedOn func()
}

// routerIdleTime is how long a router waits for another connection.
const routerIdleTime = 10 * time.Second

type acceptResult struct {
	conn net.Conn
	err  error
}

// NewListener starts accepting on inner. The requests it serves carry a
// context that ends when the Listener is closed.
func NewListener(inner net.Listener, cfg Config) *Listener {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	l := &Listener{
		inner:    inner,
		cfg:      cfg,
		ctx:      ctx,
		stop:     stop,
		accepted: make(chan acceptResult),
		reading:  make(map[net.Conn]struct{}),
		next:     make(chan net.Conn),
		looped:   make(chan struct{}),
	}
	for _, p := range cfg.Paths {
		l.paths = append(l.paths, []byte("GET "+p))
	}
	go l.acceptLoop()
	return l
}

// Accept returns the next connection for net/http, or the error the
// underlying listener returned. Errors pass through one at a time, so
// net/http's back-off on a temporary error (too many open files) paces the
// accept loop too.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case a := <-l.accepted:
		return a.conn, a.err
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Addr is the underlying listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting, and closes the connections whose first request is
// still being read: the connections already upgraded belong to the
// handler, and those handed to net/http to net/http. It does not wait; Wait
// does.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	for conn := range l.reading {
		_ = conn.Close()
	}
	l.mu.Unlock()
	l.stop()
	return l.inner.Close()
}

// Wait returns, after Close, once every connection accepted has been
// served or handed on and every goroutine of the Listener has returned.
func (l *Listener) Wait() {
	<-l.looped
	l.serving.Wait()
	l.routers.Wait()
}

func (l *Listener) acceptLoop() {
	defer close(l.looped)
	for {
		conn, err := l.inner.Accept()
		if err != nil {
			select {
			case l.accepted <- acceptResult{err: err}:
			case <-l.ctx.Done():
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !l.track(conn) {
			_ = conn.Close()
			return
		}
		select {
		case l.next <- conn:
		default:
			l.routers.Add(1)
			go l.router(conn)
		}
	}
}

// router serves conn, then each connection it is given next, until none
// comes for routerIdleTime or the Listener closes.
func (l *Listener) router(conn net.Conn) {
	defer l.routers.Done()
	idle := time.NewTimer(routerIdleTime)
	defer idle.Stop()
	for {
		l.route(conn)
		idle.Reset(routerIdleTime)
		select {
		case conn = <-l.next:
		case <-idle.C:
			return
		case <-l.ctx.Done():
			return
		}
	}
}

// track notes conn as being read, unless the Listener is closed.
func (l *Listener) track(conn net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.reading[conn] = struct{}{}
	l.serving.Add(1)
	return true
}

// untrack is called once conn is served, handed on or closed.
func (l *Listener) untrack(conn net.Conn) {
	l.release(conn)
	l.serving.Done()
}

// release gives up the Listener's hold on conn, which Close would
// otherwise close: the handler has taken it over, or it is finished with.
func (l *Listener) release(conn net.Conn) {
	l.mu.Lock()
	delete(l.reading, conn)
	l.mu.Unlock()
}

// route reads the start of conn's first request and serves it, or hands
// the connection to net/http.
func (l *Listener) route(conn net.Conn) {
	defer l.untrack(conn)
	head := headReaders.Get().(*bufio.Reader)
	head.Reset(conn)
	reuse := true
	defer func() {
		if reuse {
			head.Reset(nil)
			headReaders.Put(head)
		}
	}()

	if err := conn.SetReadDeadline(time.Now().Add(l.cfg.ReadHeaderTimeout)); err != nil {
		_ = conn.Close()
		return
	}
	switch ours, err := l.readHead(head); {
	case err != nil:
		// Gone or silent before sending a request: net/http would close
		// it without a word too.
		_ = conn.Close()
	case ours:
		reuse = l.serve(conn, head)
	default:
		l.handOn(conn, head)
	}
}

// readHead reads until head holds the whole of the first request's head,
// and reports that the request is one to serve here, or stops as soon as
// it is clear that it is not: another method or path, or a head longer
// than the buffer.
func (l *Listener) readHead(head *bufio.Reader) (ours bool, err error) {
	searched := 0 // the head's end is not in buffered[:searched]
	for {
		if _, err := head.Peek(head.Buffered() + 1); err != nil {
			return false, err
		}
		buffered, _ := head.Peek(head.Buffered())
		if !l.mayServe(buffered) {
			return false, nil
		}
		// A client sending a byte at a time makes many passes; each
		// searches only what is new, and the three bytes before it.
		if bytes.Contains(buffered[max(0, searched-3):], []byte("\r\n\r\n")) {
			return true, nil
		}
		searched = len(buffered)
		if len(buffered) == head.Size() {
			return false, nil
		}
	}
}

// mayServe reports whether a request starting with start can still be one
// to serve here.
func (l *Listener) mayServe(start []byte) bool {
	for _, prefix := range l.paths {
		n := min(len(start), len(prefix))
		if !bytes.Equal(start[:n], prefix[:n]) {
			continue
		}
		if len(start) == n {
			return true // too little yet to tell
		}
		// The whole prefix matched: the path must end right after it.
		if c := start[len(prefix)]; c == ' ' || c == '?' {
			return true
		}
	}
	return false
}

// handOn gives conn to net/http, with the bytes read so far in front.
func (l *Listener) handOn(conn net.Conn, head *bufio.Reader) {
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		_ = conn.Close()
		return
	}
	buffered, _ := head.Peek(head.Buffered())
	replay := newReplayConn(conn, bytes.Clone(buffered))
	// From here on the connection is net/http's: Close must not close it
	// however long this goroutine takes to get back to route's untrack,
	// by when net/http may be well into serving it.
	l.release(conn)
	select {
	case l.accepted <- acceptResult{conn: replay}:
		if l.handedOn != nil {
			l.handedOn()
		}
	case <-l.ctx.Done():
		_ = conn.Close()
	}
}

// serve reads the request whose head is buffered and serves it. It
// reports whether head is free for another connection: a request with a
// body keeps it, since the body is read through it.
func (l *Listener) serve(conn net.Conn, head *bufio.Reader) (reuse bool) {
	w := &responseWriter{listener: l, conn: conn, head: head, header: make(http.Header), writeTimeout: l.cfg.WriteTimeout}
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		// As net/http does: log the panic, unless it is the handler's way
		// of aborting, and drop the connection unless it was taken over.
		reuse = false
		if p != http.ErrAbortHandler {
			stack := make([]byte, 16<<10)
			stack = stack[:runtime.Stack(stack, false)]
			l.cfg.Logger.Error("panic serving a WebSocket upgrade", "remote", conn.RemoteAddr().String(), "panic", fmt.Sprint(p), "stack", string(stack))
		}
		if !w.hijacked {
			_ = conn.Close()
		}
	}()
	req, err := http.ReadRequest(head)
	if err != nil {
		w.refuse(http.StatusBadRequest, "malformed request: "+err.Error())
		return true
	}
	if status, reason := refusal(req); status != 0 {
		w.refuse(status, reason)
		return true
	}
	req.RemoteAddr = conn.RemoteAddr().String()
	req = req.WithContext(l.ctx)
	reuse = req.Body == http.NoBody
	l.cfg.Handler.ServeHTTP(w, req)
	if !w.hijacked {
		w.finish()
	}
	return reuse
}

// refusal is what net/http's server checks of a request beyond what
// http.ReadRequest does (which refuses bad characters in headers itself),
// with the same statuses: the protocol version and the Host header.
func refusal(req *http.Request) (status int, reason string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "unsupported protocol version"
	}
	// http.ReadRequest has moved the Host header to req.Host, and refused
	// more than one.
	switch {
	case req.ProtoAtLeast(1, 1) && req.Host == "":
		return http.StatusBadRequest, "missing required Host header"
	case !httpguts.ValidHostHeader(req.Host):
		return http.StatusBadRequest, "malformed Host header"
	}
	return 0, ""
}
