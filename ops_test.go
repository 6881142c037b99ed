package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"

	"herald/app/config"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: body is not JSON: %v", url, err)
	}
	return resp.StatusCode
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "history:\n  file: "+filepath.Join(t.TempDir(), "h.db")+"\n")
	var live, ready map[string]string
	if code := getJSON(t, h.Origin+"/healthz", &live); code != 200 || live["status"] != "ok" {
		t.Errorf("healthz: %d %v", code, live)
	}
	if code := getJSON(t, h.Origin+"/readyz", &ready); code != 200 || ready["status"] != "ready" || ready["history"] != "file" {
		t.Errorf("readyz: %d %v", code, ready)
	}
}

// scrape reads /metrics as Prometheus would.
func scrape(t *testing.T, h *heraldProcess) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(h.Origin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics are not Prometheus text: %v", err)
	}
	return families
}

func TestMetricsCountConnectionsMessagesAndLatency(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	ws := dial(t, h.ws("/ws"))
	sse := openEvents(t, h.Origin+"/events?topic=news", "")
	h.publish(t, "one")
	h.publish(t, "two")
	h.publishToTopic(t, "news", "three")
	h.publishToTopic(t, "news", "four")
	// Each writer observes a message's latency before it writes the next,
	// so once the second has arrived the first has been measured.
	readText(t, ws)
	readText(t, ws)
	sse.next(t)
	sse.next(t)

	families := scrape(t, h)
	value := func(name string, labels ...string) float64 {
		t.Helper()
		family, ok := families[name]
		if !ok {
			t.Fatalf("no metric %s", name)
		}
	metrics:
		for _, m := range family.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		t.Fatalf("no %s with labels %v", name, labels)
		return 0
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"herald_connections", []string{"transport", "websocket"}, 1},
		{"herald_connections", []string{"transport", "sse"}, 1},
		{"herald_subscribers", nil, 2},
		{"herald_topic_subscribers", []string{"topic", "default"}, 1},
		{"herald_topic_subscribers", []string{"topic", "news"}, 1},
		{"herald_messages_published_total", nil, 4},
		{"herald_messages_delivered_total", nil, 4},
		{"herald_messages_dropped_total", nil, 0},
		{"herald_slow_subscriber_disconnects_total", nil, 0},
		{"herald_broker_errors_total", nil, 0},
	} {
		if got := value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := value("herald_delivery_latency_seconds"); got < 2 {
		t.Errorf("delivery latency has %v samples, want at least 2", got)
	}
	if _, ok := families["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

// lockedBuffer collects a server's log lines from its goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestJSONLogsWithoutQueryStrings(t *testing.T) {
	t.Parallel()
	configPath := filepath.Join(t.TempDir(), "config.yaml")
	config := "host: 127.0.0.1\nport: 0\nlog:\n  format: json\n  level: info\n"
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stdoutReader, stdout := io.Pipe()
	var stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"-config", configPath}, func(string) string { return "" }, stdout, &stderr)
		stdout.CloseWithError(err)
		done <- err
	}()
	line, err := bufio.NewReader(stdoutReader).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stdoutReader)
	origin := strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(line, "Herald is listening on ")), "/")
	resp, err := http.Get(origin + "/notify?msg=secret&token=hunter2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(origin + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	logs := stderr.String()
	if strings.Contains(logs, "secret") || strings.Contains(logs, "hunter2") {
		t.Errorf("the log holds a query string:\n%s", logs)
	}
	requests := 0
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if entry["level"] == "DEBUG" {
			t.Errorf("level info logged %v", entry)
		}
		if entry["msg"] == "request" && entry["path"] == "/notify" && entry["status"] == 200.0 {
			requests++
		}
	}
	if requests != 1 {
		t.Errorf("the publish was logged %d times, want once:\n%s", requests, logs)
	}
}

func TestVersionAndCheckConfig(t *testing.T) {
	t.Parallel()
	var stdout strings.Builder
	if err := run(t.Context(), []string{"-version"}, os.Getenv, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(stdout.String()); !strings.HasPrefix(v, "herald ") || !strings.HasSuffix(v, runtime.Version()) {
		t.Errorf("-version printed %q", v)
	}

	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("history:\n  ttl: 2h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	env := func(k string) string { return map[string]string{"HERALD_PORT": "9443"}[k] }
	if err := run(t.Context(), []string{"check-config", path}, env, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	printed, err := config.Parse("printed", []byte(stdout.String()))
	if err != nil {
		t.Fatalf("check-config printed what does not parse: %v\n%s", err, stdout.String())
	}
	want := config.Default()
	want.History.TTL = 2 * 3600e9
	want.Port = 9443
	if !reflect.DeepEqual(printed, want) {
		t.Errorf("check-config printed %+v, want the file and the environment over the defaults", printed)
	}

	if err := os.WriteFile(path, []byte("log:\n  level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = run(t.Context(), []string{"check-config", path}, os.Getenv, io.Discard, io.Discard)
	if err == nil || err.Error() != path+`:2: log.level: "loud" is not a level: use debug, info, warn or error` {
		t.Errorf("check-config of a bad file: %v", err)
	}
}

// TestCheckConfigSaysHowHeraldReachesRedis: with broker: redis,
// check-config says which mode the config chooses, and when a publish is
// acknowledged in it; Sentinel's passwords are read, never printed.
func TestCheckConfigSaysHowHeraldReachesRedis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, givenYAML, expectLine string
	}{
		{"givenAURL", "broker: redis\nredis:\n  url: redis://10.0.0.5:6380/0\n",
			"# Redis mode: single, redis at 10.0.0.5:6380; a publish is acknowledged once Redis holds it."},
		{"givenSentinels", "broker: redis\nredis:\n  addrs: [10.0.0.5:26379, 10.0.0.6:26379]\n  master_name: mymaster\n  sentinel_password: env:SENTINEL_PASSWORD\n",
			`# Redis mode: sentinel, redis master "mymaster" (Sentinels at 10.0.0.5:26379, 10.0.0.6:26379); a publish is acknowledged once the master and 1 of its replicas hold it (redis.min_replicas).`},
		{"givenSentinelsAndNoReplicaToWaitFor", "broker: redis\nredis:\n  addrs: [10.0.0.5:26379]\n  master_name: mymaster\n  min_replicas: 0\n",
			`# Redis mode: sentinel, redis master "mymaster" (Sentinels at 10.0.0.5:26379); a publish is acknowledged once the master holds it (redis.min_replicas: 0): a failover can lose the last ones.`},
		{"givenClusterNodes", "broker: redis\nredis:\n  addrs: [10.0.0.1:7000, 10.0.0.2:7000]\n",
			"# Redis mode: cluster, redis cluster (nodes at 10.0.0.1:7000, 10.0.0.2:7000); each topic's keys share a slot; a publish is acknowledged once the topic's master holds it (redis.min_replicas is for Sentinel)."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(tc.givenYAML), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout strings.Builder
			env := func(k string) string { return map[string]string{"SENTINEL_PASSWORD": "s3ntinel"}[k] }
			if err := run(t.Context(), []string{"check-config", path}, env, &stdout, io.Discard); err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(strings.Split(stdout.String(), "\n"), tc.expectLine) {
				t.Errorf("check-config does not say %q:\n%s", tc.expectLine, stdout.String())
			}
			if strings.Contains(stdout.String(), "s3ntinel") {
				t.Errorf("check-config printed the Sentinel password:\n%s", stdout.String())
			}
		})
	}
}

func TestVersionLineSaysSomethingUsefulWithOrWithoutACommit(t *testing.T) {
	t.Parallel()
	withCommit := []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-11-25T10:00:00Z"}}
	tests := []struct {
		name        string
		givenLinked string
		givenMain   string
		givenVCS    []debug.BuildSetting
		expectLine  string
	}{
		{"givenGoRun", "", "(devel)", nil,
			"herald development build, no commit recorded (go run and -buildvcs=false record none: build with go build -buildvcs=true in a git checkout), go1.99"},
		{"givenGoBuildInACheckout", "", "v0.0.0-20261125-abc123", withCommit,
			"herald v0.0.0-20261125-abc123, commit abc123 of 2026-11-25T10:00:00Z, go1.99"},
		{"givenAReleaseVersionLinkedIn", "v1.2.3", "(devel)", withCommit,
			"herald v1.2.3, commit abc123 of 2026-11-25T10:00:00Z, go1.99"},
		{"givenUncommittedChanges", "", "(devel)", append(withCommit[:1:1], debug.BuildSetting{Key: "vcs.modified", Value: "true"}),
			"herald development build, commit abc123 with uncommitted changes, go1.99"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: tc.givenMain}, Settings: tc.givenVCS}
			if got := describeBuild(tc.givenLinked, info, true); got != tc.expectLine {
				t.Errorf("got  %q\nwant %q", got, tc.expectLine)
			}
		})
	}
}

func TestCheckConfigWithoutAFileSaysItUsesTheDefaults(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "config.yaml")
	var stdout strings.Builder
	// The default path, not given on the command line: a missing file means defaults.
	if err := checkConfig(missing, false, func(string) string { return "" }, &stdout); err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(stdout.String(), "\n")
	if want := "# No config file at " + missing + ": Herald runs on its built-in defaults"; !strings.HasPrefix(first, want) {
		t.Errorf("check-config without a file began %q, want %q", first, want)
	}
	if strings.Contains(stdout.String(), "# built-in defaults is valid") {
		t.Error("check-config still says \"built-in defaults is valid\"")
	}
}

// config.yaml and the README must say the same true thing about readiness.
func TestReadyzIsDescribedAlikeInConfigAndReadme(t *testing.T) {
	t.Parallel()
	const truth = "503 once shutdown has begun or while the history file or Redis does not answer"
	for _, file := range []string{"config.yaml", "README.md"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), truth) {
			t.Errorf("%s does not say %q", file, truth)
		}
		if strings.Contains(string(data), "while starting") {
			t.Errorf("%s says readyz fails while starting: Herald listens only once it is ready", file)
		}
	}
}

// The README once said, under "Not yet", that Herald accepts WebSockets from
// any origin and lets anyone publish, while its Security section said the
// opposite, which is true.
func TestReadmeDoesNotContradictItsSecuritySection(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, claim := range []string{"accepts WebSocket connections from any origin", "lets anyone who\ncan reach it publish", "lets anyone who can reach it publish"} {
		if strings.Contains(string(data), claim) {
			t.Errorf("README claims %q", claim)
		}
	}
}

func TestProfilesAreServedOnlyWhenTurnedOn(t *testing.T) {
	t.Parallel()
	off := startHerald(t, "")
	resp, err := http.Get(off.Origin + "/debug/pprof/heap")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("profiles with debug.pprof off: %d, want 404", resp.StatusCode)
	}
	on := startHerald(t, "debug:\n  pprof: true\n")
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1", "/debug/pprof/profile?seconds=1"} {
		resp, err := http.Get(on.Origin + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s: %d with %d bytes, want a profile", path, resp.StatusCode, len(body))
		}
	}
}

func TestAdminTokenGuardsMetricsAndProfiles(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "security:\n  admin_token: 0p3rator\ndebug:\n  pprof: true\n")
	for _, path := range []string{"/metrics", "/debug/pprof/heap?debug=1"} {
		for _, tc := range []struct {
			name         string
			givenToken   string
			expectStatus int
		}{
			{"givenNoToken", "", http.StatusUnauthorized},
			{"givenAWrongToken", "guess", http.StatusUnauthorized},
			{"givenTheAdminToken", "0p3rator", http.StatusOK},
		} {
			req, err := http.NewRequest(http.MethodGet, h.Origin+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.givenToken != "" {
				req.Header.Set("Authorization", "Bearer "+tc.givenToken)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.expectStatus {
				t.Errorf("%s %s: %d, want %d", path, tc.name, resp.StatusCode, tc.expectStatus)
			}
			if strings.Contains(string(body), "0p3rator") {
				t.Errorf("%s %s: the response shows the admin token", path, tc.name)
			}
		}
	}
	// The publish and subscribe routes do not ask for it.
	if r := h.publish(t, "no admin needed"); r.Subscribers != 0 {
		t.Errorf("publish: %+v", r)
	}
}
