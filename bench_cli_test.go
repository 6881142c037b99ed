package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"herald/app/config"
)

// runBench runs "herald bench" as a user would, against h, and returns its
// report as key=value pairs.
func runBench(t *testing.T, args ...string) map[string]string {
	t.Helper()
	report, err := runBenchErr(t, args...)
	if err != nil {
		t.Fatalf("herald bench %s: %v", strings.Join(args, " "), err)
	}
	return report
}

// runBenchErr runs "herald bench" and returns the report it printed, if
// any, and its error.
func runBenchErr(t *testing.T, args ...string) (map[string]string, error) {
	t.Helper()
	var stdout strings.Builder
	err := run(t.Context(), append([]string{"bench"}, args...), os.Getenv, &stdout, io.Discard)
	report := map[string]string{}
	if stdout.Len() == 0 {
		return report, err
	}
	for line := range strings.SplitSeq(strings.TrimSpace(stdout.String()), "\n") {
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("report line %q is not key=value", line)
		}
		report[key] = value
	}
	return report, err
}

func TestBenchCountsEveryDeliveryAgainstEveryMessage(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  publish_per_second: 0\n")
	report := runBench(t, "-ws", h.ws("/ws"), "-publish", h.Origin+"/notify",
		"-subscribers", "5", "-messages", "40", "-publishers", "3", "-pid", strconv.Itoa(os.Getpid()))
	for key, want := range map[string]string{
		"subscribers": "5", "messages": "40", "acknowledged": "40", "expected_deliveries": "200",
		"delivered": "200", "lost": "0", "duplicated": "0", "foreign_frames": "0", "publish_failures": "0", "read_errors": "0",
	} {
		if report[key] != want {
			t.Errorf("%s=%s, want %s", key, report[key], want)
		}
	}
	if cpu, _ := strconv.ParseFloat(report["server_cpu_seconds"], 64); report["server_rss_kib"] == "0" || cpu < 0 {
		t.Errorf("with -pid, server figures are cpu=%s rss=%s", report["server_cpu_seconds"], report["server_rss_kib"])
	}
}

// Subscribers of one topic, messages published to another: everything is
// lost, and the report must say so rather than report throughput.
func TestBenchReportsLoss(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  publish_per_second: 0\n")
	report := runBench(t, "-ws", h.ws("/ws?topic=listening"), "-publish", h.Origin+"/notify?topic=elsewhere",
		"-subscribers", "2", "-messages", "5", "-publishers", "1", "-wait", "200ms")
	if report["acknowledged"] != "5" || report["delivered"] != "0" || report["lost"] != "10" {
		t.Errorf("acknowledged=%s delivered=%s lost=%s, want 5, 0, 10", report["acknowledged"], report["delivered"], report["lost"])
	}
}

func TestBenchPrintsJSONAndRefusesBadFlags(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  publish_per_second: 0\n")
	var stdout strings.Builder
	err := run(t.Context(), []string{"bench", "-json", "-ws", h.ws("/ws"), "-publish", h.Origin + "/notify",
		"-subscribers", "1", "-messages", "3", "-publishers", "1"}, os.Getenv, &stdout, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var report struct {
		Delivered int `json:"delivered"`
		Lost      int `json:"lost"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &report); err != nil || report.Delivered != 3 || report.Lost != 0 {
		t.Errorf("JSON report %q (%v), want 3 delivered and none lost", stdout.String(), err)
	}
	for _, bad := range [][]string{{"-size", "10"}, {"-ws", "http://x/ws"}, {"-subscribers", "0"}, {"stray"}, {"-topics", "0"},
		{"-topics", "2", "-ws", "ws://127.0.0.1:9000/ws?topic=news"}} {
		err := run(t.Context(), append([]string{"bench"}, bad...), os.Getenv, io.Discard, io.Discard)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("herald bench %v: %v, want one line saying what is wrong", bad, err)
		}
	}
}

// Every benchmark client is on one address, so a server on the shipped
// config refuses a benchmark of any size. The refusal must say which of the
// server's settings to raise, from the server's own explanation.
func TestBenchNamesTheLimitThatRefusedIt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		givenLimits  string
		whenFlags    []string
		expectStatus string
		expectKeys   []string
	}{
		{"whenMoreSubscribersThanOneAddressMayOpen", "max_connections_per_ip: 3",
			[]string{"-subscribers", "5", "-messages", "1"}, "HTTP 429", []string{"limits.max_connections_per_ip"}},
		{"whenMoreSubscribersThanTheServerHolds", "max_connections: 3",
			[]string{"-subscribers", "5", "-messages", "1"}, "HTTP 503", []string{"limits.max_connections"}},
		{"whenPublishingFasterThanOneAddressMay", "publish_per_second: 0.01\n  publish_burst: 2",
			[]string{"-subscribers", "1", "-messages", "6", "-publishers", "1", "-wait", "1ms"}, "HTTP 429",
			[]string{"limits.publish_per_second", "limits.publish_burst"}},
		{"whenMoreTopicsThanTheServerHolds", "max_topics: 2",
			[]string{"-topics", "4", "-subscribers", "4", "-messages", "1"}, "HTTP 503", []string{"limits.max_topics"}},
		{"whenMessagesAreLargerThanTheServerTakes", "max_message_bytes: 100\n  publish_per_second: 0",
			[]string{"-subscribers", "1", "-messages", "2", "-size", "200", "-wait", "1ms"}, "HTTP 413",
			[]string{"limits.max_message_bytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := startHerald(t, "limits:\n  "+tc.givenLimits+"\n")
			_, err := runBenchErr(t, append([]string{"-ws", h.ws("/ws"), "-publish", h.Origin + "/notify"}, tc.whenFlags...)...)
			if err == nil {
				t.Fatal("herald bench succeeded against a server that refuses it")
			}
			message := err.Error()
			if strings.Contains(message, "\n") || !strings.Contains(message, tc.expectStatus) {
				t.Errorf("error %q: want one line with %s", message, tc.expectStatus)
			}
			for _, key := range tc.expectKeys {
				if !regexp.MustCompile(regexp.QuoteMeta(key) + `\b`).MatchString(message) {
					t.Errorf("error %q does not name %s", message, key)
				}
			}
		})
	}
}

// A publish the server refuses mid-run fails the run with the server's
// reason, after the report, which counts the failures.
func TestBenchFailsWithTheReasonWhenAPublishIsRefused(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  publish_per_second: 0.01\n  publish_burst: 2\n")
	report, err := runBenchErr(t, "-ws", h.ws("/ws"), "-publish", h.Origin+"/notify",
		"-subscribers", "1", "-messages", "6", "-publishers", "1", "-wait", "1ms")
	if err == nil {
		t.Fatal("herald bench succeeded though 4 of 6 publishes were refused")
	}
	for _, want := range []string{"4 of 6 publishes failed", "HTTP 429", "too many publishes from this address", "Retry-After: 100"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if report["acknowledged"] != "2" || report["publish_failures"] != "4" || !strings.Contains(report["first_publish_error"], "HTTP 429") {
		t.Errorf("report: acknowledged=%q publish_failures=%q first_publish_error=%q; want 2, 4 and the 429",
			report["acknowledged"], report["publish_failures"], report["first_publish_error"])
	}
}

// Without -pid there is no server to measure: its figures are left out,
// not printed as zeros.
func TestBenchWithoutPIDLeavesTheServerFiguresOut(t *testing.T) {
	t.Parallel()
	h := startHerald(t, unlimitedPublishing)
	args := []string{"-ws", h.ws("/ws"), "-publish", h.Origin + "/notify", "-subscribers", "1", "-messages", "2", "-publishers", "1"}
	report := runBench(t, args...)
	var stdout strings.Builder
	if err := run(t.Context(), append([]string{"bench", "-json"}, args...), os.Getenv, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	var asJSON map[string]any
	if err := json.Unmarshal([]byte(stdout.String()), &asJSON); err != nil {
		t.Fatal(err)
	}
	if report["delivered"] != "2" || asJSON["delivered"] != 2.0 {
		t.Fatalf("delivered %s and %v, want 2: the runs did not work", report["delivered"], asJSON["delivered"])
	}
	for name, keys := range map[string][]string{"key=value": slices.Collect(maps.Keys(report)), "JSON": slices.Collect(maps.Keys(asJSON))} {
		for _, key := range keys {
			if strings.HasPrefix(key, "server_") {
				t.Errorf("the %s report without -pid has %s", name, key)
			}
		}
	}
}

// The README's way to benchmark works as written: a server started from
// bench/herald.yaml, as the README starts it, takes the first example,
// whose numbers are past the shipped per-address limits; the other
// examples' numbers are within that config's limits.
func TestBenchREADMEExamplesRunAgainstTheBenchConfig(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(readme), "### `herald bench`\n")
	_, block, _ := strings.Cut(section, "```sh\n")
	block, _, _ = strings.Cut(block, "```")
	var serverArgs []string
	var examples [][]string
	for line := range strings.SplitSeq(strings.ReplaceAll(block, "\\\n", " "), "\n") {
		line, _, _ = strings.Cut(line, "#")
		line = strings.ReplaceAll(line, `"$(pgrep -x herald)"`, strconv.Itoa(os.Getpid()))
		switch fields := strings.Fields(line); {
		case len(fields) >= 2 && fields[0] == "herald" && fields[1] == "bench":
			examples = append(examples, fields[2:])
		case len(fields) >= 1 && fields[0] == "herald":
			serverArgs = fields[1:]
		}
	}
	if len(serverArgs) != 2 || serverArgs[0] != "-config" || len(examples) < 2 {
		t.Fatalf("the README's bench block starts the server with %q and has %d examples; want herald -config FILE and examples", serverArgs, len(examples))
	}
	configPath := serverArgs[1]
	configYAML, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HERALD_PORT": "0"}
	getenv := func(k string) string { return env[k] }
	cfg, _, err := loadConfig(configPath, true, getenv)
	if err != nil {
		t.Fatalf("herald -config %s with HERALD_PORT=0: %v", configPath, err)
	}
	h := startHeraldEnv(t, string(configYAML), env)

	first := strings.Fields(strings.ReplaceAll(strings.Join(examples[0], " "), "localhost:9000", strings.TrimPrefix(h.Origin, "http://")))
	report := runBench(t, first...)
	if report["publish_failures"] != "0" || report["lost"] != "0" || report["read_errors"] != "0" || report["acknowledged"] != report["messages"] {
		t.Errorf("the README's first example: publish_failures=%s lost=%s read_errors=%s acknowledged=%s of %s",
			report["publish_failures"], report["lost"], report["read_errors"], report["acknowledged"], report["messages"])
	}
	if subscribers, _ := strconv.Atoi(report["subscribers"]); subscribers <= config.Default().Limits.MaxConnectionsPerIP {
		t.Errorf("the README's first example has %d subscribers, within the shipped limits: it does not show that %s is needed", subscribers, configPath)
	}

	if cfg.Limits.PublishPerSecond != 0 {
		t.Errorf("%s limits publishing to %v a second; the examples publish from one address", configPath, cfg.Limits.PublishPerSecond)
	}
	for _, example := range examples[1:] {
		for i := 0; i+1 < len(example); i++ {
			n, err := strconv.Atoi(example[i+1])
			if err != nil {
				continue
			}
			switch example[i] {
			case "-subscribers":
				if n > cfg.Limits.MaxConnectionsPerIP || n > cfg.Limits.MaxConnections {
					t.Errorf("README: herald bench %s: %d subscribers, past %s's limits", strings.Join(example, " "), n, configPath)
				}
			case "-topics":
				if n > cfg.Limits.MaxTopics {
					t.Errorf("README: herald bench %s: %d topics, past %s's limit", strings.Join(example, " "), n, configPath)
				}
			}
		}
	}
}

// With -topics, subscriber i watches topic i mod N and message k goes to
// topic k mod N, named PREFIX0 to PREFIX(N-1); each subscriber is counted
// against its topic's messages alone.
func TestBenchSpreadsSubscribersAndMessagesOverTopics(t *testing.T) {
	t.Parallel()
	h := startHerald(t, unlimitedPublishing)
	watcher := readInBackground(dial(t, h.ws("/ws?topic=spread-2")), 64)
	report := runBench(t, "-ws", h.ws("/ws"), "-publish", h.Origin+"/notify", "-topics", "4", "-topic-prefix", "spread-",
		"-subscribers", "8", "-messages", "42", "-publishers", "4")
	// Topics 0 and 1 get 11 of the 42 messages, topics 2 and 3 get 10;
	// each topic has two subscribers.
	for key, want := range map[string]string{
		"topics": "4", "acknowledged": "42", "expected_deliveries": "84", "delivered": "84",
		"lost": "0", "duplicated": "0", "foreign_frames": "0", "read_errors": "0",
	} {
		if report[key] != want {
			t.Errorf("%s=%s, want %s", key, report[key], want)
		}
	}
	// The topic's own subscriber got messages 2, 6, ..., 38 in some order,
	// and nothing else before the marker published after the run.
	seen := map[int]bool{}
	for range 10 {
		frame := watcher.next(t)
		seq, err := strconv.Atoi(strings.Fields(frame)[0])
		if err != nil || seq%4 != 2 || seen[seq] {
			t.Fatalf("topic spread-2 got %q, want each of messages 2, 6, ..., 38 once", frame)
		}
		seen[seq] = true
	}
	resp, err := http.Get(h.Origin + "/notify?topic=spread-2&msg=marker")
	if err != nil {
		t.Fatal(err)
	}
	decodeReceipt(t, resp)
	if frame := watcher.next(t); frame != "marker" {
		t.Errorf("topic spread-2 got %q after its 10 messages, want only the marker", frame)
	}
}

// A subscriber cut after some of its topic's messages is counted as losing
// the rest of that topic's messages, and no others.
func TestBenchCountsTheLossOfASubscriberOfOneTopic(t *testing.T) {
	t.Parallel()
	h := startHerald(t, unlimitedPublishing)
	const passed = 4
	relay := cuttingRelay(t, strings.TrimPrefix(h.Origin, "http://"), passed)
	// Subscribers take the URLs in turn, so subscriber 0, on topic 0, is
	// the one through the relay.
	direct := h.ws("/ws")
	report, err := runBenchErr(t, "-ws", strings.Join([]string{relay, direct, direct, direct}, ","), "-publish", h.Origin+"/notify",
		"-topics", "4", "-subscribers", "4", "-messages", "42", "-publishers", "4")
	if err != nil {
		t.Fatal(err)
	}
	// Topic 0 has messages 0, 4, ..., 40: 11, of which the relay passed 4.
	for key, want := range map[string]string{
		"expected_deliveries": "42", "delivered": strconv.Itoa(42 - 11 + passed), "lost": strconv.Itoa(11 - passed),
		"duplicated": "0", "foreign_frames": "0", "read_errors": "1",
	} {
		if report[key] != want {
			t.Errorf("%s=%s, want %s", key, report[key], want)
		}
	}
}

// cuttingRelay relays one WebSocket connection to the server at hostPort
// and cuts it once that many of the server's frames have gone through. It returns the
// relay's ws:// URL.
func cuttingRelay(t *testing.T, hostPort string, frames int) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { listener.Close(); <-done })
	go func() {
		defer close(done)
		client, err := listener.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) { // closed unused, when the test failed before
				t.Error(err)
			}
			return
		}
		server, err := net.Dial("tcp", hostPort)
		if err != nil {
			client.Close()
			t.Error(err)
			return
		}
		var upstream sync.WaitGroup
		defer upstream.Wait()
		defer client.Close() // the cut, which also ends the upstream copy
		defer server.Close()
		upstream.Go(func() { io.Copy(server, client) }) // the handshake, then pongs, until the cut
		fromServer := bufio.NewReader(server)
		head, err := readHTTPHead(fromServer)
		if err != nil {
			t.Error(err)
			return
		}
		client.Write(head)
		for range frames {
			// Herald's frames to a client are unmasked, and these short.
			header := make([]byte, 2)
			if _, err := io.ReadFull(fromServer, header); err != nil || header[1] > 125 {
				t.Errorf("relay: frame header % x, %v", header, err)
				return
			}
			frame := append(header, make([]byte, header[1])...)
			if _, err := io.ReadFull(fromServer, frame[2:]); err != nil {
				t.Error(err)
				return
			}
			client.Write(frame)
		}
	}()
	return "ws://" + listener.Addr().String() + "/ws"
}

// readHTTPHead reads a response's status line and headers, through the
// blank line.
func readHTTPHead(r *bufio.Reader) ([]byte, error) {
	var head []byte
	for {
		line, err := r.ReadBytes('\n')
		head = append(head, line...)
		if err != nil || string(line) == "\r\n" {
			return head, err
		}
	}
}
