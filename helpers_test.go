package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"herald/app/redistest"

	gorilla "github.com/gorilla/websocket"
)

// hangGuard bounds how long a test may wait for an event that never comes.
// It is not an assertion about speed: waits end on the event itself.
const hangGuard = time.Minute

// unlimitedPublishing turns the per-address publish rate limit off, for
// tests that publish more than a burst from one address on purpose.
const unlimitedPublishing = "limits:\n  publish_per_second: 0\n"

// heraldProcess is Herald started in-process by run, as main starts it.
type heraldProcess struct {
	URL    string // page URL as printed, e.g. http://127.0.0.1:41234/
	Origin string // scheme and host, e.g. http://127.0.0.1:41234
	stop   context.CancelFunc
	done   chan error
	logs   *testLog
	result error // run's error, once it has returned
	// configPath is the config file it runs with.
	configPath string
}

// startHerald runs Herald on a free loopback port with the given YAML added
// to its config file. It stops when the test ends.
func startHerald(t testing.TB, extraYAML string) *heraldProcess {
	t.Helper()
	return startHeraldEnv(t, "host: 127.0.0.1\nport: 0\n"+extraYAML, nil)
}

// startHeraldEnv runs Herald with exactly this config and environment.
func startHeraldEnv(t testing.TB, configYAML string, env map[string]string) *heraldProcess {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stdoutReader, stdout := io.Pipe()
	h := &heraldProcess{stop: cancel, done: make(chan error, 1), logs: newTestLog(t), configPath: path}
	go func() {
		err := run(ctx, []string{"-config", path}, func(k string) string { return env[k] }, stdout, h.logs)
		stdout.CloseWithError(err)
		h.done <- err
	}()
	line, err := bufio.NewReader(stdoutReader).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("herald did not start: %v", err)
	}
	go io.Copy(io.Discard, stdoutReader)
	h.URL = strings.TrimSpace(strings.TrimPrefix(line, "Herald is listening on "))
	u, err := url.Parse(h.URL)
	if err != nil {
		t.Fatalf("start-up line %q: %v", line, err)
	}
	h.Origin = u.Scheme + "://" + u.Host
	t.Cleanup(func() { h.Stop(t) })
	return h
}

// Stop shuts Herald down as SIGTERM would and returns run's error. Calling
// it again returns the same result.
func (h *heraldProcess) Stop(t testing.TB) error {
	t.Helper()
	return h.stopOrFail(t, "herald did not stop")
}

// stopOrFail is Stop, failing the test with why if run has not returned
// within hangGuard.
func (h *heraldProcess) stopOrFail(t testing.TB, why string) error {
	t.Helper()
	h.stop()
	select {
	case err, ok := <-h.done:
		if ok {
			close(h.done)
			h.logs.close()
			h.result = err
		}
		return h.result
	case <-time.After(hangGuard):
		t.Fatal(why)
		return nil
	}
}

// ws returns the WebSocket URL for path.
func (h *heraldProcess) ws(path string) string {
	return "ws" + strings.TrimPrefix(h.Origin, "http") + path
}

// publish GETs the notify route with msg and fails the test unless it is 200.
func (h *heraldProcess) publish(t testing.TB, msg string) receiptReply {
	t.Helper()
	return h.publishTo(t, "/notify", msg)
}

func (h *heraldProcess) publishTo(t testing.TB, notifyPath, msg string) receiptReply {
	t.Helper()
	resp, err := http.Get(h.Origin + notifyPath + "?msg=" + url.QueryEscape(msg))
	if err != nil {
		t.Fatal(err)
	}
	return decodeReceipt(t, resp)
}

type receiptReply struct {
	ID          string `json:"id"`
	Topic       string `json:"topic"`
	Subscribers int    `json:"subscribers"`
}

// id is the receipt's id as a number.
func (r receiptReply) id(t testing.TB) uint64 {
	t.Helper()
	return parseID(t, r.ID)
}

// parseID reads a message id, which Herald sends as a decimal string.
func parseID(t testing.TB, s string) uint64 {
	t.Helper()
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("message id %q: %v", s, err)
	}
	return id
}

// dial connects a gorilla client. It sends no Origin header, like the
// Python and command-line clients Herald must accept.
func dial(t testing.TB, url string) *gorilla.Conn {
	t.Helper()
	conn, resp, err := gorilla.DefaultDialer.Dial(url, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readText reads one frame and fails unless it is a text frame.
func readText(t testing.TB, conn *gorilla.Conn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(hangGuard))
	kind, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if kind != gorilla.TextMessage {
		t.Fatalf("got frame type %d, want text", kind)
	}
	return string(data)
}

// backgroundReader reads a connection's frames as they come, so that the
// client never stalls; it stops when the connection ends.
type backgroundReader struct {
	frames chan string // every text frame, in order
	ended  chan error  // why the connection ended; filled once
}

func readInBackground(conn *gorilla.Conn, buffer int) *backgroundReader {
	r := &backgroundReader{frames: make(chan string, buffer), ended: make(chan error, 1)}
	go func() {
		defer close(r.frames)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				r.ended <- err
				return
			}
			r.frames <- string(data)
		}
	}()
	return r
}

// next returns the next frame, failing the test if the connection ends
// first.
func (r *backgroundReader) next(t testing.TB) string {
	t.Helper()
	select {
	case frame, ok := <-r.frames:
		if ok {
			return frame
		}
	case <-time.After(hangGuard):
		t.Fatal("no frame arrived")
	}
	t.Fatalf("connection ended: %v", <-r.ended)
	return ""
}

// readUntilClosed reads and discards frames until the connection ends and
// returns the error that ended it.
func readUntilClosed(conn *gorilla.Conn) error {
	conn.SetReadDeadline(time.Now().Add(hangGuard))
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			return err
		}
	}
}

func closeCode(err error) int {
	var closeErr *gorilla.CloseError
	if errors.As(err, &closeErr) {
		return closeErr.Code
	}
	return -1
}

// freePort is a loopback port that is free now; see redistest.FreePort.
func freePort(t testing.TB) int { return redistest.FreePort(t) }

// testLog sends Herald's log lines to the test log until the server stops,
// so a failing test shows what the server said.
type testLog struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
	all    strings.Builder // everything written, for tests that check the log
}

func newTestLog(t testing.TB) *testLog { return &testLog{t: t} }

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	if _, benchmark := l.t.(*testing.B); !l.closed && !benchmark { // logging would be timed too
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// String is everything logged so far.
func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

func (l *testLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
}

func requireEnv(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("HERALD_REQUIRE_E2E") != "" {
		t.Fatalf("%s is missing, and HERALD_REQUIRE_E2E is set", what)
	}
	t.Skipf("%s is missing; set HERALD_REQUIRE_E2E=1 to make this a failure", what)
}

func decodeReceipt(t testing.TB, resp *http.Response) receiptReply {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: status %d: %s", resp.StatusCode, body)
	}
	var r receiptReply
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("publish: receipt %q: %v", body, err)
	}
	return r
}
