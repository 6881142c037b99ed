package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	gorilla "github.com/gorilla/websocket"

	"herald/app/push/pushtest"
)

// pushSubject is the VAPID contact the push tests configure.
const pushSubject = "mailto:ops@example.com"

// pushYAML turns push on, with fake as the one push service Herald may
// post to, and one worker, so that pushes go out in publish order.
func pushYAML(fake *pushtest.Service, extra string) string {
	return fmt.Sprintf("push:\n  enabled: true\n  subject: %q\n  endpoints: [%q]\n  workers: 1\n%s", pushSubject, fake.URL+"/", extra)
}

// startPushing runs a push service and a Herald that pushes to it, with
// pushYAML's extra YAML, and has the service expect Herald's key.
func startPushing(t *testing.T, extraYAML string) (*pushtest.Service, *heraldProcess) {
	t.Helper()
	fake := pushtest.Start(t)
	h := startHerald(t, pushYAML(fake, extraYAML))
	fake.Expect(pushSubject, h.pushKey(t))
	return fake, h
}

// pushPayload is what a push carries, as the service worker reads it.
type pushPayload struct {
	Topic string `json:"topic"`
	ID    string `json:"id"`
	Text  string `json:"text"`
	Time  string `json:"time"`
	Cut   bool   `json:"cut"`
}

// nextPush waits for the next push, fails the test unless it decrypted
// and its VAPID claims verified, and returns its payload.
func nextPush(t *testing.T, fake *pushtest.Service) (pushtest.Push, pushPayload) {
	t.Helper()
	p := fake.Next(t)
	if p.Err != nil {
		t.Fatalf("push for %s: %v", p.Subscription, p.Err)
	}
	var payload pushPayload
	if err := json.Unmarshal(p.Payload, &payload); err != nil {
		t.Fatalf("push payload %q: %v", p.Payload, err)
	}
	return p, payload
}

// pushKey is the server's VAPID public key, from GET /push/key.
func (h *heraldProcess) pushKey(t *testing.T) string {
	t.Helper()
	var reply struct {
		Key string `json:"key"`
	}
	if code := getJSON(t, h.Origin+"/push/key", &reply); code != http.StatusOK || reply.Key == "" {
		t.Fatalf("GET /push/key: %d %+v", code, reply)
	}
	return reply.Key
}

// pushReply is a push route's answer.
type pushReply struct {
	status int
	// Topic and Endpoint are a registration's; Error and Code a refusal's.
	Topic    string `json:"topic"`
	Endpoint string `json:"endpoint"`
	Error    string `json:"error"`
	Code     string `json:"code"`
}

// pushRequest sends method to /push?topic=topic with body, and any
// headers given as name, value pairs.
func (h *heraldProcess) pushRequest(t *testing.T, method, topic, body string, header ...string) pushReply {
	t.Helper()
	req, err := http.NewRequest(method, h.Origin+"/push?topic="+topic, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	reply := pushReply{status: resp.StatusCode}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &reply); err != nil {
			t.Fatalf("%s /push: %d with a body that is not JSON: %q", method, resp.StatusCode, data)
		}
	}
	return reply
}

// registerPush registers sub for topic and fails the test unless it is
// answered 201 with the topic and endpoint.
func (h *heraldProcess) registerPush(t *testing.T, topic string, sub *pushtest.Subscription) {
	t.Helper()
	reply := h.pushRequest(t, http.MethodPost, topic, sub.JSON())
	if reply.status != http.StatusCreated || reply.Topic != topic || reply.Endpoint != sub.Endpoint {
		t.Fatalf("register for push on %s: %+v", topic, reply)
	}
}

// metric is the value of a metric without labels, as /metrics shows it.
func metric(t *testing.T, h *heraldProcess, name string) float64 {
	t.Helper()
	family, ok := scrape(t, h)[name]
	if !ok || len(family.GetMetric()) != 1 {
		t.Fatalf("no single metric %s", name)
	}
	m := family.GetMetric()[0]
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// A message published to a topic reaches each browser registered for it
// as a push service would take it: encrypted for that browser alone, and
// signed with the server's VAPID key for that push service, from the
// configured contact. The key pair is kept in push.key_file, made 0600.
func TestPushReachesBrowsersEncryptedAndSigned(t *testing.T) {
	t.Parallel()
	fake := pushtest.Start(t)
	keyFile := filepath.Join(t.TempDir(), "vapid.json")
	h := startHerald(t, pushYAML(fake, "  ttl: 1h\n  key_file: "+keyFile+"\n"))
	key := h.pushKey(t)
	fake.Expect(pushSubject, key)
	if info, err := os.Stat(keyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("push.key_file: %v, %v; want a file only its owner may read", info, err)
	}

	phone, laptop, watch := fake.Subscribe(t), fake.Subscribe(t), fake.Subscribe(t)
	h.registerPush(t, "news", phone)
	h.registerPush(t, "news", laptop)
	h.registerPush(t, "sport", watch)
	receipt := h.publishToTopic(t, "news", `Extra "quoted" <b>news</b> 🚀`)

	got := map[string]bool{}
	for range 2 {
		p, payload := nextPush(t, fake)
		got[p.Subscription] = true
		want := pushPayload{Topic: "news", ID: receipt.ID, Text: `Extra "quoted" <b>news</b> 🚀`, Time: payload.Time}
		if payload != want {
			t.Errorf("payload %+v, want %+v", payload, want)
		}
		if _, err := time.Parse(time.RFC3339Nano, payload.Time); err != nil {
			t.Errorf("payload time %q: %v", payload.Time, err)
		}
		if p.TTL != "3600" {
			t.Errorf("TTL %q, want 3600 (push.ttl)", p.TTL)
		}
		if p.Audience != fake.URL || p.Subject != pushSubject || time.Until(p.Expires) <= 0 {
			t.Errorf("VAPID claims aud %q, sub %q, exp %s", p.Audience, p.Subject, p.Expires)
		}
	}
	if !got[phone.ID] || !got[laptop.ID] {
		t.Errorf("pushes went to %v, want the phone and the laptop", got)
	}
	// The one worker takes sport's message once it has counted news's
	// pushes, and then waits for an answer.
	fake.Answer(watch, pushtest.Answer{Hang: true})
	h.publishToTopic(t, "sport", "later")
	if p, _ := nextPush(t, fake); p.Subscription != watch.ID {
		t.Fatalf("a push to %s, want the watch", p.Subscription)
	}
	if sent := metric(t, h, "herald_push_sent_total"); sent != 2 {
		t.Errorf("herald_push_sent_total = %v, want 2", sent)
	}

	// The same key pair after a restart, from the file.
	h.Stop(t)
	again := startHerald(t, pushYAML(fake, "  key_file: "+keyFile+"\n"))
	if got := again.pushKey(t); got != key {
		t.Errorf("after a restart the key is %q, want %q", got, key)
	}
}

// Registering and unregistering through the routes, and every refusal.
func TestPushRegistrationRoutes(t *testing.T) {
	t.Parallel()
	fake, h := startPushing(t, "limits:\n  max_push_subscriptions_per_topic: 2\n  max_push_subscriptions: 3\n")
	if !strings.Contains(h.logs.String(), "push.key_file is empty: the push key pair lasts only until Herald stops") {
		t.Errorf("start-up did not say that the key pair will not outlive the process:\n%s", h.logs)
	}
	sub := fake.Subscribe(t)

	h.registerPush(t, "news", sub)
	h.registerPush(t, "news", sub) // again: the same one, not a second
	if n := metric(t, h, "herald_push_subscriptions"); n != 1 {
		t.Errorf("herald_push_subscriptions = %v after registering one twice, want 1", n)
	}

	withEndpoint := func(endpoint string) string {
		return strings.Replace(sub.JSON(), sub.Endpoint, endpoint, 1)
	}
	for _, tc := range []struct {
		name, topic, body string
		expectStatus      int
		expectCode        string
	}{
		{"givenAnInternalAddress", "news", withEndpoint("http://10.0.0.1/push/x"), 400, "endpoint_not_allowed"},
		{"givenAnotherSchemeForTheService", "news", withEndpoint("https" + strings.TrimPrefix(fake.URL, "http") + "/push/x"), 400, "endpoint_not_allowed"},
		{"givenAnotherNameForTheService", "news", withEndpoint(strings.Replace(fake.URL, "127.0.0.1", "localhost", 1) + "/push/x"), 400, "endpoint_not_allowed"},
		{"givenALoginInTheURL", "news", withEndpoint("http://user@" + strings.TrimPrefix(fake.URL, "http://") + "/push/x"), 400, ""},
		{"givenMalformedJSON", "news", `{"endpoint": `, 400, ""},
		{"givenNoEndpoint", "news", `{"keys": {"p256dh": "` + sub.P256dh + `", "auth": "` + sub.Auth + `"}}`, 400, ""},
		{"givenAKeyOffTheCurve", "news", strings.Replace(sub.JSON(), sub.P256dh, "B"+strings.Repeat("A", 86), 1), 400, ""},
		{"givenAShortAuthSecret", "news", strings.Replace(sub.JSON(), sub.Auth, "AAAA", 1), 400, ""},
		{"givenABadTopic", "no%20spaces", sub.JSON(), 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply := h.pushRequest(t, http.MethodPost, tc.topic, tc.body)
			if reply.status != tc.expectStatus || reply.Code != tc.expectCode || reply.Error == "" {
				t.Errorf("got %d %q %q, want %d %q with a reason", reply.status, reply.Code, reply.Error, tc.expectStatus, tc.expectCode)
			}
		})
	}

	// The limits: two per topic, three in all.
	h.registerPush(t, "news", fake.Subscribe(t))
	if reply := h.pushRequest(t, http.MethodPost, "news", fake.Subscribe(t).JSON()); reply.status != http.StatusTooManyRequests || reply.Code != "max_push_subscriptions_per_topic" {
		t.Errorf("a third on one topic: %+v, want 429 max_push_subscriptions_per_topic", reply)
	}
	h.registerPush(t, "sport", fake.Subscribe(t))
	if reply := h.pushRequest(t, http.MethodPost, "weather", fake.Subscribe(t).JSON()); reply.status != http.StatusServiceUnavailable || reply.Code != "max_push_subscriptions" {
		t.Errorf("a fourth in all: %+v, want 503 max_push_subscriptions", reply)
	}

	// Unregistering, twice: both 204, and room again.
	unregister := `{"endpoint": "` + sub.Endpoint + `"}`
	for range 2 {
		if reply := h.pushRequest(t, http.MethodDelete, "news", unregister); reply.status != http.StatusNoContent {
			t.Errorf("unregister: %+v, want 204", reply)
		}
	}
	if reply := h.pushRequest(t, http.MethodDelete, "news", `{"endpoint": 1}`); reply.status != http.StatusBadRequest {
		t.Errorf("unregister without an endpoint: %+v, want 400", reply)
	}
	if n := metric(t, h, "herald_push_subscriptions"); n != 2 {
		t.Errorf("herald_push_subscriptions = %v, want 2", n)
	}
	// A message to news now reaches only the one left there; sport's
	// message, pushed after it by the one worker, shows it is done.
	h.publishToTopic(t, "news", "first")
	h.publishToTopic(t, "sport", "second")
	for _, want := range []string{"first", "second"} {
		p, payload := nextPush(t, fake)
		if payload.Text != want || p.Subscription == sub.ID {
			t.Errorf("push %q to %s, want %q, never to the unregistered one", payload.Text, p.Subscription, want)
		}
	}
}

// Registering needs read access to the topic, through the same
// authorizer as subscribing, and push off says so in a way the page
// can tell.
func TestPushRoutesNeedReadAccessAndSayWhenPushIsOff(t *testing.T) {
	t.Parallel()
	fake := pushtest.Start(t)
	yaml := pushYAML(fake, "security:\n  anonymous: deny\n  tokens:\n    - {name: reader, secret: r3ader-r3ader, read: [news]}\n")
	h := startHerald(t, yaml)
	sub := fake.Subscribe(t)
	if reply := h.pushRequest(t, http.MethodPost, "news", sub.JSON()); reply.status != http.StatusUnauthorized || reply.Code != "token_required" {
		t.Errorf("without a token: %+v, want 401 token_required", reply)
	}
	if reply := h.pushRequest(t, http.MethodPost, "sport", sub.JSON(), "Authorization", "Bearer r3ader-r3ader"); reply.status != http.StatusForbidden || reply.Code != "insufficient_scope" {
		t.Errorf("another topic: %+v, want 403 insufficient_scope", reply)
	}
	if reply := h.pushRequest(t, http.MethodDelete, "news", `{"endpoint": "`+sub.Endpoint+`"}`); reply.status != http.StatusUnauthorized {
		t.Errorf("unregister without a token: %+v, want 401", reply)
	}
	if reply := h.pushRequest(t, http.MethodPost, "news", sub.JSON(), "Authorization", "Bearer r3ader-r3ader"); reply.status != http.StatusCreated {
		t.Errorf("with the reader's token: %+v, want 201", reply)
	}
	if reply := h.pushRequest(t, http.MethodPost, "news", sub.JSON(), "Origin", "https://evil.example"); reply.status != http.StatusForbidden {
		t.Errorf("from another site's page: %+v, want 403", reply)
	}

	off := startHerald(t, "")
	var reply pushReply
	if code := getJSON(t, off.Origin+"/push/key", &reply); code != http.StatusNotFound || reply.Code != "push_disabled" || reply.Error == "" {
		t.Errorf("GET /push/key with push off: %d %+v, want 404 push_disabled", code, reply)
	}
	if reply := off.pushRequest(t, http.MethodPost, "news", sub.JSON()); reply.status != http.StatusNotFound || reply.Code != "push_disabled" {
		t.Errorf("register with push off: %+v, want 404 push_disabled", reply)
	}

	moved := startHerald(t, "paths:\n  push: /alerts\n")
	for path, code := range map[string]string{"/alerts/key": "push_disabled", "/push/key": ""} {
		var reply pushReply
		if status := getJSON(t, moved.Origin+path, &reply); status != http.StatusNotFound || reply.Code != code {
			t.Errorf("GET %s with paths.push /alerts: %d %+v, want 404 with code %q", path, status, reply, code)
		}
	}
}

// A push service that answers 410 (or 404) says the subscription is gone
// for good: Herald forgets it, and counts it.
func TestPushGoneSubscriptionIsRemoved(t *testing.T) {
	t.Parallel()
	fake, h := startPushing(t, "")
	gone, kept := fake.Subscribe(t), fake.Subscribe(t)
	h.registerPush(t, "news", gone)
	fake.Answer(gone, pushtest.Answer{Status: http.StatusGone})
	h.registerPush(t, "sport", kept)

	h.publishToTopic(t, "news", "one")
	if p, _ := nextPush(t, fake); p.Subscription != gone.ID {
		t.Fatalf("first push went to %s", p.Subscription)
	}
	// The one worker removes it before it takes sport's message.
	h.publishToTopic(t, "sport", "two")
	nextPush(t, fake)
	if n := metric(t, h, "herald_push_subscriptions"); n != 1 {
		t.Errorf("herald_push_subscriptions = %v after a 410, want 1", n)
	}
	if n := metric(t, h, "herald_push_removed_total"); n != 1 {
		t.Errorf("herald_push_removed_total = %v, want 1", n)
	}
	h.publishToTopic(t, "news", "three")
	h.publishToTopic(t, "sport", "four")
	if p, payload := nextPush(t, fake); p.Subscription != kept.ID || payload.Text != "four" {
		t.Errorf("after the 410, %q went to %s, want only four to the kept one", payload.Text, p.Subscription)
	}
	if !strings.Contains(h.logs.String(), "push subscription gone") {
		t.Errorf("the removal was not logged:\n%s", h.logs)
	}
}

// With history.file, the key pair and the subscriptions are in the file:
// after a restart the browsers' subscriptions still work.
func TestPushKeysAndSubscriptionsSurviveARestartWithAHistoryFile(t *testing.T) {
	t.Parallel()
	fake := pushtest.Start(t)
	yaml := pushYAML(fake, "history:\n  file: "+filepath.Join(t.TempDir(), "history.db")+"\n")
	h := startHerald(t, yaml)
	key := h.pushKey(t)
	fake.Expect(pushSubject, key)
	sub := fake.Subscribe(t)
	h.registerPush(t, "news", sub)
	if err := h.Stop(t); err != nil {
		t.Fatal(err)
	}

	again := startHerald(t, yaml)
	if got := again.pushKey(t); got != key {
		t.Fatalf("after a restart the key is %q, want %q", got, key)
	}
	receipt := again.publishToTopic(t, "news", "after the restart")
	if p, payload := nextPush(t, fake); p.Subscription != sub.ID || payload.ID != receipt.ID {
		t.Errorf("push %+v to %s, want message %s to the subscription made before the restart", payload, p.Subscription, receipt.ID)
	}
}

// Two instances over one Redis use one key pair and one set of
// subscriptions, and each message is pushed once, by the instance that
// accepted it, though every instance's hub gets it.
func TestPushTwoInstancesOverRedisShareKeysAndSubscriptionsAndPushOnce(t *testing.T) {
	t.Parallel()
	r := startRedis(t)
	fake := pushtest.Start(t)
	yaml := pushYAML(fake, r.heraldYAML())
	a, b := startHerald(t, yaml), startHerald(t, yaml)
	key := a.pushKey(t)
	if got := b.pushKey(t); got != key {
		t.Fatalf("the instances' keys differ: %q and %q", key, got)
	}
	fake.Expect(pushSubject, key)
	sub := fake.Subscribe(t)
	a.registerPush(t, "news", sub)
	watchers := []*gorilla.Conn{dial(t, a.ws("/ws?topic=news")), dial(t, b.ws("/ws?topic=news"))}

	// Each message reaches both hubs before the next is published. An
	// instance that pushed what another accepted would queue it before
	// its own next message, and with one worker push it first: so once
	// each instance's last message has been pushed, every push of the
	// messages before it has arrived too.
	order := []*heraldProcess{b, a, b, a, b}
	for i, h := range order {
		text := fmt.Sprintf("message %d", i)
		h.publishToTopic(t, "news", text)
		for _, watcher := range watchers {
			if got := readText(t, watcher); got != text {
				t.Fatalf("a subscriber got %q, want %q", got, text)
			}
		}
	}
	pushed := map[string]int{}
	for pushed["message 3"] == 0 || pushed["message 4"] == 0 {
		p, payload := nextPush(t, fake)
		if p.Subscription != sub.ID {
			t.Fatalf("a push to %s", p.Subscription)
		}
		pushed[payload.Text]++
	}
	for i := range order {
		if text := fmt.Sprintf("message %d", i); pushed[text] != 1 {
			t.Errorf("%q was pushed %d times, want once: %v", text, pushed[text], pushed)
		}
	}
}

// A push service that never answers delays no publish: the publish
// returns, and the push waits in the queue. Once the queue is full, a
// message that cannot be queued is counted and logged, never lost
// silently.
func TestPushServiceThatNeverAnswersDelaysNoPublish(t *testing.T) {
	t.Parallel()
	fake, h := startPushing(t, "  queue: 1\n  timeout: 1h\n")
	h.registerPush(t, "news", fake.Subscribe(t))
	fake.Hang()

	h.publishToTopic(t, "news", "taken by the worker")
	fake.Next(t) // the worker waits for an answer that never comes
	h.publishToTopic(t, "news", "queued")
	if depth := metric(t, h, "herald_push_queue_depth"); depth != 1 {
		t.Errorf("herald_push_queue_depth = %v, want 1", depth)
	}
	dropped := h.publishToTopic(t, "news", "no room")
	if n := metric(t, h, "herald_push_dropped_total"); n != 1 {
		t.Errorf("herald_push_dropped_total = %v, want 1", n)
	}
	logged := false
	for _, line := range strings.Split(h.logs.String(), "\n") {
		logged = logged || (strings.Contains(line, "push queue is full") && strings.Contains(line, "id="+dropped.ID))
	}
	if !logged {
		t.Errorf("the dropped push was not logged with its id:\n%s", h.logs)
	}
}

// A message too long for a push (4096 bytes, encrypted) arrives cut, with
// a marker and "cut": true, and the whole push fits the limit.
func TestPushLongMessageArrivesCut(t *testing.T) {
	t.Parallel()
	fake, h := startPushing(t, "")
	h.registerPush(t, "news", fake.Subscribe(t))

	text := strings.Repeat(`é"<`, 2000) // escapes in JSON take more than their bytes
	h.publishToTopic(t, "news", text)
	p, payload := nextPush(t, fake)
	if p.BodyBytes > 4096 {
		t.Errorf("the push is %d bytes, over 4096", p.BodyBytes)
	}
	cut, marked := strings.CutSuffix(payload.Text, "…")
	if !payload.Cut || !marked || !strings.HasPrefix(text, cut) || !utf8.ValidString(cut) || len(cut) < 1000 {
		t.Errorf("payload cut %v, text of %d bytes ending %q; want cut: true and a long prefix of the message with the marker",
			payload.Cut, len(payload.Text), payload.Text[max(0, len(payload.Text)-12):])
	}

	h.publishToTopic(t, "news", "short")
	if _, payload := nextPush(t, fake); payload.Cut || payload.Text != "short" {
		t.Errorf("a short message arrived as %+v", payload)
	}
}

// check-config says where push keeps its key pair, and plainly when it
// keeps it nowhere that outlives the process.
func TestCheckConfigSaysWherePushKeepsItsKeyPair(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	on := "push:\n  enabled: true\n  subject: mailto:ops@example.com\n"
	for _, tc := range []struct {
		name, givenYAML, expectLine string
	}{
		{"givenMemoryWithoutAKeyFile", on, "# push.key_file is empty: the push key pair lasts only until Herald stops, and browsers registered for push must subscribe again after every restart; set push.key_file."},
		{"givenAKeyFile", on + "  key_file: /var/lib/herald/vapid.json\n", "# Web Push keeps its key pair in /var/lib/herald/vapid.json, and its subscriptions in memory, lost at a restart."},
		{"givenAHistoryFile", on + "history:\n  file: /var/lib/herald/history.db\n", "# Web Push keeps its key pair and subscriptions in the history file /var/lib/herald/history.db."},
		{"givenRedis", on + "broker: redis\n", "# Web Push keeps its key pair and subscriptions in Redis, for every instance."},
		{"givenPushOff", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".yaml")
			if err := os.WriteFile(path, []byte(tc.givenYAML), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout strings.Builder
			if err := run(t.Context(), []string{"check-config", path}, func(string) string { return "" }, &stdout, io.Discard); err != nil {
				t.Fatal(err)
			}
			var said []string
			for _, line := range strings.Split(stdout.String(), "\n") {
				if strings.HasPrefix(line, "# Web Push") || strings.HasPrefix(line, "# push.") {
					said = append(said, line)
				}
			}
			if tc.expectLine == "" && len(said) > 0 || tc.expectLine != "" && (len(said) != 1 || said[0] != tc.expectLine) {
				t.Errorf("check-config said %q, want %q", said, tc.expectLine)
			}
		})
	}
}
