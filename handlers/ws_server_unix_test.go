//go:build unix

package handlers

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

	"github.com/labstack/echo/v4"

	"herald/app"
)

// hangGuard bounds how long a test waits for an event that never comes.
// It is not an assertion about speed: waits end on the event itself.
const hangGuard = time.Minute

// wsTestServer serves the WebSocket route alone, built as New builds it,
// over real HTTP, and lets a test look at the connections it serves.
type wsTestServer struct {
	addr   string // host:port
	hub    *app.Hub
	stream *streamHandler
	logs   *lockedLog
}

// startWebSocketServer serves cfg's WebSocket route until the test ends.
// socketBytes, unless 0, is the send and receive buffer of every socket the
// server accepts, so that a client that stops reading fills them soon and
// by a known amount.
func startWebSocketServer(t *testing.T, cfg app.Config, socketBytes int) *wsTestServer {
	t.Helper()
	hub, err := app.NewHub(app.HubOptions{
		MaxLagBytes: cfg.Limits.MaxLagBytes, MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		HistorySize: cfg.History.Size, HistoryTTL: cfg.History.TTL, MaxTopics: cfg.Limits.MaxTopics,
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedLog{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	broker := app.NewMemoryBroker(hub)
	stream, subscription := newWebSocketRoute(cfg, hub, broker, time.Now, log, newMetrics(hub, broker))
	e := echo.New()
	e.Use(withScope)
	e.GET(cfg.Paths.WS, chain(stream.serve, subscription))

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
	server := httptest.NewUnstartedServer(e)
	server.Listener.Close()
	server.Listener = ln
	server.Start()
	t.Cleanup(func() {
		if err := hub.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		server.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	return &wsTestServer{addr: ln.Addr().String(), hub: hub, stream: stream, logs: logs}
}

// url is the WebSocket URL of the route, with query appended.
func (s *wsTestServer) url(query string) string {
	return "ws://" + s.addr + app.DefaultConfig().Paths.WS + query
}

// connOf returns the server's side of the client connection whose local
// address is clientAddr. The client must have had an answer on it already,
// so that the server has registered it.
func (s *wsTestServer) connOf(t *testing.T, clientAddr net.Addr) *wsConn {
	t.Helper()
	pool := s.stream.pool
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
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", app.DefaultConfig().Paths.WS, s.addr)
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
