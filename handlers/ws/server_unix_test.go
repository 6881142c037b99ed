//go:build unix

package ws

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"herald/app"
)

// hangGuard bounds how long a test waits for an event that never comes.
// It is not an assertion about speed: waits end on the event itself.
const hangGuard = time.Minute

// wsPath is where the test server takes upgrades.
const wsPath = "/ws"

// testConfig is the engine's configuration as Herald's defaults set it.
func testConfig() Config {
	return Config{MaxFrameBytes: 4 << 10, PingInterval: 30 * time.Second, IdleTimeout: 40 * time.Second, WriteTimeout: 10 * time.Second}
}

// quietConfig is testConfig with no pings of the server's own among the
// pongs, and no idle timeout.
func quietConfig() Config {
	cfg := testConfig()
	cfg.PingInterval, cfg.IdleTimeout = time.Hour, time.Hour
	return cfg
}

// wsTestServer serves WebSocket upgrades with the engine alone, over real
// HTTP, without Echo or the routes' checks: each upgrade subscribes to
// ?topic= (default: the default topic), in JSON mode with ?format=json.
// It lets a test look at the connections it serves.
type wsTestServer struct {
	addr   string // host:port
	hub    *app.Hub
	engine *Server
	logs   *lockedLog

	mu    sync.Mutex
	ended map[string]chan struct{} // by the client's address: closed once its connection has finished
	// endedTwice counts the times a connection finished again, which
	// fails the test when it ends.
	endedTwice atomic.Int32
}

// serveOptions are the ways a test changes how the server serves.
type serveOptions struct {
	// socketBytes, unless 0, is the send and receive buffer of every
	// socket the server accepts, so that a client that stops reading
	// fills them soon and by a known amount.
	socketBytes int
	// beforeStart, if set, is given each connection between Accept and
	// Start, before anything else can use it.
	beforeStart func(*Conn)
	// shardless stops the writer pool's goroutines before the first
	// connection: connections queue on its one shard, and the test writes
	// to them by playing the shard's part (see writerShard.take).
	shardless bool
}

// startWebSocketServer serves upgrades with an engine of cfg until the
// test ends. socketBytes, unless 0, is the send and receive buffer of
// every socket the server accepts.
func startWebSocketServer(t *testing.T, cfg Config, socketBytes int) *wsTestServer {
	t.Helper()
	return startWebSocketServerWith(t, cfg, serveOptions{socketBytes: socketBytes})
}

// startWebSocketServerWith is startWebSocketServer with options.
func startWebSocketServerWith(t *testing.T, cfg Config, opts serveOptions) *wsTestServer {
	t.Helper()
	socketBytes := opts.socketBytes
	hub, err := app.NewHub(app.HubOptions{
		MaxLagBytes: 16 << 20, MaxMessageBytes: 64 << 10, HistorySize: 1000, HistoryTTL: time.Hour, MaxTopics: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedLog{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	engine, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if opts.shardless {
		engine.pool.stopWriters()
	}
	s := &wsTestServer{hub: hub, engine: engine, logs: logs, ended: map[string]chan struct{}{}}
	upgrade := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		topic := r.URL.Query().Get("topic")
		if topic == "" {
			topic = app.DefaultTopic
		}
		sub, err := hub.Subscribe(app.SubscribeRequest{Topic: topic, Label: r.RemoteAddr})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// Known before the handshake's answer, so that a client that has
		// its answer can ask for it.
		ended := make(chan struct{})
		s.mu.Lock()
		s.ended[r.RemoteAddr] = ended
		s.mu.Unlock()
		conn, err := engine.Accept(w, r, sub, r.URL.Query().Get("format") == "json", r.RemoteAddr)
		if err != nil {
			sub.Close()
			return
		}
		if opts.beforeStart != nil {
			opts.beforeStart(conn)
		}
		var once atomic.Bool
		conn.Start(func() {
			sub.Close()
			if once.Swap(true) {
				s.endedTwice.Add(1)
				return
			}
			close(ended)
		})
	})
	mux := http.NewServeMux()
	mux.Handle(wsPath, upgrade)

	listen := net.ListenConfig{Control: func(_, _ string, raw syscall.RawConn) error {
		if socketBytes == 0 {
			return nil
		}
		return setSocketBuffers(raw, socketBytes, socketBytes)
	}}
	ln, err := listen.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := httptest.NewUnstartedServer(mux)
	server.Listener.Close()
	server.Listener = ln
	server.Start()
	t.Cleanup(func() {
		// Bounded, so that a test whose connection never finishes fails
		// and shows why rather than hanging here.
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		server.Close()
		engine.Close()
		if n := s.endedTwice.Load(); n > 0 {
			t.Errorf("connections finished %d times more than once each, releasing their subscriptions again", n)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	s.addr = ln.Addr().String()
	return s
}

// endedOf is closed once the server has finished the connection of the
// client whose local address is clientAddr, and released its subscription.
// The client must have had the handshake's answer.
func (s *wsTestServer) endedOf(t *testing.T, clientAddr net.Addr) <-chan struct{} {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	ended, ok := s.ended[clientAddr.String()]
	if !ok {
		t.Fatalf("the server has not started a connection from %s", clientAddr)
	}
	return ended
}

// stopWriters ends the pool's goroutines before any connection comes, and
// leaves it one shard, which no goroutine serves: a test then writes to
// the connections queued on it itself, as its goroutine would.
func (p *writerPool) stopWriters() {
	p.stop()
	p.stopping = make(chan struct{}) // for the engine's Close
	p.shards = p.shards[:1]
}

// quiesce waits, on a shardless server, until nothing writes to conns
// (their readers may still be writing a pong) and writes what they were
// queued for: from then on only the test writes to them, playing the
// shard's part.
func (s *wsTestServer) quiesce(t *testing.T, conns ...*Conn) {
	t.Helper()
	for _, c := range conns {
		waitUntil(t, "the connection's writing side is free", c.own)
		c.writeOwned(newBatchWriter())
	}
	writeEach(s.engine.pool.shards[0].take(), newBatchWriter())
}

// take empties the shard's queue, as its goroutine does before a round.
func (s *writerShard) take() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	batch := s.queue
	s.queue = nil
	return batch
}

// await waits for ch to be closed or to receive, and fails the test if it
// has not after hangGuard.
func await[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(hangGuard):
		t.Fatalf("%s: still waiting after %s", what, hangGuard)
	}
}

// url is the WebSocket URL of the server, with query appended.
func (s *wsTestServer) url(query string) string {
	return "ws://" + s.addr + wsPath + query
}

// connOf returns the server's side of the client connection whose local
// address is clientAddr. The client must have had an answer on it already,
// so that the server has registered it.
func (s *wsTestServer) connOf(t *testing.T, clientAddr net.Addr) *Conn {
	t.Helper()
	pool := s.engine.pool
	pool.mu.Lock()
	defer pool.mu.Unlock()
	for c := range pool.conns {
		if c.raw.RemoteAddr().String() == clientAddr.String() {
			return c
		}
	}
	t.Fatalf("the server has no connection from %s", clientAddr)
	return nil
}

// waitUntil waits for cond, a state that the code reaches without telling
// anyone, looking again every millisecond; it fails the test if cond
// still does not hold after hangGuard.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %s", what, hangGuard)
		}
		time.Sleep(time.Millisecond)
	}
}

// conns returns every connection the server has started and not yet
// finished.
func (s *wsTestServer) conns() []*Conn {
	pool := s.engine.pool
	pool.mu.Lock()
	defer pool.mu.Unlock()
	var conns []*Conn
	for c := range pool.conns {
		conns = append(conns, c)
	}
	return conns
}

// setSocketBuffers sets a socket's send and receive buffers, in bytes; the
// kernel doubles each for its own bookkeeping.
func setSocketBuffers(raw syscall.RawConn, send, receive int) error {
	var err error
	if controlErr := raw.Control(func(fd uintptr) {
		if err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, send); err == nil {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, receive)
		}
	}); controlErr != nil {
		return controlErr
	}
	return err
}

// dialRaw completes a WebSocket handshake over a TCP connection whose
// buffers are sendBytes and receiveBytes (0 leaves the system's), so that a
// test can send frames no library would, and read, or not read, what
// comes back.
func dialRaw(t *testing.T, s *wsTestServer, sendBytes, receiveBytes int) (net.Conn, *bufio.Reader) {
	t.Helper()
	return dialRawQuery(t, s, "", sendBytes, receiveBytes)
}

// dialRawQuery is dialRaw with query (such as "?topic=x") appended to the
// path.
func dialRawQuery(t *testing.T, s *wsTestServer, query string, sendBytes, receiveBytes int) (net.Conn, *bufio.Reader) {
	t.Helper()
	dialer := net.Dialer{Control: func(_, _ string, raw syscall.RawConn) error {
		if sendBytes == 0 {
			return nil
		}
		return setSocketBuffers(raw, sendBytes, receiveBytes)
	}}
	conn, err := dialer.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(hangGuard))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", wsPath+query, s.addr)
	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return conn, reader
}

// pingPong sends a ping carrying text and fails the test unless the next
// frame is its pong.
func pingPong(t *testing.T, conn net.Conn, frames *bufio.Reader, text string) {
	t.Helper()
	if _, err := conn.Write(maskedFrame(opPing, []byte(text))); err != nil {
		t.Fatal(err)
	}
	expectPong(t, frames, text)
}

// expectPong fails the test unless the next frame is the pong to a ping
// carrying text, sent already.
func expectPong(t *testing.T, frames *bufio.Reader, text string) {
	t.Helper()
	f, err := readServerFrame(frames)
	if err != nil {
		t.Fatalf("ping %q was never answered: %v", text, err)
	}
	if f.opcode != 0xA || string(f.payload) != text {
		t.Fatalf("ping %q: got opcode %x carrying %q, want its pong", text, f.opcode, f.payload)
	}
}

// maskedFrame is one final client frame, masked with a zero key, which
// leaves the payload as it is.
func maskedFrame(opcode byte, payload []byte) []byte {
	frame := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		frame = append(frame, 0x80|byte(n))
	default:
		frame = append(frame, 0x80|126)
		frame = binary.BigEndian.AppendUint16(frame, uint16(n))
	}
	frame = append(frame, 0, 0, 0, 0)
	return append(frame, payload...)
}

// serverFrame is a frame as the server sent it.
type serverFrame struct {
	opcode  byte
	payload []byte
}

// readServerFrame reads one unmasked frame.
func readServerFrame(r *bufio.Reader) (serverFrame, error) {
	var header [2]byte
	if _, err := io.ReadFull(r, header[:]); err != nil {
		return serverFrame{}, err
	}
	n := uint64(header[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return serverFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return serverFrame{}, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return serverFrame{}, err
	}
	return serverFrame{opcode: header[0] & 0x0f, payload: payload}, nil
}

// readTexts reads frames until n text messages have come, skipping the
// server's pings, and returns them.
func readTexts(frames *bufio.Reader, n int) ([]string, error) {
	var texts []string
	for len(texts) < n {
		f, err := readServerFrame(frames)
		if err != nil {
			return texts, fmt.Errorf("after %d of %d messages: %w", len(texts), n, err)
		}
		switch f.opcode {
		case opText:
			texts = append(texts, string(f.payload))
		case opPing:
		default:
			return texts, fmt.Errorf("after %d of %d messages: a frame with opcode %x carrying %q", len(texts), n, f.opcode, f.payload)
		}
	}
	return texts, nil
}

// expectTexts fails the test unless the next messages on frames are want,
// in order.
func expectTexts(t *testing.T, frames *bufio.Reader, want ...string) {
	t.Helper()
	got, err := readTexts(frames, len(want))
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d: got %q, want %q", i, clip(got[i]), clip(want[i]))
		}
	}
}

// clip shortens a long message for a failure's line.
func clip(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%s... (%d bytes)", s[:40], len(s))
	}
	return s
}

// lockedLog keeps what the server logs, for a test that fails to show.
type lockedLog struct {
	mu      sync.Mutex
	buf     []byte
	written chan struct{} // closed, and replaced, by each Write
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if l.written != nil {
		close(l.written)
		l.written = nil
	}
	return len(p), nil
}

// waitFor waits until the log holds text, and fails the test if it does
// not after hangGuard.
func (l *lockedLog) waitFor(t *testing.T, text string) {
	t.Helper()
	giveUp := time.After(hangGuard)
	for {
		l.mu.Lock()
		if bytes.Contains(l.buf, []byte(text)) {
			l.mu.Unlock()
			return
		}
		if l.written == nil {
			l.written = make(chan struct{})
		}
		written := l.written
		l.mu.Unlock()
		select {
		case <-written:
		case <-giveUp:
			t.Fatalf("the server never logged %q", text)
		}
	}
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// TestAConnectionKeepsNoneOfItsRequestsQuery: x/net keeps the handshake's
// request and its URL for the life of the connection, so an idle
// connection would hold whatever query its client sent. The route has read
// the query before the upgrade; the connection keeps only the path.
func TestAConnectionKeepsNoneOfItsRequestsQuery(t *testing.T) {
	t.Parallel()
	accepted := make(chan *Conn, 1)
	s := startWebSocketServerWith(t, Config{PingInterval: time.Hour, IdleTimeout: time.Hour, WriteTimeout: time.Minute, MaxFrameBytes: 4096},
		serveOptions{beforeStart: func(c *Conn) { accepted <- c }})
	dialRawQuery(t, s, "?topic=news&padding="+strings.Repeat("p", 8<<10), 0, 0)
	c := <-accepted
	if q := c.ws.Request().URL.RawQuery; q != "" {
		t.Errorf("the connection keeps its request's query, %d bytes of it", len(q))
	}
	if uri := c.ws.Request().RequestURI; uri != wsPath {
		t.Errorf("the connection keeps the request URI %.40q..., want only the path %q", uri, wsPath)
	}
	if q := c.ws.Config().Location.RawQuery; q != "" {
		t.Errorf("x/net's Location keeps the query, %d bytes of it", len(q))
	}
}

// TestTheHandshakeRequestSharesNoMemoryWithTheRequest: net/http cuts the
// method, the path and the protocol out of one string, the request line,
// query and all. A slim request that kept any of them would keep that
// whole line for the life of the connection.
func TestTheHandshakeRequestSharesNoMemoryWithTheRequest(t *testing.T) {
	t.Parallel()
	raw := "GET /ws?topic=news&padding=" + strings.Repeat("p", 8<<10) + " HTTP/1.1\r\nHost: example.com\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	slim := handshakeRequest(r)
	for _, field := range []struct{ name, slim, request string }{
		{"Method", slim.Method, r.Method},
		{"Proto", slim.Proto, r.Proto},
		{"URL.Path", slim.URL.Path, r.URL.Path},
		{"RequestURI", slim.RequestURI, r.RequestURI},
		{"Host", slim.Host, r.Host},
	} {
		if field.slim != field.request && !strings.HasPrefix(field.request, field.slim) {
			t.Errorf("%s is %q, not the request's %q", field.name, field.slim, field.request)
		}
		if unsafe.StringData(field.slim) == unsafe.StringData(field.request) {
			t.Errorf("%s shares the request's memory", field.name)
		}
	}
}
