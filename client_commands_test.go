package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// lineLog is what a command writes to stdout or stderr, which a test can
// wait on line by line.
type lineLog struct {
	mu      sync.Mutex
	text    strings.Builder
	ended   bool          // the command has returned: nothing more comes
	changed chan struct{} // has a value when text or ended changed since the last wait
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{}, 1)} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.text.Write(p)
	l.mu.Unlock()
	l.signal()
	return len(p), nil
}

// end says that the command returned, so that a wait for more fails at
// once.
func (l *lineLog) end() {
	l.mu.Lock()
	l.ended = true
	l.mu.Unlock()
	l.signal()
}

func (l *lineLog) signal() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// lines is every complete line so far.
func (l *lineLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	text := l.text.String()
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		return strings.Split(text[:i], "\n")
	}
	return nil
}

// await waits until there are at least n complete lines and returns them.
func (l *lineLog) await(t testing.TB, n int) []string {
	t.Helper()
	return l.awaitThat(t, fmt.Sprintf("%d lines", n), func(lines []string) bool { return len(lines) >= n })
}

// awaitLine waits for a line that contains part and returns it.
func (l *lineLog) awaitLine(t testing.TB, part string) string {
	t.Helper()
	lines := l.awaitThat(t, fmt.Sprintf("a line with %q", part), func(lines []string) bool {
		return slices.ContainsFunc(lines, func(line string) bool { return strings.Contains(line, part) })
	})
	return lines[slices.IndexFunc(lines, func(line string) bool { return strings.Contains(line, part) })]
}

func (l *lineLog) awaitThat(t testing.TB, what string, done func([]string) bool) []string {
	t.Helper()
	deadline := time.After(hangGuard)
	for {
		l.mu.Lock()
		ended := l.ended
		l.mu.Unlock()
		if lines := l.lines(); done(lines) {
			return lines
		} else if ended {
			t.Fatalf("waited for %s, but herald returned; it printed %q", what, lines)
		}
		select {
		case <-l.changed:
		case <-deadline:
			t.Fatalf("waited for %s; got %q", what, l.lines())
		}
	}
}

// cliRun is one herald sub or herald pub, run in-process as main runs it.
type cliRun struct {
	stdout, stderr *lineLog
	stop           context.CancelFunc
	done           chan error
	result         error
	finished       bool
}

// startCommand runs herald with args (such as "sub", URL) until the test
// ends or stop is called; env is its environment.
func startCommand(t *testing.T, env map[string]string, args ...string) *cliRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &cliRun{stdout: newLineLog(), stderr: newLineLog(), stop: cancel, done: make(chan error, 1)}
	go func() {
		err := run(ctx, args, func(k string) string { return env[k] }, r.stdout, r.stderr)
		r.stdout.end()
		r.stderr.end()
		r.done <- err
	}()
	t.Cleanup(func() { r.interrupt(t) })
	return r
}

// interrupt stops the command as Ctrl-C does and returns run's error.
func (r *cliRun) interrupt(t testing.TB) error {
	t.Helper()
	r.stop()
	return r.wait(t)
}

// wait returns run's error once the command has ended by itself.
func (r *cliRun) wait(t testing.TB) error {
	t.Helper()
	if r.finished {
		return r.result
	}
	select {
	case r.result = <-r.done:
		r.finished = true
		return r.result
	case <-time.After(hangGuard):
		t.Fatalf("herald did not end; stdout %q, stderr %q", r.stdout.lines(), r.stderr.lines())
		return nil
	}
}

// runCommand runs herald with args to its end and returns what it printed
// and its error.
func runCommand(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	r := startCommand(t, env, args...)
	err = r.wait(t)
	return strings.Join(r.stdout.lines(), "\n"), strings.Join(r.stderr.lines(), "\n"), err
}

// watchPresence opens a JSON WebSocket subscriber of topic that is told
// the topic's subscriber count, so that a test can see a subscriber come.
func watchPresence(t *testing.T, h *heraldProcess, topic string) *gorilla.Conn {
	t.Helper()
	return dial(t, h.ws("/ws?format=json&presence=1&topic="+topic))
}

// awaitSubscribers reads the watcher's frames until one says the topic
// has n subscribers, the watcher included.
func awaitSubscribers(t *testing.T, watcher *gorilla.Conn, n int) {
	t.Helper()
	for {
		if f := readJSONFrame(t, watcher); f.Type == "presence" && f.Subscribers == n {
			return
		}
	}
}

func TestSubPrintsEachMessageOfItsTopicOnItsOwnLine(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	watcher := watchPresence(t, h, "news")
	awaitSubscribers(t, watcher, 1)
	sub := startCommand(t, nil, "sub", "-topic", "news", h.Origin)
	awaitSubscribers(t, watcher, 2)

	h.publishToTopic(t, "news", "first")
	h.publishToTopic(t, "news", "two\nlines")
	h.publishToTopic(t, "other", "elsewhere")
	h.publishToTopic(t, "news", "third")
	want := []string{"first", "two", "lines", "third"}
	if got := sub.stdout.await(t, len(want)); !slices.Equal(got, want) {
		t.Errorf("herald sub printed %q, want %q", got, want)
	}
	if err := sub.interrupt(t); err != nil {
		t.Errorf("Ctrl-C: herald sub returned %v, want nil (exit status 0)", err)
	}
	if lines := sub.stderr.lines(); len(lines) != 0 {
		t.Errorf("stderr %q, want nothing", lines)
	}
}

// TestSubJSONPrintsEnvelopesFromAWebSocketURL: -json prints the server's
// object for each message, one a line, with the text exact; a /ws URL is
// read through the event stream beside it.
func TestSubJSONPrintsEnvelopesFromAWebSocketURL(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	watcher := watchPresence(t, h, "news")
	awaitSubscribers(t, watcher, 1)
	sub := startCommand(t, nil, "sub", "-json", h.ws("/ws?topic=news"))
	awaitSubscribers(t, watcher, 2)

	texts := []string{"plain", "crlf\r\nand\ttab", `"quoted" <b>`}
	var receipts []receiptReply
	for _, text := range texts {
		receipts = append(receipts, h.publishToTopic(t, "news", text))
	}
	for i, line := range sub.stdout.await(t, len(texts)) {
		var got map[string]string
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %q is not a JSON object: %v", line, err)
		}
		if len(got) != 4 || got["id"] != receipts[i].ID || got["topic"] != "news" || got["msg"] != texts[i] {
			t.Errorf("line %d is %q, want exactly id %s, topic news, time and msg %q", i, line, receipts[i].ID, texts[i])
		}
		if _, err := time.Parse(time.RFC3339Nano, got["time"]); err != nil {
			t.Errorf("time %q: %v", got["time"], err)
		}
	}
}

func TestSubSinceReplaysHistoryThenGoesLive(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	first := h.publish(t, "m1")
	h.publish(t, "m2")

	all := startCommand(t, nil, "sub", "-since", "all", h.Origin)
	after := startCommand(t, nil, "sub", "-since", first.ID, h.Origin)
	// An id this server never gave out, as from another server's history:
	// everything kept is new to the client.
	foreign := startCommand(t, nil, "sub", "-since", "18446744073709551615", h.Origin)
	if got := foreign.stdout.await(t, 2); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Errorf("-since a foreign id printed %q, want the history m1 m2", got)
	}
	if line := foreign.stderr.awaitLine(t, "lost"); !strings.Contains(line, "an unknown number of messages") {
		t.Errorf("-since a foreign id: stderr %q, want an unknown number lost", line)
	}
	if got := all.stdout.await(t, 2); !slices.Equal(got, []string{"m1", "m2"}) {
		t.Errorf("-since all printed %q, want the history m1 m2", got)
	}
	if got := after.stdout.await(t, 1); !slices.Equal(got, []string{"m2"}) {
		t.Errorf("-since %s printed %q, want m2", first.ID, got)
	}
	h.publish(t, "m3")
	if got := all.stdout.await(t, 3); !slices.Equal(got, []string{"m1", "m2", "m3"}) {
		t.Errorf("-since all printed %q, want m1 m2 m3", got)
	}
	if got := after.stdout.await(t, 2); !slices.Equal(got, []string{"m2", "m3"}) {
		t.Errorf("-since %s printed %q, want m2 m3", first.ID, got)
	}
}

// TestSubResumesAcrossARestartWithAHistoryFile: the server stops, runs
// elsewhere on the same history file and takes messages while herald sub
// cannot reach it, then comes back where herald sub looks: it prints every
// message once, in order.
func TestSubResumesAcrossARestartWithAHistoryFile(t *testing.T) {
	t.Parallel()
	history := fmt.Sprintf("history:\n  file: %s\n", filepath.Join(t.TempDir(), "history.db"))
	config := fmt.Sprintf("host: 127.0.0.1\nport: %d\n%s", freePort(t), history)
	first := startHeraldEnv(t, config, nil)
	sub := startCommand(t, nil, "sub", "-since", "all", first.Origin)
	first.publish(t, "a")
	first.publish(t, "b")
	sub.stdout.await(t, 2)
	if err := first.Stop(t); err != nil {
		t.Fatal(err)
	}
	sub.stderr.awaitLine(t, "trying again")

	elsewhere := startHerald(t, history)
	elsewhere.publish(t, "c")
	elsewhere.publish(t, "d")
	if err := elsewhere.Stop(t); err != nil {
		t.Fatal(err)
	}
	back := startHeraldEnv(t, config, nil)
	back.publish(t, "e")
	back.publish(t, "end")
	want := []string{"a", "b", "c", "d", "e", "end"}
	if got := sub.stdout.await(t, len(want)); !slices.Equal(got, want) {
		t.Errorf("across a restart herald sub printed %q, want %q", got, want)
	}
	if line := sub.stderr.awaitLine(t, "connected again"); !strings.Contains(line, "resuming after id") {
		t.Errorf("on reconnecting herald sub said %q, want where it resumes", line)
	}
	if lost := slices.ContainsFunc(sub.stderr.lines(), func(l string) bool { return strings.Contains(l, "lost") }); lost {
		t.Errorf("stderr %q says something was lost", sub.stderr.lines())
	}
}

// TestSubSaysWhatARestartLost: herald sub resumes after a restart that
// kept too little, or no history, and says on stderr what was lost.
func TestSubSaysWhatARestartLost(t *testing.T) {
	t.Parallel()
	t.Run("without a history file", func(t *testing.T) {
		t.Parallel()
		config := fmt.Sprintf("host: 127.0.0.1\nport: %d\n", freePort(t))
		first := startHeraldEnv(t, config, nil)
		sub := startCommand(t, nil, "sub", "-since", "all", first.Origin)
		a := first.publish(t, "a")
		sub.stdout.await(t, 1)
		first.Stop(t)

		back := startHeraldEnv(t, config, nil)
		line := sub.stderr.awaitLine(t, "lost")
		if want := "herald sub: lost: an unknown number of messages after id " + a.ID; !strings.HasPrefix(line, want) {
			t.Errorf("stderr said %q, want %q", line, want)
		}
		back.publish(t, "b")
		if got := sub.stdout.await(t, 2); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("printed %q, want a b", got)
		}
	})
	t.Run("before the first message", func(t *testing.T) {
		t.Parallel()
		// The stream says where it starts before any message comes, so
		// herald sub resumes from there: what was published while it was
		// away is printed, though it had printed nothing yet.
		history := fmt.Sprintf("history:\n  file: %s\n", filepath.Join(t.TempDir(), "history.db"))
		config := fmt.Sprintf("host: 127.0.0.1\nport: %d\n%s", freePort(t), history)
		first := startHeraldEnv(t, config, nil)
		watcher := watchPresence(t, first, "default")
		awaitSubscribers(t, watcher, 1)
		sub := startCommand(t, nil, "sub", first.Origin)
		awaitSubscribers(t, watcher, 2)
		first.Stop(t)
		elsewhere := startHerald(t, history)
		elsewhere.publish(t, "while away")
		elsewhere.Stop(t)

		back := startHeraldEnv(t, config, nil)
		if line := sub.stderr.awaitLine(t, "connected again"); !strings.Contains(line, "resuming after id") {
			t.Errorf("stderr said %q, want where it resumes", line)
		}
		back.publish(t, "after")
		if got := sub.stdout.await(t, 2); !slices.Equal(got, []string{"while away", "after"}) {
			t.Errorf("printed %q, want what came while away, then after", got)
		}
	})
	t.Run("with too little history", func(t *testing.T) {
		t.Parallel()
		history := fmt.Sprintf("history:\n  size: 2\n  file: %s\n", filepath.Join(t.TempDir(), "history.db"))
		config := fmt.Sprintf("host: 127.0.0.1\nport: %d\n%s", freePort(t), history)
		first := startHeraldEnv(t, config, nil)
		sub := startCommand(t, nil, "sub", "-since", "all", first.Origin)
		a := first.publish(t, "a")
		sub.stdout.await(t, 1)
		first.Stop(t)
		elsewhere := startHerald(t, history)
		for _, m := range []string{"b", "c", "d"} {
			elsewhere.publish(t, m)
		}
		elsewhere.Stop(t)

		startHeraldEnv(t, config, nil)
		line := sub.stderr.awaitLine(t, "lost")
		if want := "herald sub: lost: 1 message after id " + a.ID; !strings.HasPrefix(line, want) {
			t.Errorf("stderr said %q, want %q", line, want)
		}
		if got := sub.stdout.await(t, 3); !slices.Equal(got, []string{"a", "c", "d"}) {
			t.Errorf("printed %q, want a, then what history kept: c d", got)
		}
	})
}

// TestSubExecRunsACommandPerMessage: each message's text reaches the
// command's stdin exactly, with its topic, id and time in the
// environment; a command that fails is reported and the next runs.
func TestSubExecRunsACommandPerMessage(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	dir := t.TempDir()
	command := fmt.Sprintf(`out='%s'
cat > "$out/$HERALD_ID.txt"
if grep -qx fail "$out/$HERALD_ID.txt"; then exit 3; fi
echo "ran $HERALD_ID $HERALD_TOPIC $HERALD_TIME"`, dir)
	texts := []string{"one", "fail", "two\r\nlines\n"}
	var receipts []receiptReply
	for _, text := range texts {
		receipts = append(receipts, h.publishToTopic(t, "jobs", text))
	}
	sub := startCommand(t, nil, "sub", "-topic", "jobs", "-since", "all", "-exec", command, h.Origin)

	lines := sub.stdout.await(t, 2)
	for i, r := range []receiptReply{receipts[0], receipts[2]} {
		fields := strings.Fields(lines[i])
		if len(fields) != 4 || fields[0] != "ran" || fields[1] != r.ID || fields[2] != "jobs" {
			t.Errorf("the command printed %q, want ran %s jobs TIME", lines[i], r.ID)
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, fields[3]); err != nil {
			t.Errorf("HERALD_TIME %q: %v", fields[3], err)
		}
	}
	for i, r := range receipts {
		if got, err := os.ReadFile(filepath.Join(dir, r.ID+".txt")); err != nil || string(got) != texts[i] {
			t.Errorf("message %s reached the command's stdin as %q (%v), want %q", r.ID, got, err, texts[i])
		}
	}
	want := fmt.Sprintf("herald sub: -exec for message %s failed: exit status 3; going on with the next message", receipts[1].ID)
	if got := sub.stderr.lines(); !slices.Equal(got, []string{want}) {
		t.Errorf("stderr %q, want %q", got, want)
	}
}

// TestStoppingSubStopsItsCommand: stopping herald sub while its -exec
// command runs stops the command and what it started. The program the
// command starts holds a FIFO open for writing, so the test reads the
// FIFO's end as the program's end.
func TestStoppingSubStopsItsCommand(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	h.publish(t, "work")
	command := fmt.Sprintf(`sleep 300 > '%s' & echo started; wait`, fifo)
	sub := startCommand(t, nil, "sub", "-since", "all", "-exec", command, h.Origin)
	sub.stdout.awaitLine(t, "started")
	reader, err := os.Open(fifo) // once sleep has it open for writing
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if err := sub.interrupt(t); err != nil {
		t.Errorf("herald sub returned %v, want nil", err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(reader)
		ended <- err
	}()
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("reading the FIFO: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("the command's sleep outlived herald sub")
	}
	if lines := sub.stderr.lines(); len(lines) != 0 {
		t.Errorf("stderr %q, want nothing: a command stopped with herald sub is no failure", lines)
	}
}

func TestPubPrintsTheReceiptAndReadsStdin(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	conn := dial(t, h.ws("/ws?topic=news&format=json"))
	stdout, stderr, err := runCommand(t, nil, "pub", "-topic", "news", h.Origin, "hello there")
	if err != nil {
		t.Fatalf("herald pub: %v; stderr %q", err, stderr)
	}
	var receipt receiptReply
	if err := json.Unmarshal([]byte(stdout), &receipt); err != nil || receipt.Topic != "news" || receipt.Subscribers != 1 {
		t.Errorf("herald pub printed %q (%v), want the receipt of a publish to news with 1 subscriber", stdout, err)
	}
	if f := readJSONFrame(t, conn); f.ID != receipt.ID || f.Msg != "hello there" {
		t.Errorf("the subscriber got %+v, want message %s: hello there", f, receipt.ID)
	}

	var out, errOut bytes.Buffer
	stdin := strings.NewReader("two lines\nfrom stdin\n")
	// The URL herald sub would be given serves herald pub too, topic and all.
	if err := publishCommand(t.Context(), []string{h.Origin + "/events?topic=news", "-"}, os.Getenv, stdin, &out, &errOut); err != nil {
		t.Fatalf("herald pub -: %v; stderr %q", err, errOut.String())
	}
	if f := readJSONFrame(t, conn); f.Msg != "two lines\nfrom stdin" {
		t.Errorf("published %q from stdin, want its text less the final line break", f.Msg)
	}
}

// TestRefusalsGiveTheServersReason: a refused publish or subscription
// says what the server said, and herald sub does not retry it; a 429 is
// retried until it passes.
func TestRefusalsGiveTheServersReason(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "security:\n  publish_token: p-secret-1\n  subscribe_token: s-secret-1\n  anonymous: deny\n")

	_, _, err := runCommand(t, nil, "pub", h.Origin, "hello")
	if err == nil || !strings.Contains(err.Error(), "HTTP 401 token_required: to publish to topic") || !strings.Contains(err.Error(), "-token or HERALD_TOKEN") {
		t.Errorf("herald pub without a token: %v, want the server's 401 token_required and where the token goes", err)
	}
	_, _, err = runCommand(t, nil, "pub", "-token", "wrong", h.Origin, "hello")
	if err == nil || !strings.Contains(err.Error(), "HTTP 401 invalid_token: the token is not valid on this server") {
		t.Errorf("herald pub with a wrong token: %v, want the server's 401 invalid_token", err)
	}
	if stdout, _, err := runCommand(t, map[string]string{"HERALD_TOKEN": "p-secret-1"}, "pub", h.Origin, "hello"); err != nil || !strings.Contains(stdout, `"id"`) {
		t.Errorf("herald pub with HERALD_TOKEN: %v, printed %q", err, stdout)
	}

	_, stderr, err := runCommand(t, nil, "sub", h.Origin)
	if err == nil || !strings.Contains(err.Error(), "HTTP 401 token_required") || stderr != "" {
		t.Errorf("herald sub without a token: %v, stderr %q; want the server's 401 at once, no retries", err, stderr)
	}
	_, _, err = runCommand(t, nil, "sub", "-token", "p-secret-1", h.Origin)
	if err == nil || !strings.Contains(err.Error(), "HTTP 403 insufficient_scope") {
		t.Errorf("herald sub with a publishing token: %v, want the server's 403", err)
	}
	sub := startCommand(t, map[string]string{"HERALD_TOKEN": "s-secret-1"}, "sub", "-since", "all", h.Origin)
	if got := sub.stdout.await(t, 1); !slices.Equal(got, []string{"hello"}) {
		t.Errorf("herald sub with HERALD_TOKEN printed %q, want hello", got)
	}
}

func TestSubRetriesTooManyConnections(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "limits:\n  max_connections_per_ip: 1\n")
	blocker := dial(t, h.ws("/ws"))
	sub := startCommand(t, nil, "sub", "-since", "all", h.Origin)
	if line := sub.stderr.awaitLine(t, "trying again"); !strings.Contains(line, "HTTP 429") {
		t.Errorf("stderr %q, want the 429 said", line)
	}
	h.publish(t, "through")
	blocker.Close()
	if got := sub.stdout.await(t, 1); !slices.Equal(got, []string{"through"}) {
		t.Errorf("printed %q, want through", got)
	}
}

// TestCommandsFollowMovedPaths: a bare address means the default paths,
// and a refusal there says to give the route's URL, which then works.
func TestCommandsFollowMovedPaths(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "paths:\n  events: /stream\n  notify: /post\n  ws: /live\n")
	_, _, err := runCommand(t, nil, "pub", h.Origin, "hello")
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), "paths.notify") {
		t.Errorf("herald pub to the default path: %v, want 404 and a pointer to paths.notify", err)
	}
	if _, stderr, err := runCommand(t, nil, "pub", "-topic", "moved", h.Origin+"/post", "hello"); err != nil {
		t.Fatalf("herald pub to /post: %v; %s", err, stderr)
	}
	_, _, err = runCommand(t, nil, "sub", h.Origin)
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), "paths.events") {
		t.Errorf("herald sub at the default path: %v, want 404 and a pointer to paths.events", err)
	}
	sub := startCommand(t, nil, "sub", "-since", "all", h.Origin+"/stream?topic=moved")
	if got := sub.stdout.await(t, 1); !slices.Equal(got, []string{"hello"}) {
		t.Errorf("herald sub at /stream printed %q, want hello", got)
	}
}

func TestCommandLineMistakesGetOneLineAndStatus2(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sub"}, "herald sub: give one URL"},
		{[]string{"sub", "http://localhost:9000", "-topic", "news"}, "(got 3 arguments: flags go before the URL)"},
		{[]string{"sub", "-since", "yesterday", "localhost:9000"}, `-since "yesterday" is neither a message id nor all`},
		{[]string{"sub", "ftp://localhost:9000"}, `the scheme must be http or https (or ws, wss), not "ftp"`},
		{[]string{"sub", "ws://localhost:9000/live"}, "give its URL (paths.events), such as http://localhost:9000/events"},
		{[]string{"sub", "http://"}, "names no host"},
		{[]string{"pub", "http://localhost:9000"}, "herald pub: give the server's URL and the message"},
		{[]string{"pub", "localhost:9000", "hi", "-topic", "news"}, "(got 4 arguments: flags go before the URL)"},
	} {
		var stderr bytes.Buffer
		err := run(t.Context(), c.args, os.Getenv, io.Discard, &stderr)
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if !errors.Is(err, errUsage) || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("herald %s: %v, stderr %q; want status 2 and one line with %q", strings.Join(c.args, " "), err, stderr.String(), c.want)
		}
	}
	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"sub", "-nope", "x"}, os.Getenv, io.Discard, &stderr); !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), "flag provided but not defined: -nope") {
		t.Errorf("a bad flag: %v, stderr %q", err, stderr.String())
	}
}

// TestSubSaysWhenItsTokenExpires: herald sub says that its token expired
// when the server ends the stream, and stops at the refusal that follows.
func TestSubSaysWhenItsTokenExpires(t *testing.T) {
	t.Parallel()
	server := serveShortTokenOnAFrozenClock(t, "short-token-9d2f")
	sub := startCommand(t, nil, "sub", "-token", "short-token-9d2f", server.url)
	sub.stderr.awaitLine(t, "herald sub: the token expired")
	server.expire()
	if err := sub.wait(t); err == nil || !strings.Contains(err.Error(), "HTTP 401 token_expired") {
		t.Errorf("herald sub after its token expired: %v, want the server's 401 token_expired", err)
	}
}

// TestPubSaysWhenTheOutcomeIsUnknown: with Redis frozen, a publish gets
// 504, and herald pub says so and gives the key; the same command with
// that key once Redis is back publishes the message exactly once.
func TestPubSaysWhenTheOutcomeIsUnknown(t *testing.T) {
	t.Parallel()
	r, h, ws := startHeraldToStall(t)

	r.Freeze(t)
	_, _, err := runCommand(t, nil, "pub", "-topic", "stalled", h.Origin, "during")
	r.Thaw(t)
	if err == nil || !strings.Contains(err.Error(), "the outcome is unknown (HTTP 504)") {
		t.Fatalf("herald pub with Redis frozen: %v, want the outcome unknown", err)
	}
	_, key, found := strings.Cut(err.Error(), "run the same command again with -key ")
	if !found || key == "" {
		t.Fatalf("%v: gives no key", err)
	}
	stdout, stderr, err := runCommand(t, nil, "pub", "-topic", "stalled", "-key", key, h.Origin, "during")
	if err != nil {
		t.Fatalf("herald pub -key %s: %v; %s", key, err, stderr)
	}
	var receipt receiptReply
	if err := json.Unmarshal([]byte(stdout), &receipt); err != nil {
		t.Fatalf("receipt %q: %v", stdout, err)
	}
	end := h.publishToTopic(t, "stalled", "end")
	if copies := readCopies(t, ws, "during", end.ID); len(copies) != 1 || copies[0] != receipt.ID {
		t.Errorf("subscribers got the message with ids %v, want %s once", copies, receipt.ID)
	}
}

// TestCommandsAsTheirOwnProcess runs herald as a user does: herald pub
// reads a pipe, and Ctrl-C (SIGINT) ends herald sub with status 0.
func TestCommandsAsTheirOwnProcess(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	watcher := watchPresence(t, h, "news")
	awaitSubscribers(t, watcher, 1)
	sub := exec.Command(os.Args[0], "sub", "-topic", "news", h.Origin)
	sub.Env = append(os.Environ(), asMainEnv+"=1")
	subOut := newLineLog()
	var subErr bytes.Buffer
	sub.Stdout, sub.Stderr = subOut, &subErr
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Process.Kill(); sub.Wait() })
	awaitSubscribers(t, watcher, 2)

	pub := exec.Command(os.Args[0], "pub", "-topic", "news", h.Origin, "-")
	pub.Env = append(os.Environ(), asMainEnv+"=1")
	pub.Stdin = strings.NewReader("through a pipe\n")
	if out, err := pub.CombinedOutput(); err != nil || !strings.Contains(string(out), `"subscribers":2`) {
		t.Fatalf("herald pub: %v: %s", err, out)
	}
	if got := subOut.await(t, 1); !slices.Equal(got, []string{"through a pipe"}) {
		t.Errorf("herald sub printed %q", got)
	}
	if err := sub.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := sub.Wait(); err != nil {
		t.Errorf("herald sub after SIGINT: %v, want exit status 0; stderr %q", err, subErr.String())
	}
	if subErr.Len() != 0 {
		t.Errorf("stderr %q, want nothing", subErr.String())
	}
}

// TestReadmePubRefusalSampleIsWhatHeraldPrints: the README's refused
// publish is the line herald pub makes of the server's answer.
func TestReadmePubRefusalSampleIsWhatHeraldPrints(t *testing.T) {
	t.Parallel()
	sample := regexp.MustCompile(`(?m)^herald: pub: .*$`).FindString(readme(t))
	h := startHerald(t, "security:\n  publish_token: p-secret-2\n")
	_, _, err := runCommand(t, nil, "pub", "-topic", "news", h.Origin, "Extra")
	if err == nil {
		t.Fatal("herald pub without a token was not refused")
	}
	got := strings.ReplaceAll("herald: "+err.Error(), h.Origin, "http://localhost:9000")
	if got != sample {
		t.Errorf("herald pub printed\n%s\nthe README shows\n%s", got, sample)
	}
}
