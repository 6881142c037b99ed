package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"go.yaml.in/yaml/v3"
	xws "golang.org/x/net/websocket"

	"herald/app"
	"herald/app/config"
)

func TestEveryPublishMethodReachesEverySubscriberAsOneTextFrame(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	gorillaSubs := []*gorilla.Conn{dial(t, h.ws("/ws")), dial(t, h.ws("/ws"))}
	// x/net's own client always sends an Origin; Herald takes both kinds.
	xnetSub, err := xws.Dial(h.ws("/ws"), "", h.Origin)
	if err != nil {
		t.Fatal(err)
	}
	defer xnetSub.Close()

	var multipartBody strings.Builder
	mw := multipart.NewWriter(&multipartBody)
	mw.WriteField("msg", "multipart ✓")
	mw.Close()

	publishes := []struct {
		name, method, path, contentType, body, want string
	}{
		{"seed GET", http.MethodGet, "/notify?msg=HelloWorld", "", "", "HelloWorld"},
		{"form", http.MethodPost, "/notify", "application/x-www-form-urlencoded", "msg=form+post", "form post"},
		{"raw", http.MethodPost, "/notify", "text/plain", "raw\nbody", "raw\nbody"},
		{"JSON", http.MethodPost, "/notify", "application/json", `{"msg":"json \"quoted\""}`, `json "quoted"`},
		{"multipart", http.MethodPost, "/notify", mw.FormDataContentType(), multipartBody.String(), "multipart ✓"},
	}
	var firstID uint64
	for i, p := range publishes {
		req, err := http.NewRequest(p.method, h.Origin+p.path, strings.NewReader(p.body))
		if err != nil {
			t.Fatal(err)
		}
		if p.contentType != "" {
			req.Header.Set("Content-Type", p.contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got := decodeReceipt(t, resp)
		if i == 0 {
			firstID = got.id(t)
		}
		// Ids rise by one per message within the topic.
		want := receiptReply{ID: fmt.Sprint(firstID + uint64(i)), Topic: app.DefaultTopic, Subscribers: 3}
		if got != want {
			t.Errorf("%s: receipt %+v, want %+v", p.name, got, want)
		}
	}
	for _, conn := range gorillaSubs {
		for _, p := range publishes {
			if got := readText(t, conn); got != p.want {
				t.Errorf("%s: gorilla subscriber got %q, want %q", p.name, got, p.want)
			}
		}
	}
	for _, p := range publishes {
		var got string
		if err := xws.Message.Receive(xnetSub, &got); err != nil {
			t.Fatal(err)
		}
		if got != p.want {
			t.Errorf("%s: x/net subscriber got %q, want %q", p.name, got, p.want)
		}
	}
}

func TestConcurrentPublishesReachEverySubscriberInOneOrder(t *testing.T) {
	t.Parallel()
	h := startHerald(t, unlimitedPublishing)
	subs := []*gorilla.Conn{dial(t, h.ws("/ws")), dial(t, h.ws("/ws"))}
	publishAtOnceAndCheckOneOrder(t, h, subs, 4, 100)
}

// publishAtOnceAndCheckOneOrder has publishers publish each messages at
// once, then checks that every subscriber got all of them, each
// publisher's in the order it sent them, and all in the same order.
func publishAtOnceAndCheckOneOrder(t *testing.T, h *heraldProcess, subs []*gorilla.Conn, publishers, each int) {
	t.Helper()
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				h.publish(t, fmt.Sprintf("%d:%03d", p, i))
			}
		})
	}
	wg.Wait()

	var first []string
	for n, conn := range subs {
		got := make([]string, publishers*each)
		for i := range got {
			got[i] = readText(t, conn)
		}
		// Each publisher publishes in sequence, so its own messages must
		// arrive in the order it sent them.
		next := make([]int, publishers)
		for _, text := range got {
			var p, i int
			fmt.Sscanf(text, "%d:%d", &p, &i)
			if i != next[p] {
				t.Fatalf("subscriber %d: publisher %d's message %d arrived when %d was due", n, p, i, next[p])
			}
			next[p]++
		}
		if first == nil {
			first = got
		} else if !reflect.DeepEqual(got, first) {
			t.Fatalf("subscriber %d saw another order than subscriber 0", n)
		}
	}
}

// Both ways the writers send, a round of connections to one io_uring
// submission and a write per connection, give every subscriber every
// message once, all in one order, over several rounds of sends.
func TestEveryWritePathGivesManySubscribersEveryMessageInOneOrder(t *testing.T) {
	t.Parallel()
	for _, ring := range []bool{true, false} {
		t.Run(fmt.Sprintf("io_uring=%v", ring), func(t *testing.T) {
			t.Parallel()
			h := startHerald(t, fmt.Sprintf("limits:\n  publish_per_second: 0\n  max_connections_per_ip: 1000\n"+
				"websocket:\n  io_uring: %v\n", ring))
			subs := make([]*gorilla.Conn, 200) // rounds are 64 sends
			for i := range subs {
				subs[i] = dial(t, h.ws("/ws"))
			}
			publishAtOnceAndCheckOneOrder(t, h, subs, 4, 25)

			sends := 0.0
			if family := scrape(t, h)["herald_websocket_io_uring_sends_total"]; family != nil {
				sends = family.Metric[0].GetCounter().GetValue()
			}
			// A kernel that refuses io_uring is no fault of Herald's: it
			// must then write the other way, and say so.
			refused := strings.Contains(h.logs.String(), "this kernel does not allow it")
			switch {
			case !ring && (sends != 0 || refused):
				t.Fatalf("io_uring is off, yet it carried %v sends (refusal logged: %v)", sends, refused)
			case ring && refused && sends != 0:
				t.Fatalf("the kernel refused io_uring, yet it carried %v sends", sends)
			case ring && !refused && sends == 0:
				t.Fatal("io_uring is on and the kernel allows it, yet it carried no send")
			case ring && refused:
				t.Log("this kernel refuses io_uring: checked that Herald wrote the other way and said so")
			}
		})
	}
}

func TestSubscriberThatNeverReadsIsDroppedWhileOthersMissNothing(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  publish_per_second: 0\n")
	stalled := dial(t, h.ws("/ws")) // never read until the end
	const healthyCount = 2
	healthy := make([]*backgroundReader, healthyCount)
	for i := range healthy {
		healthy[i] = readInBackground(dial(t, h.ws("/ws")), 100000)
	}

	// Large messages fill the stalled client's socket buffers, then its
	// queue, and the hub must drop it. The bound only stops a broken server
	// from looping for ever.
	payload := strings.Repeat("x", 16<<10)
	var sent []string
	for len(sent) < 20000 {
		msg := fmt.Sprint(len(sent), payload)
		r := h.publish(t, msg)
		sent = append(sent, msg)
		if r.Subscribers == healthyCount {
			break
		}
	}
	if got := h.publish(t, "after the drop"); got.Subscribers != healthyCount {
		t.Fatalf("the stalled subscriber was never dropped: %d subscribers after %d messages", got.Subscribers, len(sent))
	}
	sent = append(sent, "after the drop")

	for i, reader := range healthy {
		for n, want := range sent {
			if got := reader.next(t); got != want {
				t.Fatalf("healthy subscriber %d: message %d is wrong (%.20q…, want %.20q…)", i, n, got, want)
			}
		}
	}
	// The stalled client finds its connection closed once it reads.
	if err := readUntilClosed(stalled); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled client: %v, want its connection closed by the server", err)
	}
}

func TestShutdownDeliversQueuedMessagesThenClosesEveryoneWith1001(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	subs := []*gorilla.Conn{dial(t, h.ws("/ws")), dial(t, h.ws("/ws")), dial(t, h.ws("/ws"))}
	for i := range 5 {
		h.publish(t, fmt.Sprint("before shutdown ", i))
	}
	if err := h.Stop(t); err != nil {
		t.Fatalf("run returned %v after a clean shutdown", err)
	}
	for n, conn := range subs {
		for i := range 5 {
			if got, want := readText(t, conn), fmt.Sprint("before shutdown ", i); got != want {
				t.Errorf("subscriber %d got %q, want %q", n, got, want)
			}
		}
		if code := closeCode(readUntilClosed(conn)); code != gorilla.CloseGoingAway {
			t.Errorf("subscriber %d closed with %d, want 1001", n, code)
		}
	}
}

func TestSeedPythonClientPrintsEveryMessage(t *testing.T) {
	t.Parallel()
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import ws4py").Run(); err != nil {
		requireEnv(t, "Debian's python3-ws4py (the seed client's library)")
	}
	h := startHerald(t, "")
	cmd := exec.Command(python, "testdata/seed_client.py", h.ws("/ws"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	nextLine := func() string {
		if !lines.Scan() {
			t.Fatalf("seed client stopped printing: %v", lines.Err())
		}
		return lines.Text()
	}
	if got := nextLine(); got != "Connection opened..." {
		t.Fatalf("seed client said %q first", got)
	}
	messages := []string{"HelloWorld", "héllo wörld ✓", "<b>not bold</b>"}
	for _, m := range messages {
		h.publish(t, m)
	}
	for _, want := range messages {
		if got := nextLine(); got != want {
			t.Errorf("seed client printed %q, want %q", got, want)
		}
	}
	h.Stop(t)
	if got := nextLine(); !strings.HasPrefix(got, "Closed down 1001") {
		t.Errorf("seed client printed %q on shutdown, want its close with 1001", got)
	}
}

func TestSubscriberFramesAreDiscardedAndAnOversizedOneClosesOnlyItsConnection(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  max_frame_bytes: 128\n")
	chatty, oversized, bystander := dial(t, h.ws("/ws")), dial(t, h.ws("/ws")), dial(t, h.ws("/ws"))

	if err := chatty.WriteMessage(gorilla.TextMessage, []byte("hello server")); err != nil {
		t.Fatal(err)
	}
	if err := oversized.WriteMessage(gorilla.TextMessage, []byte(strings.Repeat("x", 129))); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(readUntilClosed(oversized)); code != gorilla.CloseMessageTooBig {
		t.Fatalf("oversized frame: connection closed with %d, want 1009", code)
	}
	r := h.publish(t, "still here")
	if r.Subscribers != 2 {
		t.Errorf("publish reached %d subscribers, want the 2 well-behaved ones", r.Subscribers)
	}
	for _, conn := range []*gorilla.Conn{chatty, bystander} {
		if got := readText(t, conn); got != "still here" {
			t.Errorf("got %q", got)
		}
	}
}

func TestMalformedFramesCloseOnlyTheirConnection(t *testing.T) {
	t.Parallel()
	masked := func(first byte, lengthBytes []byte, payload string) []byte {
		frame := append([]byte{first}, lengthBytes...)
		frame[1] |= 0x80                  // masked, as clients must
		frame = append(frame, 0, 0, 0, 0) // a zero mask leaves the payload as it is
		return append(frame, payload...)
	}
	tests := []struct {
		name       string
		whenSent   []byte
		expectCode int
	}{
		{"whenUnmasked", []byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}, 1002},
		{"whenUnknownOpcode", masked(0x83, []byte{0x02}, "hi"), 1002},
		{"whenLengthClaims2To63Bytes", masked(0x81, []byte{127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "x"), 1009},
		{"whenHTTPAfterTheUpgrade", []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 1002},
		{"whenTextIsNotUTF8", masked(0x81, []byte{0x02}, "\xff\xfe"), 1007},
		{"whenUTF8BreaksAcrossFragments", concat(masked(0x01, []byte{0x01}, "\xc3"), masked(0x80, []byte{0x01}, "(")), 1007},
		{"whenARuneIsSplitAcrossFragments_expectItAccepted",
			concat(masked(0x01, []byte{0x01}, "\xc3"), masked(0x80, []byte{0x01}, "\xa9"), masked(0x88, []byte{0x02}, "\x03\xe8")), 1000},
		{"whenContinuationStartsNothing", masked(0x80, []byte{0x01}, "x"), 1002},
		{"whenAMessageStartsInsideAnother", concat(masked(0x01, []byte{0x01}, "a"), masked(0x81, []byte{0x01}, "b")), 1002},
		{"whenReservedBitsAreSet", masked(0xC1, []byte{0x01}, "x"), 1002},
		{"whenAPingIsFragmented", masked(0x09, []byte{0x01}, "x"), 1002},
		// 8 MB in 2000 fragments of 4000 bytes, each under the 4096 limit.
		{"whenFragmentsAddUpPastTheLimit", fragmented(masked, 2000, 4000), 1009},
	}
	h := startHerald(t, "")
	bystander := readInBackground(dial(t, h.ws("/ws")), 16)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, reader := rawWebSocket(t, h)
			// In the background: the server stops reading once it has closed.
			go conn.Write(tc.whenSent)
			if code := readServerClose(t, reader); code != tc.expectCode {
				t.Errorf("server closed with %d, want %d", code, tc.expectCode)
			}
			msg := "unharmed by " + tc.name
			h.publish(t, msg)
			if got := bystander.next(t); got != msg {
				t.Errorf("bystander got %q", got)
			}
		})
	}
}

func concat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// fragmented is one binary message in count fragments of size bytes each.
func fragmented(masked func(byte, []byte, string) []byte, count, size int) []byte {
	length := []byte{126, byte(size >> 8), byte(size)}
	payload := strings.Repeat("x", size)
	frames := [][]byte{masked(0x02, length, payload)}
	for range count - 2 {
		frames = append(frames, masked(0x00, length, payload))
	}
	return concat(append(frames, masked(0x80, length, payload))...)
}

// rawWebSocket completes a WebSocket handshake over plain TCP, so a test
// can send bytes no real client would.
func rawWebSocket(t *testing.T, h *heraldProcess) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.Origin, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(hangGuard))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return conn, reader
}

// readServerClose reads the server's frames until its close frame and
// returns the close code, or -1 if the connection ended without one.
func readServerClose(t *testing.T, r *bufio.Reader) int {
	t.Helper()
	for {
		var header [2]byte
		if _, err := io.ReadFull(r, header[:]); err != nil {
			return -1
		}
		length := int(header[1] & 0x7f) // the server sends only short frames here
		payload := make([]byte, length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return -1
		}
		if header[0]&0x0f == 0x8 && length >= 2 {
			return int(payload[0])<<8 | int(payload[1])
		}
	}
}

func TestSilentPeerIsDroppedWhilePongingPeerStays(t *testing.T) {
	t.Parallel()
	// Pings come often, but a ponging peer has three seconds to answer, so
	// a busy test machine cannot make it look dead.
	h := startHerald(t, "websocket:\n  ping_interval: 20ms\n  pong_timeout: 3s\n")
	silent, healthy := dial(t, h.ws("/ws")), dial(t, h.ws("/ws"))
	pinged := make(chan struct{}, 1)
	silent.SetPingHandler(func(string) error { // read pings, answer none
		select {
		case pinged <- struct{}{}:
		default:
		}
		return nil
	})
	healthyReader := readInBackground(healthy, 1) // reading answers pings with pongs

	err := readUntilClosed(silent)
	select {
	case <-pinged:
	default:
		t.Error("the silent peer was never pinged")
	}
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent peer: %v, want its connection cut by the server", err)
	}
	// The healthy peer lived through the same silence.
	if r := h.publish(t, "alive"); r.Subscribers != 1 {
		t.Fatalf("publish reached %d subscribers, want only the ponging one", r.Subscribers)
	}
	if got := healthyReader.next(t); got != "alive" {
		t.Errorf("healthy peer got %q", got)
	}
}

func TestConfiguredPathsMoveEveryRoute(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "paths:\n  page: /watch\n  ws: /live\n  notify: /send\n  static: /assets\n")
	if !strings.HasSuffix(h.URL, "/watch") {
		t.Errorf("printed URL %q does not point at the page", h.URL)
	}
	sub := dial(t, h.ws("/live"))
	if r := h.publishTo(t, "/send", "moved"); r.Subscribers != 1 {
		t.Fatalf("publish reached %d subscribers", r.Subscribers)
	}
	if got := readText(t, sub); got != "moved" {
		t.Errorf("got %q", got)
	}
	for _, old := range []string{"/notify?msg=x", "/ws", "/static/app.js", "/"} {
		resp, err := http.Get(h.Origin + old)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("old path %s answered %d, want 404", old, resp.StatusCode)
		}
	}
	if _, _, err := gorilla.DefaultDialer.Dial(h.ws("/ws"), nil); err == nil {
		t.Error("the old WebSocket path still accepts connections")
	}
}

func TestBadConfigurationStopsStartUpWithOneLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		givenYAML   string
		givenEnv    map[string]string
		expectError string
	}{
		{"whenUnknownKey", "porr: 9000\n", nil, "porr: unknown key"},
		{"whenBadPort", "port: 99999\n", nil, "port: 99999 is not a port number"},
		{"whenPathWithoutSlash", "paths:\n  ws: ws\n", nil, `paths.ws: must start with "/"`},
		{"whenTwoRoutesOnOnePath", "paths:\n  page: /ws\n", nil, `paths.ws: "/ws" is already used by paths.page`},
		{"whenHERALDPORTIsNotAPort", "port: 0\n", map[string]string{"HERALD_PORT": "nine"}, `HERALD_PORT: "nine" is not a port number`},
		{"whenAnEnvSecretIsNotSet", "port: 0\nsecurity:\n  tokens:\n    - {name: ci, secret: env:HERALD_CI_TOKEN, write: [deploys]}\n", nil,
			"config.yaml:4: security.tokens[0].secret: the environment variable HERALD_CI_TOKEN is not set or empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := t.TempDir() + "/config.yaml"
			os.WriteFile(path, []byte(tc.givenYAML), 0o600)
			for _, args := range [][]string{{"-config", path}, {"check-config", path}} {
				err := run(t.Context(), args, func(k string) string { return tc.givenEnv[k] }, io.Discard, io.Discard)
				if err == nil || !strings.Contains(err.Error(), tc.expectError) || strings.Contains(err.Error(), "\n") {
					t.Errorf("herald %s = %v, want one line containing %q", args[0], err, tc.expectError)
				}
			}
		})
	}
	t.Run("whenPortIsTaken", func(t *testing.T) {
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		path := t.TempDir() + "/config.yaml"
		os.WriteFile(path, []byte(fmt.Sprintf("host: 127.0.0.1\nport: %d\n", taken.Addr().(*net.TCPAddr).Port)), 0o600)
		err = run(t.Context(), []string{"-config", path}, os.Getenv, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "another program has this port; set port in "+path+" or HERALD_PORT") {
			t.Errorf("run = %v, want a hint to change the port", err)
		}
	})
	t.Run("whenConfigFileNamedButMissing", func(t *testing.T) {
		err := run(t.Context(), []string{"-config", "/nonexistent/herald.yaml"}, os.Getenv, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/herald.yaml") {
			t.Errorf("run = %v, want an error naming the file", err)
		}
	})
	t.Run("whenUnknownFlag", func(t *testing.T) {
		var stderr strings.Builder
		err := run(t.Context(), []string{"-prot", "1"}, os.Getenv, io.Discard, &stderr)
		if !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), "flag provided but not defined: -prot") {
			t.Errorf("run = %v, stderr %q; want a usage error", err, stderr.String())
		}
	})
}

func TestHERALDPORTOverridesTheConfiguredPort(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	h := startHeraldEnv(t, "host: 127.0.0.1\nport: 0\n", map[string]string{"HERALD_PORT": fmt.Sprint(port)})
	if want := fmt.Sprintf("http://127.0.0.1:%d/", port); h.URL != want {
		t.Errorf("listening on %s, want %s", h.URL, want)
	}
}

func TestShippedConfigStatesEveryKeyWithItsDefault(t *testing.T) {
	t.Parallel()
	cfg, _, err := config.Load("config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, config.Default()) {
		t.Errorf("config.yaml differs from the built-in defaults:\n file %+v\n code %+v", cfg, config.Default())
	}
	data, _ := os.ReadFile("config.yaml")
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, key := range configKeys(reflect.TypeFor[config.Config](), "") {
		if !hasKey(doc.Content[0], strings.Split(key, ".")) {
			t.Errorf("config.yaml does not list %s", key)
		}
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, ":") && !strings.HasPrefix(strings.TrimSpace(line), "#") && !strings.Contains(line, "#") {
			t.Errorf("config.yaml line %d has no comment: %q", i+1, line)
		}
	}
}

// configKeys lists the dotted YAML keys of every leaf field of t.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		key := prefix + strings.Split(f.Tag.Get("yaml"), ",")[0]
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, configKeys(f.Type, key+".")...)
		} else {
			keys = append(keys, key)
		}
	}
	return keys
}

func hasKey(node *yaml.Node, path []string) bool {
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value == path[0] {
			return len(path) == 1 || hasKey(node.Content[i+1], path[1:])
		}
	}
	return false
}

// An idle subscriber has no goroutine reading its connection: one starts
// only when the subscriber sends something, and ends once it has read it.
// Not parallel, since it counts the goroutines of the whole process.
func TestIdleSubscribersHaveNoReaderGoroutine(t *testing.T) {
	h := startHerald(t, "")
	const subscribers = 20
	conns := make([]*gorilla.Conn, subscribers)
	for i := range conns {
		conns[i] = dial(t, h.ws("/ws"))
	}
	if r := h.publish(t, "hello"); r.Subscribers != subscribers {
		t.Fatalf("publish reached %d subscribers, want %d", r.Subscribers, subscribers)
	}
	for _, conn := range conns {
		if got := readText(t, conn); got != "hello" {
			t.Fatalf("got %q", got)
		}
	}
	if readers := goroutinesIn("herald/handlers/ws.(*Conn).discardFrames"); readers != 0 {
		t.Fatalf("%d goroutines are reading %d idle subscribers, want none", readers, subscribers)
	}
}

// goroutinesIn counts the goroutines with fn on their stack.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for stack := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(stack, []byte(fn+"(")) {
			count++
		}
	}
	return count
}

func TestClientPingsAreAnsweredLongAfterTheLastMessage(t *testing.T) {
	t.Parallel()
	// A short write timeout makes the deadline of the last message lapse
	// soon; Herald's own pings are far off. It is long enough that no write
	// of a healthy connection can miss it on a busy machine.
	h := startHerald(t, "websocket:\n  write_timeout: 250ms\n  ping_interval: 1h\n")
	conn := dial(t, h.ws("/ws"))
	pongs := make(chan string, 1)
	conn.SetPongHandler(func(data string) error { pongs <- data; return nil })
	reader := readInBackground(conn, 2) // reading is what delivers the pong

	h.publish(t, "one")
	if got := reader.next(t); got != "one" {
		t.Fatalf("got %q", got)
	}
	// The event under test is a deadline in the past, so here the clock
	// itself is what must pass: well beyond the 250ms write timeout.
	time.Sleep(400 * time.Millisecond)
	if err := conn.WriteControl(gorilla.PingMessage, []byte("are you there"), time.Now().Add(hangGuard)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-pongs:
		if got != "are you there" {
			t.Errorf("pong carried %q", got)
		}
	case err := <-reader.ended:
		t.Fatalf("connection closed instead of answering a ping: %v", err)
	}
	h.publish(t, "two")
	if got := reader.next(t); got != "two" {
		t.Errorf("got %q after the ping", got)
	}
}

// A client may send frames right behind its handshake, in the same packet;
// net/http reads them along with the request, and they must be answered
// at once, not when the idle timeout wakes the reader.
func TestFramesThatComeWithTheHandshakeAreReadAtOnce(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "websocket:\n  ping_interval: 1h\n")
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.Origin, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hangGuard))
	ping := []byte{0x89, 0x80 | 4, 0, 0, 0, 0, 'p', 'i', 'n', 'g'} // masked with a zero key
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n%s", ping)
	reader := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(reader, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	var pong [6]byte
	if _, err := io.ReadFull(reader, pong[:]); err != nil {
		t.Fatalf("no pong for the ping sent with the handshake: %v", err)
	}
	if pong[0] != 0x8A || string(pong[2:]) != "ping" {
		t.Errorf("got frame %x, want a pong carrying \"ping\"", pong)
	}
}
