//go:build unix

package ws

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

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

// wsTestServer serves WebSocket upgrades with the engine alone, over real
// HTTP, without Echo or the routes' checks: each upgrade subscribes to
// ?topic= (default: the default topic), in JSON mode with ?format=json.
// It lets a test look at the connections it serves.
type wsTestServer struct {
	addr   string // host:port
	hub    *app.Hub
	engine *Server
	logs   *lockedLog
}

// startWebSocketServer serves upgrades with an engine of cfg until the
// test ends. socketBytes, unless 0, is the send and receive buffer of
// every socket the server accepts, so that a client that stops reading
// fills them soon and by a known amount.
func startWebSocketServer(t *testing.T, cfg Config, socketBytes int) *wsTestServer {
	t.Helper()
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
		conn, err := engine.Accept(w, r, sub, r.URL.Query().Get("format") == "json", r.RemoteAddr)
		if err != nil {
			sub.Close()
			return
		}
		conn.Start(sub.Close)
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
		if err := hub.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		server.Close()
		engine.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	return &wsTestServer{addr: ln.Addr().String(), hub: hub, engine: engine, logs: logs}
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
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", wsPath, s.addr)
	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return conn, reader
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

// lockedLog keeps what the server logs, for a test that fails to show.
type lockedLog struct {
	mu  sync.Mutex
	buf []byte
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	return len(p), nil
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}
