package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// jsonFrame is a frame of the WebSocket route's JSON mode: a message, or a
// notice of lost messages (Type "lost").
type jsonFrame struct {
	Type        string  `json:"type"`
	Subscribers int     `json:"subscribers"`
	ID          string  `json:"id"`
	Topic       string  `json:"topic"`
	Time        string  `json:"time"`
	Msg         string  `json:"msg"`
	Since       string  `json:"since"`
	State       string  `json:"state"`
	Count       *uint64 `json:"count"`
}

func readJSONFrame(t testing.TB, conn *gorilla.Conn) jsonFrame {
	t.Helper()
	raw := readText(t, conn)
	var f jsonFrame
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		t.Fatalf("frame %q is not JSON: %v", raw, err)
	}
	return f
}

func (f jsonFrame) id(t testing.TB) uint64 {
	t.Helper()
	return parseID(t, f.ID)
}

// publishToTopic publishes msg to topic with the seed's GET.
func (h *heraldProcess) publishToTopic(t testing.TB, topic, msg string) receiptReply {
	t.Helper()
	resp, err := http.Get(h.Origin + "/notify?" + url.Values{"topic": {topic}, "msg": {msg}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	return decodeReceipt(t, resp)
}

func TestJSONModeSendsMessagesAndSaysWhatHistoryLost(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "history:\n  size: 3\n")
	var receipts []receiptReply
	for i := range 6 {
		receipts = append(receipts, h.publishToTopic(t, "news", fmt.Sprint("m", i)))
	}

	conn := dial(t, h.ws("/ws?topic=news&format=json&since="+receipts[0].ID))
	// The frame as sent, key by key: a notice has exactly these four keys.
	var notice map[string]any
	if err := json.Unmarshal([]byte(readText(t, conn)), &notice); err != nil {
		t.Fatal(err)
	}
	wantNotice := map[string]any{"type": "lost", "topic": "news", "since": receipts[0].ID, "count": 2.0}
	if fmt.Sprint(notice) != fmt.Sprint(wantNotice) {
		t.Errorf("first frame %v, want %v", notice, wantNotice)
	}
	for i := 3; i < 6; i++ {
		var frame map[string]any
		if err := json.Unmarshal([]byte(readText(t, conn)), &frame); err != nil {
			t.Fatal(err)
		}
		if len(frame) != 4 || frame["id"] != receipts[i].ID || frame["topic"] != "news" || frame["msg"] != fmt.Sprint("m", i) {
			t.Errorf("frame %v, want exactly id %s, topic news, time and msg m%d", frame, receipts[i].ID, i)
		}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(frame["time"])); err != nil {
			t.Errorf("time %v: %v", frame["time"], err)
		}
	}
	live := h.publishToTopic(t, "news", "live")
	if f := readJSONFrame(t, conn); f.ID != live.ID || f.Msg != "live" {
		t.Errorf("after the replay got %+v, want the live message %s", f, live.ID)
	}
}

func TestPlainModeReplaysExactTexts(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	first := h.publish(t, "one")
	h.publish(t, "two\nlines")
	conn := dial(t, h.ws("/ws?since="+first.ID))
	if got := readText(t, conn); got != "two\nlines" {
		t.Errorf("replayed %q, want the message after since", got)
	}
	h.publish(t, "three")
	if got := readText(t, conn); got != "three" {
		t.Errorf("live %q", got)
	}
}

func TestTopicsAreIsolated(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	seed, news := dial(t, h.ws("/ws")), dial(t, h.ws("/ws?topic=news"))
	h.publishToTopic(t, "news", "for news")
	h.publishToTopic(t, "other", "for other")
	h.publish(t, "for default")
	// Publishes were sequential: a leak would have arrived before these.
	if got := readText(t, seed); got != "for default" {
		t.Errorf("default-topic subscriber got %q first, want %q", got, "for default")
	}
	if got := readText(t, news); got != "for news" {
		t.Errorf("news subscriber got %q", got)
	}
	h.publishToTopic(t, "news", "news again")
	if got := readText(t, news); got != "news again" {
		t.Errorf("news subscriber got %q, want only news", got)
	}
}

// Clients that keep dropping and resuming while messages pour in must end
// up with every message exactly once, in order.
func TestResumingClientsMissNothingWhilePublishing(t *testing.T) {
	t.Parallel()
	const messages, clients = 2000, 3
	h := startHerald(t, "history:\n  size: 5000\n"+unlimitedPublishing)
	first := h.publishToTopic(t, "seam", "start") // every client resumes from here

	var wg sync.WaitGroup
	results := make([][]jsonFrame, clients)
	reconnects := make([]int, clients)
	for c := range clients {
		wg.Go(func() {
			since := first.ID
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for len(results[c]) < messages {
				conn := dial(t, h.ws("/ws?topic=seam&format=json&since="+since))
				// Drop the connection after a random number of frames.
				for range 1 + rng.IntN(300) {
					conn.SetReadDeadline(time.Now().Add(hangGuard))
					_, data, err := conn.ReadMessage()
					if err != nil {
						break // evicted as slow, perhaps: resume like any client
					}
					var f jsonFrame
					if err := json.Unmarshal(data, &f); err != nil || f.Type != "" {
						t.Errorf("client %d: unexpected frame %s", c, data)
						conn.Close()
						return
					}
					results[c] = append(results[c], f)
					since = f.ID
					if len(results[c]) == messages {
						break
					}
				}
				conn.Close()
				reconnects[c]++
			}
		})
	}
	for i := range messages {
		h.publishToTopic(t, "seam", fmt.Sprint(i))
	}
	wg.Wait()

	start := first.id(t)
	for c, frames := range results {
		for i, f := range frames {
			if f.id(t) != start+1+uint64(i) || f.Msg != fmt.Sprint(i) {
				t.Fatalf("client %d frame %d is id %s %q, want id %d %q", c, i, f.ID, f.Msg, start+1+uint64(i), fmt.Sprint(i))
			}
		}
		t.Logf("client %d: %d messages over %d connections", c, len(frames), reconnects[c])
	}
}

// sseEvent is one Server-Sent Event as a client assembles it.
type sseEvent struct {
	ID, Event, Data string
}

// sseStream reads events from an open response.
type sseStream struct {
	resp     *http.Response
	lines    *bufio.Reader
	comments []string
	// startsAfter is the id of the last event without data: where the
	// stream says it starts.
	startsAfter string
}

func openEvents(t testing.TB, rawURL string, lastEventID string) *sseStream {
	t.Helper()
	return openEventsVia(t, http.DefaultClient, rawURL, lastEventID)
}

// openEventsVia is openEvents with client, for https.
func openEventsVia(t testing.TB, client *http.Client, rawURL string, lastEventID string) *sseStream {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s: %s", rawURL, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return &sseStream{resp: resp, lines: bufio.NewReader(resp.Body)}
}

// next returns the next event that carries data, with the fields it came
// with, recording comments and positions on the way.
func (s *sseStream) next(t testing.TB) sseEvent {
	t.Helper()
	var ev sseEvent
	var data []string
	for {
		line, err := s.lines.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream ended: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if data != nil {
				ev.Data = strings.Join(data, "\n")
				return ev
			}
			if ev.ID != "" {
				s.startsAfter = ev.ID
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
			s.comments = append(s.comments, strings.TrimSpace(line[1:]))
		case strings.HasPrefix(line, "id: "):
			ev.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.Event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[6:])
		}
	}
}

func TestEventsStreamResumesWithLastEventID(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	stream := openEvents(t, h.Origin+"/events", "")
	a := h.publish(t, "a")
	b := h.publish(t, "b\r\nwith\rbreaks")
	for _, want := range []sseEvent{{ID: a.ID, Data: "a"}, {ID: b.ID, Data: "b\nwith\nbreaks"}} {
		if got := stream.next(t); got != want {
			t.Errorf("event %+v, want %+v", got, want)
		}
	}
	stream.resp.Body.Close()

	// Published while no stream was open; an EventSource reconnects with
	// the last id it saw, and the URL still says where it began.
	c, d := h.publish(t, "c"), h.publish(t, "d")
	resumed := openEvents(t, h.Origin+"/events?since=0", b.ID)
	for _, want := range []sseEvent{{ID: c.ID, Data: "c"}, {ID: d.ID, Data: "d"}} {
		if got := resumed.next(t); got != want {
			t.Errorf("resumed event %+v, want %+v", got, want)
		}
	}
}

func TestEventsJSONModeLostNoticeAndHeartbeats(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "history:\n  size: 1\nsse:\n  heartbeat_interval: 50ms\n"+unlimitedPublishing)
	first := h.publishToTopic(t, "news", "gone")
	h.publishToTopic(t, "news", "gone too")
	kept := h.publishToTopic(t, "news", "kept")

	stream := openEvents(t, h.Origin+"/events?topic=news&format=json&since="+first.ID, "")
	lost := stream.next(t)
	var notice jsonFrame
	if err := json.Unmarshal([]byte(lost.Data), &notice); err != nil || lost.Event != "lost" || lost.ID != "" {
		t.Fatalf("first event %+v, want an id-less lost event", lost)
	}
	if notice.Type != "lost" || notice.Count == nil || *notice.Count != 1 || notice.Since != first.ID {
		t.Errorf("notice %+v, want 1 lost after %s", notice, first.ID)
	}
	ev := stream.next(t)
	var m jsonFrame
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil || ev.ID != kept.ID || m.ID != kept.ID || m.Msg != "kept" || m.Topic != "news" {
		t.Errorf("event %+v, want message %s as JSON", ev, kept.ID)
	}
	// Heartbeats are comments; wait for one, then check a message still
	// comes through after it.
	for !slices.Contains(stream.comments, "heartbeat") {
		stream.comments = nil
		heartbeatProbe := h.publishToTopic(t, "news", "probe")
		if got := stream.next(t); got.ID != heartbeatProbe.ID {
			t.Fatalf("event %+v, want probe %s", got, heartbeatProbe.ID)
		}
	}
}

func TestShutdownEndsEventStreams(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	stream := openEvents(t, h.Origin+"/events", "")
	h.publish(t, "before")
	if err := h.Stop(t); err != nil {
		t.Fatalf("stop with a stream open: %v", err)
	}
	if got := stream.next(t); got.Data != "before" {
		t.Errorf("got %+v, want the queued message before the end", got)
	}
	if rest, err := io.ReadAll(stream.lines); err != nil || len(rest) != 0 {
		t.Errorf("after shutdown the stream held %q, %v; want a clean end", rest, err)
	}
}

func TestHistoryFileSurvivesCleanStopAndRestart(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "history.db")
	config := fmt.Sprintf("history:\n  file: %s\n", file)
	h := startHerald(t, config)
	var sent []receiptReply
	for i := range 3 {
		sent = append(sent, h.publish(t, fmt.Sprint("m", i)))
	}
	if err := h.Stop(t); err != nil {
		t.Fatal(err)
	}

	h = startHerald(t, config)
	assertReplay(t, h, sent)
	if next := h.publish(t, "after"); next.id(t) != sent[2].id(t)+1 {
		t.Errorf("id after the restart %s, want %d", next.ID, sent[2].id(t)+1)
	}
}

// Herald as its own process, for the tests that kill it or see it exit.
const asMainEnv = "HERALD_TEST_RUN_MAIN"

func TestHistoryFileSurvivesKill9(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "history.db")
	killed, cmd := startHeraldChild(t, writeHistoryConfig(t, file))
	var sent []receiptReply
	for i := range 20 {
		sent = append(sent, killed.publish(t, fmt.Sprint("m", i)))
	}
	kill9(t, cmd)

	h := startHerald(t, fmt.Sprintf("history:\n  file: %s\n", file))
	assertReplay(t, h, sent)
	if next := h.publish(t, "after"); next.id(t) <= sent[19].id(t) {
		t.Errorf("id after the restart %s is not above %s", next.ID, sent[19].ID)
	}
}

// assertReplay checks that resuming from 0 replays exactly sent, with the
// texts m0, m1, ..., and returns the connection, which goes on live.
func assertReplay(t *testing.T, h *heraldProcess, sent []receiptReply) *gorilla.Conn {
	t.Helper()
	conn := dial(t, h.ws("/ws?format=json&since=0"))
	for i, r := range sent {
		if f := readJSONFrame(t, conn); f.ID != r.ID || f.Msg != fmt.Sprint("m", i) {
			t.Fatalf("replayed %+v, want id %s %q", f, r.ID, fmt.Sprint("m", i))
		}
	}
	return conn
}

func TestUnusableHistoryFileStopsStartUp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.db")
	if err := os.WriteFile(corrupt, []byte(strings.Repeat("garbage!", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	held := filepath.Join(dir, "held.db")
	startHerald(t, fmt.Sprintf("history:\n  file: %s\n", held)) // holds the file until the test ends

	tests := []struct {
		name        string
		givenFile   string
		expectError string
	}{
		{"givenGarbage", corrupt, "is corrupt or not a Herald history file"},
		{"givenFileInUse", held, "is locked by another process"},
		{"givenMissingDirectory", filepath.Join(dir, "nope", "h.db"), "no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			configPath := filepath.Join(t.TempDir(), "config.yaml")
			config := fmt.Sprintf("port: 0\nhistory:\n  file: %s\n", tc.givenFile)
			if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout strings.Builder
			err := run(t.Context(), []string{"-config", configPath}, func(string) string { return "" }, &stdout, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.expectError) || strings.Contains(err.Error(), "\n") {
				t.Errorf("run = %v, want one line saying %q", err, tc.expectError)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q although it did not start", stdout.String())
			}
		})
	}
}

// A history file cut short, as a full disk or a partial copy leaves it,
// must stop Herald with one line that says what to do, not a crash loop of
// stack dumps inside bbolt, and must stay exactly as it was.
func TestTruncatedHistoryFileStopsHeraldWithOneLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "history.db")
	h := startHerald(t, fmt.Sprintf("limits:\n  publish_per_second: 0\nhistory:\n  file: %s\n", file))
	big := strings.Repeat("x", 60_000)
	for range 40 {
		resp, err := http.Post(h.Origin+"/notify", "text/plain", strings.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		decodeReceipt(t, resp)
	}
	if err := h.Stop(t); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(file)
	if err != nil || len(whole) < 2_000_000 {
		t.Fatalf("the history file is %d bytes (%v), want about 2 MB", len(whole), err)
	}
	cut := filepath.Join(dir, "cut.db")
	if err := os.WriteFile(cut, whole[:100_000], 0o600); err != nil {
		t.Fatal(err)
	}
	configPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configPath, []byte(fmt.Sprintf("port: 0\nhistory:\n  file: %s\n", cut)), 0o600); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, status := runHeraldCommand(t, "-config", configPath)
	if status != 1 {
		t.Fatalf("herald on a truncated file exited with %d, want 1\nstderr: %s", status, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 || strings.Contains(stderr, "goroutine") {
		t.Fatalf("stderr is %d lines, want one line and no stack:\n%s", len(lines), stderr)
	}
	for _, want := range []string{cut, "damaged", "cut short", "move it aside"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("%q does not say %q", lines[0], want)
		}
	}
	if stdout != "" {
		t.Errorf("printed %q although it did not start", stdout)
	}
	if after, err := os.ReadFile(cut); err != nil || !bytes.Equal(after, whole[:100_000]) {
		t.Errorf("the truncated file was changed (%v)", err)
	}
}

func TestPresenceFramesFollowJoinsAndLeaves(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	watcher := dial(t, h.ws("/ws?topic=room&format=json&presence=1"))
	expect := func(want uint64) {
		t.Helper()
		var f struct {
			Type        string `json:"type"`
			Topic       string `json:"topic"`
			Subscribers uint64 `json:"subscribers"`
		}
		if err := json.Unmarshal([]byte(readText(t, watcher)), &f); err != nil || f.Type != "presence" || f.Topic != "room" || f.Subscribers != want {
			t.Fatalf("frame %+v (%v), want presence %d", f, err, want)
		}
	}
	expect(1)
	other := dial(t, h.ws("/ws?topic=room"))
	expect(2)
	other.Close()
	expect(1)
	// Presence notices are JSON; text mode cannot carry them.
	resp, err := http.Get(h.Origin + "/events?presence=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("presence in text mode: %d, want 400", resp.StatusCode)
	}
}
