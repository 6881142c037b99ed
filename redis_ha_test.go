package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"herald/app/redistest"
)

// clusterYAML is the config of an instance over the cluster c.
func clusterYAML(c *redistest.Cluster) string {
	return "broker: redis\nredis:\n  addrs: [" + strings.Join(c.Addrs(), ", ") + "]\n  timeout: 2s\n"
}

// sentinelYAML is the config of an instance over the master that s's
// Sentinel watches, with the default redis.min_replicas.
func sentinelYAML(s *redistest.Sentinel) string {
	return "broker: redis\nredis:\n  addrs: [" + strings.Join(s.Addrs(), ", ") + "]\n  master_name: " +
		redistest.SentinelMaster + "\n  timeout: 2s\n"
}

// readyReply is /readyz's answer.
type readyReply struct {
	status int
	Status string `json:"status"`
	Broker struct {
		Mode      string `json:"mode"`
		Master    string `json:"master"`
		Replicas  *int   `json:"replicas"`
		Masters   *int   `json:"masters"`
		Answering *int   `json:"answering"`
	} `json:"broker"`
}

func readiness(t *testing.T, h *heraldProcess) readyReply {
	t.Helper()
	got := request(t, http.MethodGet, h.Origin+"/readyz", nil, "")
	reply := readyReply{status: got.status}
	if err := json.Unmarshal([]byte(got.body), &reply); err != nil {
		t.Fatalf("/readyz answered %d %q: %v", got.status, got.body, err)
	}
	return reply
}

// TestClusterOfThreeMastersCarriesTopicsBetweenInstances: two instances
// over a Redis Cluster of three masters, and 24 topics. Each topic's
// messages, published on one instance, arrive in order on the other; a
// subscriber resumes on either; the topics' keys spread over the masters,
// each topic's in one slot; presence counts both instances; and /readyz
// says how many masters answer.
func TestClusterOfThreeMastersCarriesTopicsBetweenInstances(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	a, b := startHerald(t, clusterYAML(c)+unlimitedPublishing), startHerald(t, clusterYAML(c)+unlimitedPublishing)

	var topics []string
	subscribers := map[string]*gorilla.Conn{}
	for i := range 24 {
		topic := fmt.Sprintf("topic-%02d", i)
		topics = append(topics, topic)
		subscribers[topic] = dial(t, b.ws("/ws?topic="+topic+"&format=json"))
	}
	watcher := dial(t, a.ws("/ws?topic=topic-00&format=json&presence=1"))
	awaitPresence := func(want int) {
		t.Helper()
		for {
			if f := readJSONFrame(t, watcher); f.Type == "presence" && f.Subscribers == want {
				return
			}
		}
	}
	awaitPresence(2) // the watcher here, and the subscriber on the other instance

	receipts := map[string][]receiptReply{}
	for round := range 5 {
		for _, topic := range topics {
			receipts[topic] = append(receipts[topic], a.publishToTopic(t, topic, fmt.Sprintf("%s m%d", topic, round)))
		}
	}
	for _, topic := range topics {
		for round, sent := range receipts[topic] {
			if f := readJSONFrame(t, subscribers[topic]); f.ID != sent.ID || f.Msg != fmt.Sprintf("%s m%d", topic, round) {
				t.Fatalf("on the other instance, %s's message %d is %+v, want %s %q", topic, round, f, sent.ID, fmt.Sprintf("%s m%d", topic, round))
			}
		}
	}

	// Resume on either instance, with Last-Event-ID and with since=.
	stream := openEvents(t, a.Origin+"/events?topic=topic-07", receipts["topic-07"][1].ID)
	resumed := dial(t, b.ws("/ws?topic=topic-13&format=json&since="+receipts["topic-13"][2].ID))
	for round := 2; round < 5; round++ {
		if e := stream.next(t); e.ID != receipts["topic-07"][round].ID {
			t.Errorf("resumed with Last-Event-ID: %+v, want %s", e, receipts["topic-07"][round].ID)
		}
		if round > 2 {
			if f := readJSONFrame(t, resumed); f.ID != receipts["topic-13"][round].ID {
				t.Errorf("resumed with since=: %+v, want %s", f, receipts["topic-13"][round].ID)
			}
		}
	}

	// Each topic's keys share a slot; the topics spread over the masters.
	masters := map[string]int{}
	cluster := c.Client(t)
	for _, topic := range topics {
		master := c.MasterOf(t, "herald:topic:{"+topic+"}:seq")
		for _, key := range []string{"start", "log"} {
			if c.MasterOf(t, "herald:topic:{"+topic+"}:"+key) != master {
				t.Errorf("%s's %s is not on the master of its counter", topic, key)
			}
		}
		if n, err := cluster.Exists(context.Background(), "herald:topic:{"+topic+"}:seq", "herald:topic:{"+topic+"}:log").Result(); err != nil || n != 2 {
			t.Errorf("%s's counter and stream: %d of 2 exist (%v)", topic, n, err)
		}
		masters[master]++
	}
	if len(masters) < 2 {
		t.Errorf("the topics' keys are on %d master(s), want them spread: %v", len(masters), masters)
	}
	t.Logf("topics per master: %v", masters)

	subscribers["topic-00"].Close()
	awaitPresence(1)

	if ready := readiness(t, a); ready.status != http.StatusOK || ready.Broker.Mode != "cluster" ||
		ready.Broker.Masters == nil || *ready.Broker.Masters != 3 || ready.Broker.Answering == nil || *ready.Broker.Answering != 3 {
		t.Errorf("/readyz answered %d %+v, want 200 and 3 of 3 masters answering", ready.status, ready.Broker)
	}
}

// publication is one publish and what Herald answered.
type publication struct {
	msg    string
	status int
	id     string // the receipt's, for a 200
}

// publishAttempt POSTs msg to topic on origin and returns the answer,
// without failing the test: publishers run beside it.
func publishAttempt(origin, topic, msg string) (publication, error) {
	resp, err := http.PostForm(origin+"/notify", url.Values{"topic": {topic}, "msg": {msg}})
	if err != nil {
		return publication{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return publication{}, err
	}
	p := publication{msg: msg, status: resp.StatusCode}
	if p.status == http.StatusOK {
		var receipt receiptReply
		if err := json.Unmarshal(body, &receipt); err != nil {
			return p, fmt.Errorf("receipt %q: %w", body, err)
		}
		p.id = receipt.ID
	}
	return p, nil
}

// steadyPublisher publishes "name-1", "name-2", ... to topic on h, one
// after the other at a steady pace, until stopped, and keeps every answer.
type steadyPublisher struct {
	mu     sync.Mutex
	done   []publication
	oks    int
	err    error
	stop   chan struct{}
	ended  chan struct{}
	okSeen chan struct{} // told at every 200
}

func startPublisher(h *heraldProcess, topic, name string) *steadyPublisher {
	p := &steadyPublisher{stop: make(chan struct{}), ended: make(chan struct{}), okSeen: make(chan struct{}, 1)}
	go func() {
		defer close(p.ended)
		// A pace, not a wait for anything: a publisher that never pauses
		// would fill the history with refusals' retries' worth of load.
		pace := time.NewTicker(10 * time.Millisecond)
		defer pace.Stop()
		for n := 1; ; n++ {
			select {
			case <-p.stop:
				return
			case <-pace.C:
			}
			got, err := publishAttempt(h.Origin, topic, fmt.Sprintf("%s-%d", name, n))
			p.mu.Lock()
			if err != nil {
				p.err = err
				p.mu.Unlock()
				return
			}
			p.done = append(p.done, got)
			if got.status == http.StatusOK {
				p.oks++
				select {
				case p.okSeen <- struct{}{}:
				default:
				}
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// awaitOKs waits until p has had n more 200s than it had when asked.
func (p *steadyPublisher) awaitOKs(t *testing.T, n int) {
	t.Helper()
	p.mu.Lock()
	want := p.oks + n
	p.mu.Unlock()
	for {
		p.mu.Lock()
		oks, err := p.oks, p.err
		p.mu.Unlock()
		if err != nil {
			t.Fatalf("publisher: %v", err)
		}
		if oks >= want {
			return
		}
		select {
		case <-p.okSeen:
		case <-time.After(hangGuard):
			t.Fatalf("a publisher had %d of %d acknowledged publishes", oks, want)
		}
	}
}

func (p *steadyPublisher) halt(t *testing.T) []publication {
	t.Helper()
	close(p.stop)
	<-p.ended
	if p.err != nil {
		t.Fatalf("publisher: %v", p.err)
	}
	return p.done
}

// checkFollowed fails unless frames, a subscriber's messages, hold every
// acknowledged publish of each publisher once, with its receipt's id, in
// publish order; no refused one; unknown outcomes at most once; ids
// rising; and no lost notice.
func checkFollowed(t *testing.T, name string, frames []jsonFrame, publishers ...[]publication) {
	t.Helper()
	answers := map[string]publication{}
	for _, done := range publishers {
		for _, p := range done {
			answers[p.msg] = p
		}
	}
	seen := map[string]int{}
	var lastID uint64
	positions := make([]int, len(publishers))
	for _, f := range frames {
		switch f.Type {
		case "broker":
			continue
		case "lost":
			t.Errorf("%s: told of lost messages: %+v", name, f)
			continue
		}
		if id := f.id(t); id <= lastID {
			t.Errorf("%s: id %d came after %d", name, id, lastID)
		} else {
			lastID = id
		}
		seen[f.Msg]++
		p, ok := answers[f.Msg]
		switch {
		case !ok:
		case p.status == http.StatusOK && p.id != f.ID:
			t.Errorf("%s: %q arrived as %s, its receipt said %s", name, f.Msg, f.ID, p.id)
		case p.status == http.StatusServiceUnavailable:
			t.Errorf("%s: %q was refused (503) but delivered", name, f.Msg)
		}
		for i, done := range publishers {
			// The next acknowledged publish of this publisher.
			for positions[i] < len(done) && done[positions[i]].status != http.StatusOK {
				positions[i]++
			}
			if positions[i] < len(done) && done[positions[i]].msg == f.Msg {
				positions[i]++
			}
		}
	}
	for i, done := range publishers {
		for ; positions[i] < len(done); positions[i]++ {
			if p := done[positions[i]]; p.status == http.StatusOK {
				t.Errorf("%s: acknowledged %q is missing or out of order", name, p.msg)
				break
			}
		}
	}
	for msg, n := range seen {
		if n > 1 {
			t.Errorf("%s: %q arrived %d times", name, msg, n)
		}
	}
}

// readUntil reads a JSON subscriber's frames up to and with the message
// msg.
func readUntil(t *testing.T, ws *gorilla.Conn, msg string) []jsonFrame {
	t.Helper()
	var frames []jsonFrame
	for {
		f := readJSONFrame(t, ws)
		frames = append(frames, f)
		if f.Type == "" && f.Msg == msg {
			return frames
		}
	}
}

// TestSentinelFailoverLosesNothingAcknowledged: two instances publish
// without a pause over a master that a Sentinel watches, and the master
// is killed (kill -9) mid-stream. /readyz answers 503 until Sentinel has
// promoted the replica, and then names it. Once the old master is back as
// a replica (a publish waits for one), publishing succeeds again. A
// subscriber that followed all along, and one that resumes afterwards with
// since=, have every acknowledged message once, in order, with its id,
// none that was refused, and the unknown outcomes at most once.
func TestSentinelFailoverLosesNothingAcknowledged(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)
	config := sentinelYAML(s) + unlimitedPublishing + "history:\n  size: 100000\n"
	a, b := startHerald(t, config), startHerald(t, config)
	if ready := readiness(t, a); ready.status != http.StatusOK || ready.Broker.Mode != "sentinel" ||
		ready.Broker.Master != s.Master.Addr() || ready.Broker.Replicas == nil || *ready.Broker.Replicas != 1 {
		t.Fatalf("/readyz answered %d %+v, want 200 naming the master %s with 1 replica", ready.status, ready.Broker, s.Master.Addr())
	}
	live := dial(t, b.ws("/ws?topic=failover&format=json"))
	start := a.publishToTopic(t, "failover", "start")
	if f := readJSONFrame(t, live); f.Msg != "start" {
		t.Fatalf("got %+v, want start", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	switched := s.Client(t).Subscribe(ctx, "+switch-master")
	defer switched.Close()
	if _, err := switched.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	onA, onB := startPublisher(a, "failover", "a"), startPublisher(b, "failover", "b")
	onA.awaitOKs(t, 10)
	onB.awaitOKs(t, 10)
	// The Sentinel is made slow to give up on the master, so that /readyz
	// meets a dead master that the Sentinel still names; then it is let
	// go on, and fails over.
	sentinel := s.Client(t)
	if err := sentinel.Set(ctx, redistest.SentinelMaster, "down-after-milliseconds", "600000").Err(); err != nil {
		t.Fatal(err)
	}
	s.Master.Kill(t)
	if ready := readiness(t, a); ready.status != http.StatusServiceUnavailable || ready.Broker.Master != s.Master.Addr() {
		t.Errorf("/readyz with the master killed answered %d %+v, want 503 naming %s", ready.status, ready.Broker, s.Master.Addr())
	}
	if err := sentinel.Set(ctx, redistest.SentinelMaster, "down-after-milliseconds", "1000").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := switched.ReceiveMessage(ctx); err != nil {
		t.Fatalf("the Sentinel did not fail over: %v", err)
	}
	if ready := readiness(t, a); ready.status != http.StatusOK || ready.Broker.Master != s.Replica.Addr() {
		t.Errorf("/readyz after the failover answered %d %+v, want 200 naming %s", ready.status, ready.Broker, s.Replica.Addr())
	}
	s.RejoinOldMaster(t)
	onA.awaitOKs(t, 10)
	onB.awaitOKs(t, 10)
	fromA, fromB := onA.halt(t), onB.halt(t)
	a.publishToTopic(t, "failover", "end")

	checkFollowed(t, "the subscriber that followed all along", readUntil(t, live, "end"), fromA, fromB)
	resumed := dial(t, a.ws("/ws?topic=failover&format=json&since="+start.ID))
	checkFollowed(t, "a subscriber resuming afterwards", readUntil(t, resumed, "end"), fromA, fromB)
	counts := map[int]int{}
	for _, p := range append(fromA, fromB...) {
		counts[p.status]++
	}
	t.Logf("answers to the publishes: %v", counts)
}

// TestSentinelWithPasswordsOverTLS: the master, its replica and the
// Sentinel speak TLS alone, with a certificate authority of their own, and
// ask for passwords, the data nodes' from the environment and the
// Sentinel's from a file. Herald finds the master and carries messages.
func TestSentinelWithPasswordsOverTLS(t *testing.T) {
	t.Parallel()
	certificates := redistest.NewTLS(t)
	s := redistest.StartSentinelWith(t, redistest.SentinelOptions{
		Password: "data-s3cret", SentinelPassword: "sentinel-s3cret", TLS: certificates,
	})
	passwordFile := filepath.Join(t.TempDir(), "sentinel-password")
	if err := os.WriteFile(passwordFile, []byte("sentinel-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := sentinelYAML(s) + "  password: env:REDIS_PASSWORD\n  sentinel_password: file:" + passwordFile +
		"\n  tls: true\n  tls_ca_file: " + certificates.CAFile + "\n"
	h := startHeraldEnv(t, "host: 127.0.0.1\nport: 0\n"+config, map[string]string{"REDIS_PASSWORD": "data-s3cret"})
	if ready := readiness(t, h); ready.status != http.StatusOK || ready.Broker.Master != s.Master.Addr() {
		t.Fatalf("/readyz answered %d %+v, want 200 naming %s", ready.status, ready.Broker, s.Master.Addr())
	}
	ws := dial(t, h.ws("/ws?topic=secure&format=json"))
	sent := h.publishToTopic(t, "secure", "over tls")
	if f := readJSONFrame(t, ws); f.ID != sent.ID || f.Msg != "over tls" {
		t.Fatalf("got %+v, want %s over tls", f, sent.ID)
	}
}
