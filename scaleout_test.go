package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	gorilla "github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
)

// TestThreeInstancesOverRedisBehaveAsOne spreads WebSocket and SSE
// subscribers over three instances and publishes on each in turn: every
// subscriber gets every message, in one order, with the same ids.
func TestThreeInstancesOverRedisBehaveAsOne(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	instances := []*heraldProcess{startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML())}

	type subscriber struct {
		name string
		next func() (id, msg string)
	}
	var subscribers []subscriber
	for i, h := range instances {
		ws := dial(t, h.ws("/ws?topic=news&format=json"))
		plain := dial(t, h.ws("/ws?topic=news"))
		sse := openEvents(t, h.Origin+"/events?topic=news", "")
		subscribers = append(subscribers,
			subscriber{fmt.Sprintf("JSON WebSocket on instance %d", i+1), func() (string, string) { f := readJSONFrame(t, ws); return f.ID, f.Msg }},
			subscriber{fmt.Sprintf("plain WebSocket on instance %d", i+1), func() (string, string) { return "", readText(t, plain) }},
			subscriber{fmt.Sprintf("SSE on instance %d", i+1), func() (string, string) { e := sse.next(t); return e.ID, e.Data }},
		)
	}

	var receipts []receiptReply
	for round := range 10 {
		for i, h := range instances {
			receipts = append(receipts, h.publishToTopic(t, "news", fmt.Sprintf("m%d from %d", round, i+1)))
		}
	}
	for i := 1; i < len(receipts); i++ {
		if receipts[i].id(t) != receipts[i-1].id(t)+1 {
			t.Fatalf("ids are not one sequence across instances: %s then %s", receipts[i-1].ID, receipts[i].ID)
		}
	}
	for _, s := range subscribers {
		for i, want := range receipts {
			id, msg := s.next()
			wantMsg := fmt.Sprintf("m%d from %d", i/3, i%3+1)
			if msg != wantMsg || (id != "" && id != want.ID) {
				t.Fatalf("%s: message %d is %s %q, want %s %q", s.name, i, id, msg, want.ID, wantMsg)
			}
		}
	}
}

// TestResumeOnAnotherInstanceAcrossTheSeam: a client reads from one
// instance, drops, and resumes on another while publishes go on; it gets
// every message once, in order.
func TestResumeOnAnotherInstanceAcrossTheSeam(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	a, b, c := startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML())

	first := dial(t, a.ws("/ws?topic=seam&format=json&since=0"))
	for i := range 5 {
		c.publishToTopic(t, "seam", fmt.Sprintf("s%d", i))
	}
	var last string
	for i := range 5 {
		f := readJSONFrame(t, first)
		if f.Msg != fmt.Sprintf("s%d", i) {
			t.Fatalf("before the drop: %q, want s%d", f.Msg, i)
		}
		last = f.ID
	}
	first.Close()
	for i := 5; i < 10; i++ { // while the client is away
		a.publishToTopic(t, "seam", fmt.Sprintf("s%d", i))
	}
	resumed := dial(t, b.ws("/ws?topic=seam&format=json&since="+last))
	for i := 10; i < 15; i++ { // racing the resume
		c.publishToTopic(t, "seam", fmt.Sprintf("s%d", i))
	}
	for i := 5; i < 15; i++ {
		if f := readJSONFrame(t, resumed); f.Type != "" || f.Msg != fmt.Sprintf("s%d", i) {
			t.Fatalf("after resuming on another instance: %+v, want s%d", f, i)
		}
	}
	// The events route resumes on a third instance with Last-Event-ID.
	stream := openEvents(t, c.Origin+"/events?topic=seam", last)
	for i := 5; i < 15; i++ {
		if e := stream.next(t); e.Data != fmt.Sprintf("s%d", i) {
			t.Fatalf("SSE resumed on another instance: %+v, want s%d", e, i)
		}
	}
}

// TestRedisOutageRefusesPublishesAndLosesNothingAcknowledged kills Redis
// mid-stream and starts it again on the same data: publishes in between
// get 503, readiness says so, and every acknowledged message reaches every
// subscriber once Redis is back.
func TestRedisOutageRefusesPublishesAndLosesNothingAcknowledged(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	a, b := startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML())
	onA := dial(t, a.ws("/ws?topic=outage&format=json"))
	onB := openEvents(t, b.Origin+"/events?topic=outage", "")

	var acknowledged []string
	publish := func(h *heraldProcess, msg string) int {
		got := request(t, http.MethodPost, h.Origin+"/notify?topic=outage", nil, "msg="+msg)
		if got.status == 200 {
			acknowledged = append(acknowledged, msg)
		}
		return got.status
	}
	for i := range 5 {
		if status := publish(a, fmt.Sprintf("before %d", i)); status != 200 {
			t.Fatalf("publish before the outage: %d", status)
		}
	}

	r.Kill(t)
	for _, h := range []*heraldProcess{a, b} {
		got := request(t, http.MethodPost, h.Origin+"/notify?topic=outage", nil, "msg=during")
		if got.status != http.StatusServiceUnavailable || !strings.Contains(got.error, "Redis") {
			t.Errorf("publish during the outage: %d %q, want 503 naming Redis", got.status, got.error)
		}
		if ready := request(t, http.MethodGet, h.Origin+"/readyz", nil, ""); ready.status != http.StatusServiceUnavailable {
			t.Errorf("readyz during the outage: %d, want 503", ready.status)
		}
		if metrics := request(t, http.MethodGet, h.Origin+"/metrics", nil, "").body; !strings.Contains(metrics, "\nherald_broker_up 0\n") {
			t.Errorf("metrics during the outage do not say the broker is down")
		}
	}

	r.Restart(t)
	for i := range 5 {
		if status := publish(b, fmt.Sprintf("after %d", i)); status != 200 {
			t.Fatalf("publish once Redis is back: %d", status)
		}
	}
	for _, h := range []*heraldProcess{a, b} {
		if ready := request(t, http.MethodGet, h.Origin+"/readyz", nil, ""); ready.status != 200 {
			t.Errorf("readyz once Redis is back: %d", ready.status)
		}
		if metrics := request(t, http.MethodGet, h.Origin+"/metrics", nil, "").body; !strings.Contains(metrics, "\nherald_broker_up 1\n") {
			t.Errorf("metrics once Redis is back do not say the broker is up")
		}
	}
	// Each subscriber gets every acknowledged message in order, and is
	// told, in JSON mode and SSE, that the broker went and came back.
	var notices []string
	for _, want := range acknowledged {
		f := readJSONFrame(t, onA)
		for f.Type == "broker" {
			notices = append(notices, "WebSocket "+f.State)
			f = readJSONFrame(t, onA)
		}
		if f.Msg != want {
			t.Fatalf("WebSocket on A: %+v, want %q", f, want)
		}
		e := onB.next(t)
		for e.Event == "broker" {
			notices = append(notices, "SSE "+strings.TrimSuffix(strings.TrimPrefix(e.Data, `{"type":"broker","state":"`), `"}`))
			e = onB.next(t)
		}
		if e.Data != want {
			t.Fatalf("SSE on B: %+v, want %q", e, want)
		}
	}
	for len(notices) < 4 { // an "up" may come after the last message
		if f := readJSONFrame(t, onA); f.Type == "broker" && !slices.Contains(notices, "WebSocket up") {
			notices = append(notices, "WebSocket "+f.State)
		}
		if !slices.Contains(notices, "SSE up") {
			if e := onB.next(t); e.Event == "broker" {
				notices = append(notices, "SSE "+strings.TrimSuffix(strings.TrimPrefix(e.Data, `{"type":"broker","state":"`), `"}`))
			}
		}
	}
	for _, pair := range [][2]string{{"WebSocket down", "WebSocket up"}, {"SSE down", "SSE up"}} {
		down, up := slices.Index(notices, pair[0]), slices.Index(notices, pair[1])
		if down < 0 || up < down {
			t.Errorf("broker notices %v: want %q, then %q", notices, pair[0], pair[1])
		}
	}
	a.Stop(t)
	if logs := a.logs.String(); strings.Count(logs, "redis is unreachable") != 1 {
		t.Errorf("the outage was not logged exactly once:\n%s", logs)
	}
}

// TestRedisWipedWhileRunningReportsTheGap: a Redis that loses its data
// starts ids again above the old ones, and a subscriber is told of the gap
// rather than left waiting.
func TestRedisWipedWhileRunningReportsTheGap(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	h := startHerald(t, r.heraldYAML())
	live := dial(t, h.ws("/ws?topic=wipe&format=json"))
	before := h.publishToTopic(t, "wipe", "before")
	if f := readJSONFrame(t, live); f.Msg != "before" {
		t.Fatalf("got %+v", f)
	}
	if err := r.Client(t).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	after := h.publishToTopic(t, "wipe", "after")
	if after.id(t) <= before.id(t) {
		t.Fatalf("after the wipe the id went from %s back to %s", before.ID, after.ID)
	}
	// Ids of two Redis lifetimes cannot be subtracted: how many were lost
	// is unknown.
	if f := readJSONFrame(t, live); f.Type != "lost" || f.Since != before.ID || f.Count != nil {
		t.Fatalf("the live subscriber got %+v (count %s), want a lost notice since %s with count null", f, countText(f.Count), before.ID)
	}
	if f := readJSONFrame(t, live); f.Msg != "after" {
		t.Fatalf("then %+v, want the new message", f)
	}

	// A client resuming from before the wipe, on a fresh connection.
	resumed := dial(t, h.ws("/ws?topic=wipe&format=json&since="+before.ID))
	if f := readJSONFrame(t, resumed); f.Type != "lost" {
		t.Fatalf("resuming across the wipe: %+v, want a lost notice", f)
	}
	if f := readJSONFrame(t, resumed); f.Msg != "after" {
		t.Fatalf("then %+v, want the message after the wipe", f)
	}
}

// TestRedisReplacedByAnEmptyOneReportsAnUnknownLoss: Redis is killed and
// an empty one takes its place. The next message reaches subscribers after
// a lost notice whose count is null: ids from two Redis lifetimes cannot
// be subtracted.
func TestRedisReplacedByAnEmptyOneReportsAnUnknownLoss(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	h := startHerald(t, r.heraldYAML())
	ws, sse := subscribeJSONAndSSE(t, h, "wipe")
	before := h.publishToTopic(t, "wipe", "before")
	if f := readJSONFrame(t, ws); f.Msg != "before" {
		t.Fatalf("the WebSocket subscriber got %+v", f)
	}
	if e := sse.next(t); e.Data != "before" {
		t.Fatalf("the SSE subscriber got %+v", e)
	}

	r.RestartEmpty(t)
	awaitBrokerNotices(t, ws, sse, "down")
	awaitBrokerNotices(t, ws, sse, "up")
	after := h.publishToTopic(t, "wipe", "after")

	wantLost := `{"type":"lost","topic":"wipe","since":"` + before.ID + `","count":null}`
	if f := readJSONFrame(t, ws); f.Type != "lost" || f.Since != before.ID || f.Count != nil {
		t.Errorf("the WebSocket subscriber got %+v (count %s), want %s", f, countText(f.Count), wantLost)
	}
	if e := sse.next(t); e.Event != "lost" || e.Data != wantLost {
		t.Errorf("the SSE subscriber got %+v, want event lost %s", e, wantLost)
	}
	if f := readJSONFrame(t, ws); f.ID != after.ID || f.Msg != "after" {
		t.Errorf("then the WebSocket subscriber got %+v, want %s after", f, after.ID)
	}
	if e := sse.next(t); e.ID != after.ID || e.Data != "after" {
		t.Errorf("then the SSE subscriber got %+v, want %s after", e, after.ID)
	}
}

// countText is a lost notice's count as JSON has it.
func countText(count *uint64) string {
	if count == nil {
		return "null"
	}
	return strconv.FormatUint(*count, 10)
}

// TestPresenceCountsSubscribersOnEveryInstance: "N watching" on one
// instance counts the subscribers of all three, and follows them leaving.
func TestPresenceCountsSubscribersOnEveryInstance(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	a, b, c := startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML())
	watcher := dial(t, a.ws("/ws?topic=room&format=json&presence=1"))
	awaitCount := func(want int) {
		t.Helper()
		for {
			f := readJSONFrame(t, watcher)
			if f.Type == "presence" && f.Subscribers == want {
				return
			}
		}
	}
	awaitCount(1)
	onB1, onB2 := dial(t, b.ws("/ws?topic=room")), dial(t, b.ws("/ws?topic=room"))
	openEvents(t, c.Origin+"/events?topic=room", "")
	awaitCount(4)
	// A publish's receipt counts the subscribers of every instance.
	if got := c.publishToTopic(t, "room", "hello"); got.Subscribers != 4 {
		t.Errorf("a publish on C reports %d subscribers, want 4", got.Subscribers)
	}
	onB1.Close()
	onB2.Close()
	awaitCount(2)
}

// TestPresenceIsRightAsSoonAsAnEmptyRedisIsBack: Redis is replaced by an
// empty one, which has none of the counts. Once an instance tells its
// subscribers that Redis is back, a publish's receipt counts them, on
// that instance and on another.
func TestPresenceIsRightAsSoonAsAnEmptyRedisIsBack(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	a, b := startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML())
	ws, sse := subscribeJSONAndSSE(t, a, "counted")

	r.RestartEmpty(t)
	awaitBrokerNotices(t, ws, sse, "down")
	awaitBrokerNotices(t, ws, sse, "up")
	for name, h := range map[string]*heraldProcess{"the subscribers' instance": a, "another instance": b} {
		if got := h.publishToTopic(t, "counted", "hello"); got.Subscribers != 2 {
			t.Errorf("a publish on %s reports %d subscribers, want 2", name, got.Subscribers)
		}
	}
}

// TestBenchAcrossTwoInstancesLosesNothing runs herald bench as the README
// does against two instances behind one Redis: subscribers and publishers
// spread over both, and every delivery is counted.
func TestBenchAcrossTwoInstancesLosesNothing(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	yaml := r.heraldYAML() + "limits:\n  publish_per_second: 0\n"
	a, b := startHerald(t, yaml), startHerald(t, yaml)
	report := runBench(t, "-ws", a.ws("/ws")+","+b.ws("/ws"), "-publish", a.Origin+"/notify,"+b.Origin+"/notify",
		"-subscribers", "20", "-messages", "200", "-publishers", "4")
	for key, want := range map[string]string{
		"acknowledged": "200", "expected_deliveries": "4000", "delivered": "4000", "lost": "0", "duplicated": "0",
	} {
		if report[key] != want {
			t.Errorf("%s=%s, want %s", key, report[key], want)
		}
	}
}

// TestThreeInstancesBehindNginxNeedNoStickySessions runs the shipped nginx
// config in front of three instances, as the README says: each request may
// land on any instance, and a subscriber through nginx still gets every
// message once, in order, and resumes through nginx after a drop.
func TestThreeInstancesBehindNginxNeedNoStickySessions(t *testing.T) {
	t.Parallel()
	nginx, site := shippedNginx(t)
	r := startRedis(t)
	proxy := startNginx(t, nginx, site, startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML()))
	viaProxy := &heraldProcess{Origin: "http://" + proxy}

	ws := dial(t, viaProxy.ws("/ws?topic=lb&format=json"))
	var receipts []receiptReply
	for i := range 9 { // round robin: three publishes on each instance
		receipts = append(receipts, viaProxy.publishToTopic(t, "lb", fmt.Sprintf("n%d", i)))
	}
	for i, sent := range receipts[:6] {
		if f := readJSONFrame(t, ws); f.ID != sent.ID || f.Msg != fmt.Sprintf("n%d", i) {
			t.Fatalf("through nginx: %+v, want %s n%d", f, sent.ID, i)
		}
	}
	ws.Close() // and resume, wherever nginx sends the new connection
	stream := openEvents(t, viaProxy.Origin+"/events?topic=lb", receipts[5].ID)
	for i, sent := range receipts[6:] {
		if e := stream.next(t); e.ID != sent.ID || e.Data != fmt.Sprintf("n%d", i+6) {
			t.Fatalf("resumed through nginx: %+v, want %s n%d", e, sent.ID, i+6)
		}
	}
}

// TestRedisDownAtStartUpStopsWithOneLine: Herald does not start without
// its Redis, and says why in one line.
func TestRedisDownAtStartUpStopsWithOneLine(t *testing.T) {
	t.Parallel()
	port := freePort(t) // nothing listens there
	path := filepath.Join(t.TempDir(), "config.yaml")
	config := fmt.Sprintf("host: 127.0.0.1\nport: 0\nbroker: redis\nredis:\n  url: redis://127.0.0.1:%d/0\n  timeout: 1s\n", port)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	err := run(t.Context(), []string{"-config", path}, func(string) string { return "" }, io.Discard, &stderr)
	want := fmt.Sprintf("redis at 127.0.0.1:%d does not answer: ", port)
	if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("run returned %v, want one line starting %q", err, want)
	}
	if stderr.Len() > 0 {
		t.Errorf("start-up printed more than the error:\n%s", stderr.String())
	}
}

// TestPageResumesOnAnotherInstance: the page, through nginx in front of
// three instances, loses the instance it was connected to, reconnects to
// another through nginx, and shows every message once, in order.
func TestPageResumesOnAnotherInstance(t *testing.T) {
	t.Parallel()
	nginx, site := shippedNginx(t)
	r := startRedis(t)
	instances := []*heraldProcess{startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML())}
	proxy := startNginx(t, nginx, site, instances...)
	viaProxy := &heraldProcess{Origin: "http://" + proxy}

	tab := newTab(t)
	runIn(t, tab, waitLive(viaProxy.Origin+"/?topic=pg"))
	viaProxy.publishToTopic(t, "pg", "m1")
	viaProxy.publishToTopic(t, "pg", "m2")
	runIn(t, tab, waitForMessage("m2"))

	// Stop the instance that holds the page's connection.
	var holding *heraldProcess
	for _, h := range instances {
		metrics := request(t, http.MethodGet, h.Origin+"/metrics", nil, "").body
		if strings.Contains(metrics, "herald_connections{transport=\"websocket\"} 1\n") {
			holding = h
		}
	}
	if holding == nil {
		t.Fatal("no instance holds the page's WebSocket")
	}
	holding.Stop(t)
	// The page reconnects through nginx after its backoff (a quarter of a
	// second or more); the two publishes below usually land before it is
	// back, so it resumes them from history. Either way it must list each
	// message once, in order. (Waiting to see "reconnecting" would race
	// that backoff; resuming from history on another instance is tested
	// without a browser in TestResumeOnAnotherInstanceAcrossTheSeam.)
	var live *heraldProcess
	for _, h := range instances {
		if h != holding {
			live = h
		}
	}
	live.publishToTopic(t, "pg", "m3")
	live.publishToTopic(t, "pg", "m4")
	runIn(t, tab, chromedp.WaitReady(`body[data-state="live"]`), waitForMessage("m4"))

	if got := shownMessages(t, tab); strings.Join(got, " ") != "m1 m2 m3 m4" {
		t.Errorf("the page lists %q, want m1 to m4 once each, in order", got)
	}
	if hidden := get(t, tab, chromedp.Evaluate[bool](`document.getElementById("lost-notice").hidden`)); !hidden {
		t.Error("the page warns of lost messages although none were lost")
	}
}

// TestIdleSubscribersCostRedisNothing: two instances with a subscriber
// each, nothing published, nothing changing. Over a window of several
// seconds, they send Redis no presence announcement, and no command but
// the periodic restatement of their counts.
func TestIdleSubscribersCostRedisNothing(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	a, b := startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML())
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	rc := r.Client(t)
	announcements := rc.Subscribe(ctx, "herald:presence")
	defer announcements.Close()
	if _, err := announcements.Receive(ctx); err != nil { // the subscription itself
		t.Fatal(err)
	}
	openEvents(t, a.Origin+"/events?topic=idle", "")
	if _, err := announcements.ReceiveMessage(ctx); err != nil {
		t.Fatalf("the join on A was not announced: %v", err)
	}
	dial(t, b.ws("/ws?topic=idle"))
	if _, err := announcements.ReceiveMessage(ctx); err != nil {
		t.Fatalf("the join on B was not announced: %v", err)
	}

	before := commandCalls(t, rc)
	start := time.Now()
	// A window, not a wait: nothing is meant to happen in it.
	time.Sleep(3 * time.Second)
	after := commandCalls(t, rc)
	elapsed := time.Since(start)

	sent := map[string]int{}
	total := 0
	for command, calls := range after {
		if n := calls - before[command]; n > 0 && command != "info" { // the test's own
			sent[command] = n
			total += n
		}
	}
	t.Logf("in %s the two instances sent Redis %v", elapsed.Round(time.Millisecond), sent)
	// B's join ends with B reading A's count, and A reading B's once told:
	// 2 HGETALLs that may follow the last announcement into the window.
	// Each instance restates its count once per 15 s: HSET, PEXPIRE and an
	// HGETALL of the other's count, 3 commands, and a window of d holds at
	// most d/15s+1 restatements. A loop that feeds on its own
	// announcements sends thousands a second.
	const instances, restatement, period = 2, 3, 15 * time.Second
	limit := instances * (1 + restatement*(int(elapsed/period)+1))
	if sent["publish"] != 0 || total > limit {
		t.Errorf("in %s two idle instances sent Redis %d commands (%v), want no publish and at most %d",
			elapsed.Round(time.Millisecond), total, sent, limit)
	}
}

// commandCalls reads how many times Redis has run each command.
func commandCalls(t *testing.T, rc *redis.Client) map[string]int {
	t.Helper()
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		// cmdstat_hset:calls=3,usec=12,usec_per_call=4.00,...
		name, stats, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(stats, ",")
		if calls[name], err = strconv.Atoi(n); err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
	}
	return calls
}

// TestSubscribersHearRedisIsBackAfterAStall: Redis freezes, a readiness
// check finds it gone and subscribers are told so; Redis goes on, and they
// are told it is back with nothing published and no one asking.
func TestSubscribersHearRedisIsBackAfterAStall(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	h := startHerald(t, r.heraldYAML())
	ws, sse := subscribeJSONAndSSE(t, h, "stall")

	r.Freeze(t)
	if ready := request(t, http.MethodGet, h.Origin+"/readyz", nil, ""); ready.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz with Redis frozen: %d, want 503", ready.status)
	}
	awaitBrokerNotices(t, ws, sse, "down")
	r.Thaw(t)
	awaitBrokerNotices(t, ws, sse, "up")
}

// subscribeJSONAndSSE subscribes to topic on h twice: with a JSON-mode
// WebSocket and with SSE.
func subscribeJSONAndSSE(t *testing.T, h *heraldProcess, topic string) (*gorilla.Conn, *sseStream) {
	t.Helper()
	return dial(t, h.ws("/ws?topic="+topic+"&format=json")), openEvents(t, h.Origin+"/events?topic="+topic, "")
}

// awaitBrokerNotices reads the next frame of a JSON WebSocket subscriber
// and the next event of an SSE one, and fails unless each says the broker
// is in state.
func awaitBrokerNotices(t *testing.T, ws *gorilla.Conn, sse *sseStream, state string) {
	t.Helper()
	if f := readJSONFrame(t, ws); f.Type != "broker" || f.State != state {
		t.Fatalf("the WebSocket subscriber got %+v, want the broker %s", f, state)
	}
	want := `{"type":"broker","state":"` + state + `"}`
	if e := sse.next(t); e.Event != "broker" || e.Data != want {
		t.Fatalf("the SSE subscriber got %+v, want event broker %s", e, want)
	}
}

// TestPublishDuringARedisStallIsDeliveredOnceOrNever: Redis freezes while
// a publish waits on it. Whatever Herald answers holds: 200 means
// delivered once, 503 never, and 504, outcome unknown, at most once. The
// client's retry with the same Idempotency-Key then publishes it exactly
// once in all.
func TestPublishDuringARedisStallIsDeliveredOnceOrNever(t *testing.T) {
	t.Parallel()
	r, h, ws := startHeraldToStall(t)
	keyed := http.Header{"Idempotency-Key": {"stall-0001"}}

	r.Freeze(t)
	first := request(t, http.MethodPost, h.Origin+"/notify?topic=stalled", keyed, "msg=during")
	r.Thaw(t)
	t.Logf("with Redis frozen, a publish was answered %d %s", first.status, first.body)
	// Redis serves what waited in its sockets first, in the order it
	// came: by the time "between" is acknowledged, the first attempt has
	// run, if it ever will.
	between := h.publishToTopic(t, "stalled", "between")
	copies := readCopies(t, ws, "during", between.ID)
	switch {
	case first.status == http.StatusOK && len(copies) != 1,
		first.status == http.StatusServiceUnavailable && len(copies) != 0,
		first.status == http.StatusGatewayTimeout && len(copies) > 1:
		t.Fatalf("a publish answered %d %s was delivered %d times", first.status, first.body, len(copies))
	case first.status == http.StatusGatewayTimeout:
		var reply struct{ Error, Code string }
		if err := json.Unmarshal([]byte(first.body), &reply); err != nil || reply.Code != "outcome_unknown" || strings.Contains(reply.Error, "nothing was published") {
			t.Errorf("an unknown outcome was answered %s, want code outcome_unknown, and not that nothing was published", first.body)
		}
	case first.status != http.StatusOK && first.status != http.StatusServiceUnavailable:
		t.Fatalf("a publish with Redis frozen was answered %d %s, want 200, 503 or 504", first.status, first.body)
	}

	retry := request(t, http.MethodPost, h.Origin+"/notify?topic=stalled", keyed, "msg=during")
	if retry.status != http.StatusOK {
		t.Fatalf("the retry with the same key was answered %d %s, want 200", retry.status, retry.body)
	}
	var receipt receiptReply
	if err := json.Unmarshal([]byte(retry.body), &receipt); err != nil {
		t.Fatal(err)
	}
	end := h.publishToTopic(t, "stalled", "end")
	copies = append(copies, readCopies(t, ws, "during", end.ID)...)
	if len(copies) != 1 || copies[0] != receipt.ID {
		t.Fatalf("after a first answer of %d and a retry answered %s, subscribers got ids %v, want %s once",
			first.status, receipt.ID, copies, receipt.ID)
	}
}

// startHeraldToStall starts Herald over a real Redis, with a JSON
// WebSocket subscriber of the topic "stalled", and publishes to it once,
// so that Herald's connections to Redis are open before the test freezes
// Redis.
func startHeraldToStall(t *testing.T) (*redisServer, *heraldProcess, *gorilla.Conn) {
	t.Helper()
	r := startRedis(t)
	h := startHerald(t, r.heraldYAML())
	ws := dial(t, h.ws("/ws?topic=stalled&format=json"))
	h.publishToTopic(t, "stalled", "warm")
	if f := readJSONFrame(t, ws); f.Msg != "warm" {
		t.Fatalf("got %+v, want warm", f)
	}
	return r, h, ws
}

// readCopies reads a JSON WebSocket subscriber's frames up to the message
// with id until, and returns the ids of the messages msg among them.
func readCopies(t *testing.T, ws *gorilla.Conn, msg, until string) []string {
	t.Helper()
	var ids []string
	for {
		f := readJSONFrame(t, ws)
		switch {
		case f.ID == until:
			return ids
		case f.Msg == msg:
			ids = append(ids, f.ID)
		}
	}
}

// TestIdempotencyKeyPublishesOnce: publishes that carry the same
// Idempotency-Key are one publish with one receipt, on any instance; the
// same key with another message is refused, and so is a malformed key.
func TestIdempotencyKeyPublishesOnce(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	a, b := startHerald(t, r.heraldYAML()), startHerald(t, r.heraldYAML())
	ws := dial(t, a.ws("/ws?topic=keyed&format=json"))
	keyed := http.Header{"Idempotency-Key": {"9b2f6c1e-3f4a-4c7b-8d0e-1a2b3c4d5e6f"}}

	var receipts []receiptReply
	for _, h := range []*heraldProcess{a, b, a} {
		got := request(t, http.MethodPost, h.Origin+"/notify?topic=keyed", keyed, "msg=once")
		var receipt receiptReply
		if err := json.Unmarshal([]byte(got.body), &receipt); got.status != http.StatusOK || err != nil {
			t.Fatalf("a keyed publish was answered %d %s", got.status, got.body)
		}
		receipts = append(receipts, receipt)
	}
	for _, receipt := range receipts[1:] {
		if receipt.ID != receipts[0].ID {
			t.Fatalf("the same key gave ids %s and %s, want one", receipts[0].ID, receipt.ID)
		}
	}
	end := a.publishToTopic(t, "keyed", "end")
	if copies := readCopies(t, ws, "once", end.ID); len(copies) != 1 {
		t.Fatalf("a message published three times with one key was delivered %d times, want once", len(copies))
	}

	if got := request(t, http.MethodPost, b.Origin+"/notify?topic=keyed", keyed, "msg=another"); got.status != http.StatusUnprocessableEntity || !strings.Contains(got.error, "Idempotency-Key") {
		t.Errorf("the same key with another message: %d %s, want 422 naming Idempotency-Key", got.status, got.body)
	}
	for _, bad := range []string{"has space", strings.Repeat("k", 65), ""} {
		got := request(t, http.MethodPost, a.Origin+"/notify?topic=keyed", http.Header{"Idempotency-Key": {bad}}, "msg=x")
		if got.status != http.StatusBadRequest || !strings.Contains(got.error, "Idempotency-Key") {
			t.Errorf("Idempotency-Key %q: %d %s, want 400 naming Idempotency-Key", bad, got.status, got.body)
		}
	}
	// A key names a publish to one topic: on another, it is another publish.
	if got := b.publishToTopicWith(t, "other", "once", keyed); got.ID == receipts[0].ID {
		t.Errorf("the key on another topic returned the first topic's receipt")
	}
}

// publishToTopicWith POSTs msg to topic with the given headers, and fails
// the test unless it is 200.
func (h *heraldProcess) publishToTopicWith(t *testing.T, topic, msg string, header http.Header) receiptReply {
	t.Helper()
	got := request(t, http.MethodPost, h.Origin+"/notify?topic="+topic, header, "msg="+msg)
	var receipt receiptReply
	if err := json.Unmarshal([]byte(got.body), &receipt); got.status != http.StatusOK || err != nil {
		t.Fatalf("publish to %s: %d %s", topic, got.status, got.body)
	}
	return receipt
}

// TestIdempotencyKeyPublishesOnceWithoutRedis: one instance remembers keys
// too, so that a publisher whose answer never came can retry safely.
func TestIdempotencyKeyPublishesOnceWithoutRedis(t *testing.T) {
	t.Parallel()
	h := startHerald(t, "")
	ws := dial(t, h.ws("/ws?topic=keyed&format=json"))
	keyed := http.Header{"Idempotency-Key": {"retry-me-0001"}}
	first := h.publishToTopicWith(t, "keyed", "once", keyed)
	if again := h.publishToTopicWith(t, "keyed", "once", keyed); again.ID != first.ID {
		t.Fatalf("the same key gave ids %s and %s, want one", first.ID, again.ID)
	}
	end := h.publishToTopic(t, "keyed", "end")
	if copies := readCopies(t, ws, "once", end.ID); len(copies) != 1 {
		t.Fatalf("a message published twice with one key was delivered %d times, want once", len(copies))
	}
	if got := request(t, http.MethodPost, h.Origin+"/notify?topic=keyed", keyed, "msg=another"); got.status != http.StatusUnprocessableEntity || got.code != "idempotency_key_reused" {
		t.Errorf("the same key with another message: %d %s, want 422 idempotency_key_reused", got.status, got.body)
	}
}
