package upgrade

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// served is what the test handler saw of one request.
type served struct {
	byListener bool // the Listener served it, not net/http
	method     string
	target     string
	remote     string
	body       string
	hasContext bool // the request's context ends when the Listener closes
}

// testServer is net/http serving through a Listener, with a handler that
// reports each request and upgrades GET /ws: it answers with a 101 and
// then echoes every byte it reads.
type testServer struct {
	addr     string
	listener *Listener
	requests chan served
	logs     *bytes.Buffer
	logMu    *sync.Mutex
}

func startServer(t *testing.T, configure func(*Config), handle func(http.ResponseWriter, *http.Request) bool) *testServer {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: inner.Addr().String(), requests: make(chan served, 16), logs: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		_, byListener := w.(*responseWriter)
		s.requests <- served{
			byListener: byListener, method: r.Method, target: r.RequestURI, remote: r.RemoteAddr, body: string(body),
			hasContext: r.Context().Done() != nil,
		}
		if handle != nil && handle(w, r) {
			return
		}
		if r.URL.Path == "/ws" && r.Header.Get("Upgrade") == "websocket" {
			echoAfterUpgrade(t, w)
			return
		}
		_, _ = io.WriteString(w, "plain "+r.URL.Path)
	})
	cfg := Config{
		Handler:           handler,
		Paths:             []string{"/ws"},
		ReadHeaderTimeout: time.Minute,
		WriteTimeout:      time.Minute,
		Logger:            slog.New(slog.NewTextHandler(lockedWriter{s.logs, s.logMu}, nil)),
	}
	if configure != nil {
		configure(&cfg)
	}
	s.listener = NewListener(inner, cfg)
	server := &http.Server{Handler: handler, ReadHeaderTimeout: time.Minute}
	done := make(chan error, 1)
	go func() { done <- server.Serve(s.listener) }()
	t.Cleanup(func() {
		if err := server.Close(); err != nil {
			t.Error(err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
		s.listener.Wait()
	})
	return s
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// echoAfterUpgrade hijacks, answers 101 and echoes what the client sends
// until it closes.
func echoAfterUpgrade(t *testing.T, w http.ResponseWriter) {
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	go func() {
		defer conn.Close()
		if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"); err != nil {
			return
		}
		_, _ = io.Copy(conn, rw.Reader)
	}()
}

func (s *testServer) dial(t *testing.T) net.Conn {
	t.Helper()
	return dial(t, s.addr)
}

// dial connects to addr; the test closes the connection when it ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// Not a measure of speed: a read that would wait forever fails the
	// test instead of hanging the run.
	if err := conn.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// bareListener is a Listener that serves handler, with nothing behind it
// for other requests, for tests of the Listener's own life. The test
// closes it.
func bareListener(t *testing.T, handler http.HandlerFunc) (*Listener, string) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, Config{
		Handler:           handler,
		Paths:             []string{"/ws"},
		ReadHeaderTimeout: time.Minute,
		WriteTimeout:      time.Minute,
	})
	return l, inner.Addr().String()
}

func (s *testServer) next(t *testing.T) served {
	t.Helper()
	select {
	case r := <-s.requests:
		return r
	case <-time.After(time.Minute):
		t.Fatal("the handler was never called")
		return served{}
	}
}

func write(t *testing.T, conn net.Conn, text string) {
	t.Helper()
	if _, err := io.WriteString(conn, text); err != nil {
		t.Fatal(err)
	}
}

func readResponse(t *testing.T, r *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

const upgradeHead = "GET /ws?topic=news HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"

func TestUpgradeIsServedByTheListenerWithBytesSentBehindIt(t *testing.T) {
	s := startServer(t, nil, nil)
	conn := s.dial(t)
	// The head and the first bytes of the new protocol in one write: the
	// bytes behind the head must reach the handler, first and intact.
	write(t, conn, upgradeHead+"early")
	got := s.next(t)
	if !got.byListener || got.method != "GET" || got.target != "/ws?topic=news" || !got.hasContext {
		t.Fatalf("the handler saw %+v; want GET /ws?topic=news served by the Listener, with its context", got)
	}
	if got.remote != conn.LocalAddr().String() {
		t.Errorf("RemoteAddr = %q, want the client's address %q", got.remote, conn.LocalAddr())
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	write(t, conn, " and late")
	want := "early and late"
	echoed := make([]byte, len(want))
	if _, err := io.ReadFull(r, echoed); err != nil {
		t.Fatal(err)
	}
	if string(echoed) != want {
		t.Errorf("echoed %q, want %q", echoed, want)
	}
}

func TestEveryOtherRequestReachesNetHTTPByteForByte(t *testing.T) {
	s := startServer(t, nil, nil)
	bigCookie := "Cookie: c=" + strings.Repeat("x", headBufferSize) + "\r\n"
	for _, tc := range []struct {
		name, request, target, body string
	}{
		{"another path", "GET /other HTTP/1.1\r\nHost: a\r\n\r\n", "/other", ""},
		{"a path the route's path begins", "GET /wsx HTTP/1.1\r\nHost: a\r\n\r\n", "/wsx", ""},
		{"a path below the route's", "GET /ws/more HTTP/1.1\r\nHost: a\r\n\r\n", "/ws/more", ""},
		{"another method on the route", "POST /ws HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", "/ws", "hello"},
		{"a head longer than the buffer", "GET /ws HTTP/1.1\r\nHost: a\r\n" + bigCookie + "\r\n", "/ws", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := s.dial(t)
			write(t, conn, tc.request)
			got := s.next(t)
			if got.byListener || got.target != tc.target || got.body != tc.body {
				t.Fatalf("the handler saw %+v; want %s with body %q served by net/http", got, tc.target, tc.body)
			}
			resp, body := readResponse(t, bufio.NewReader(conn))
			if resp.StatusCode != http.StatusOK || body != "plain "+strings.Split(tc.target, "?")[0] {
				t.Errorf("got %d %q", resp.StatusCode, body)
			}
		})
	}
}

func TestKeepAliveConnectionsStayWithNetHTTP(t *testing.T) {
	s := startServer(t, nil, nil)
	conn := s.dial(t)
	r := bufio.NewReader(conn)
	write(t, conn, "GET /page HTTP/1.1\r\nHost: a\r\n\r\n")
	if got := s.next(t); got.byListener {
		t.Fatal("the first request was served by the Listener")
	}
	readResponse(t, r)
	// Only a connection's first request is the Listener's: an upgrade
	// later on the same connection is net/http's.
	write(t, conn, upgradeHead)
	if got := s.next(t); got.byListener || got.target != "/ws?topic=news" {
		t.Fatalf("the second request: %+v, want it served by net/http", got)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade through net/http: %v %v", resp, err)
	}
}

func TestARefusedUpgradeGetsAWholeResponseAndTheConnectionCloses(t *testing.T) {
	s := startServer(t, nil, func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"error":"no"}`)
		return true
	})
	conn := s.dial(t)
	write(t, conn, upgradeHead)
	if got := s.next(t); !got.byListener {
		t.Fatal("the upgrade request was not served by the Listener")
	}
	r := bufio.NewReader(conn)
	resp, body := readResponse(t, r)
	if resp.StatusCode != http.StatusForbidden || body != `{"error":"no"}` ||
		resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Date") == "" || !resp.Close {
		t.Errorf("got %d %q %v close=%v", resp.StatusCode, body, resp.Header, resp.Close)
	}
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("after the response: read %d, %v; want the server to close", n, err)
	}
}

func TestAMalformedUpgradeHeadGets400(t *testing.T) {
	s := startServer(t, nil, nil)
	conn := s.dial(t)
	write(t, conn, "GET /ws HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n")
	resp, body := readResponse(t, bufio.NewReader(conn))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "malformed request") {
		t.Errorf("got %d %q, want 400 saying the request is malformed", resp.StatusCode, body)
	}
	// The server goes on serving.
	next := s.dial(t)
	write(t, next, "GET /other HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, _ := readResponse(t, bufio.NewReader(next)); resp.StatusCode != http.StatusOK {
		t.Errorf("the next request got %d", resp.StatusCode)
	}
}

func TestAClientThatStopsMidHeadIsCutOffAtTheHeaderTimeout(t *testing.T) {
	s := startServer(t, func(cfg *Config) { cfg.ReadHeaderTimeout = 50 * time.Millisecond }, nil)
	conn := s.dial(t)
	write(t, conn, "GET /ws HTTP/1.1\r\nHost: a\r\n")
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("read %d, %v; want the server to close the connection", n, err)
	}
	select {
	case got := <-s.requests:
		t.Errorf("the handler was called for a request never finished: %+v", got)
	default:
	}
}

func TestAHandlerPanicIsLoggedAndTheListenerGoesOn(t *testing.T) {
	s := startServer(t, nil, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Query().Get("topic") == "boom" {
			panic("handler failed")
		}
		return false
	})
	conn := s.dial(t)
	write(t, conn, strings.Replace(upgradeHead, "news", "boom", 1))
	s.next(t)
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("read %d, %v; want the connection closed", n, err)
	}
	s.logMu.Lock()
	logged := s.logs.String()
	s.logMu.Unlock()
	if !strings.Contains(logged, "panic serving a WebSocket upgrade") || !strings.Contains(logged, "handler failed") {
		t.Errorf("log: %q", logged)
	}
	next := s.dial(t)
	write(t, next, upgradeHead)
	if got := s.next(t); !got.byListener {
		t.Fatal("the next upgrade was not served")
	}
	if resp, err := http.ReadResponse(bufio.NewReader(next), nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("the next upgrade: %v %v", resp, err)
	}
}

func TestCloseEndsConnectionsStillSendingTheirHead(t *testing.T) {
	called := make(chan struct{}, 1)
	l, addr := bareListener(t, func(http.ResponseWriter, *http.Request) { called <- struct{}{} })
	conn := dial(t, addr)
	write(t, conn, "GET /ws HTTP/1.1\r\n")
	// Connections are accepted in order, and each is in the Listener's
	// hands from then on: once a second one is served, the first is
	// there to be closed.
	write(t, dial(t, addr), upgradeHead)
	<-called

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("read %d, %v; want the half-sent request's connection closed", n, err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	l.Wait()
}

func TestTheRequestContextEndsWhenTheListenerCloses(t *testing.T) {
	contexts := make(chan context.Context, 1)
	l, addr := bareListener(t, func(_ http.ResponseWriter, r *http.Request) { contexts <- r.Context() })
	write(t, dial(t, addr), upgradeHead)
	ctx := <-contexts
	if ctx.Err() != nil {
		t.Fatal("the context ended before the Listener closed")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	l.Wait()
}

// A connection handed to net/http is net/http's from then on: Close must
// not close it, even while the router that handed it on has yet to come
// back, which on a busy machine can be well after net/http began serving
// it. A server's Shutdown closes the Listener first, and a response in
// progress, such as an event stream, must still end whole.
func TestCloseLeavesConnectionsHandedOnToNetHTTP(t *testing.T) {
	finish := make(chan struct{})
	l, addr := bareListener(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "begun\n")
		w.(http.Flusher).Flush()
		<-finish
		_, _ = io.WriteString(w, "ended\n")
	})
	resume := make(chan struct{})
	handedOn := make(chan struct{}, 1)
	l.handedOn = func() {
		handedOn <- struct{}{}
		<-resume // the router is held right after the hand-off
	}
	server := &http.Server{Handler: l.cfg.Handler, ReadHeaderTimeout: time.Minute}
	served := make(chan error, 1)
	go func() { served <- server.Serve(l) }()

	conn := dial(t, addr)
	defer conn.Close()
	write(t, conn, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the request: %v %v", resp, err)
	}
	<-handedOn
	if err := l.Close(); err != nil { // as Shutdown does first
		t.Fatal(err)
	}
	close(finish)
	body, err := io.ReadAll(resp.Body)
	close(resume)
	if err != nil || string(body) != "begun\nended\n" {
		t.Errorf("the response in progress when the Listener closed ended with %q, %v; want it whole", body, err)
	}
	server.Close()
	<-served
	l.Wait()
}

func TestCloseLeavesUpgradedConnectionsToTheirHandler(t *testing.T) {
	closed := make(chan struct{})
	// The handler is still running when the Listener closes, as Echo's
	// middleware can be after the upgrade.
	l, addr := bareListener(t, func(w http.ResponseWriter, _ *http.Request) {
		echoAfterUpgrade(t, w)
		<-closed
	})
	conn := dial(t, addr)
	write(t, conn, upgradeHead)
	r := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(r, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	close(closed)
	write(t, conn, "still here")
	echoed := make([]byte, len("still here"))
	if _, err := io.ReadFull(r, echoed); err != nil || string(echoed) != "still here" {
		t.Errorf("after Close: echoed %q, %v", echoed, err)
	}
	conn.Close()
	l.Wait()
}

func TestUpgradeRequestsGetNetHTTPsChecks(t *testing.T) {
	s := startServer(t, nil, nil)
	for _, tc := range []struct {
		name, head string
		status     int
		says       string
	}{
		{"no Host", "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 400, "missing required Host header"},
		{"two Hosts", "GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "too many Host headers"},
		{"an invalid header name", "GET /ws HTTP/1.1\r\nHost: a\r\nX(Test): a\r\n\r\n", 400, "malformed MIME header line"},
		{"a bad Host", "GET /ws HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "malformed Host header"},
		{"a control character in a value", "GET /ws HTTP/1.1\r\nHost: a\r\nX-Test: a\x01b\r\n\r\n", 400, "malformed MIME header line"},
		{"HTTP/2", "GET /ws HTTP/2.0\r\nHost: a\r\n\r\n", 505, "unsupported protocol version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := s.dial(t)
			write(t, conn, tc.head)
			resp, body := readResponse(t, bufio.NewReader(conn))
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) {
				t.Errorf("got %d %q, want %d saying %q", resp.StatusCode, body, tc.status, tc.says)
			}
			select {
			case got := <-s.requests:
				t.Errorf("the handler was called: %+v", got)
			default:
			}
		})
	}
}

func TestAHeadSentInPiecesIsServedWhereverItIsCut(t *testing.T) {
	s := startServer(t, nil, nil)
	// Cut inside the blank line that ends the head, and at the path:
	// whether the server reads the pieces apart is up to the network, but
	// every cut must still be served.
	for _, cut := range []int{len(upgradeHead) - 1, len(upgradeHead) - 2, len(upgradeHead) - 3, 6} {
		conn := s.dial(t)
		write(t, conn, upgradeHead[:cut])
		write(t, conn, upgradeHead[cut:])
		if got := s.next(t); !got.byListener || got.target != "/ws?topic=news" {
			t.Fatalf("cut at %d: the handler saw %+v", cut, got)
		}
		if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("cut at %d: %v %v", cut, resp, err)
		}
	}
}
