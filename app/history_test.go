package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand, so history can expire without
// waiting.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newHistoryHub(t *testing.T, size int, ttl time.Duration, clock *fakeClock, store Store) *Hub {
	t.Helper()
	opts := HubOptions{MaxLagBytes: 1 << 20, MaxMessageBytes: 1 << 10, HistorySize: size, HistoryTTL: ttl, MaxTopics: 100, Store: store}
	if clock != nil {
		opts.Now = clock.Now
	}
	hub, err := NewHub(opts)
	if err != nil {
		t.Fatal(err)
	}
	return hub
}

func publishN(t *testing.T, hub *Hub, topic string, n int) []*Message {
	t.Helper()
	out := make([]*Message, 0, n)
	for i := range n {
		m, _, err := hub.Publish(topic, fmt.Sprintf("%s-%d", topic, i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func resume(t *testing.T, hub *Hub, topic string, since uint64) *Subscriber {
	t.Helper()
	s, err := hub.Subscribe(SubscribeRequest{Topic: topic, Label: t.Name(), Resume: true, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ids(ms []*Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func TestResumeReplaysWhatCameAfterSince(t *testing.T) {
	t.Parallel()
	hub := newHistoryHub(t, 10, time.Hour, nil, nil)
	sent := publishN(t, hub, "news", 5)
	publishN(t, hub, "other", 3)

	tests := []struct {
		name          string
		whenSince     uint64
		expectBacklog []*Message
	}{
		{"whenSinceZero_expectEverythingKept", 0, sent},
		{"whenSinceSecond_expectTheRest", sent[1].ID, sent[2:]},
		{"whenSinceLast_expectNothing", sent[4].ID, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := resume(t, hub, "news", tc.whenSince)
			if got, want := ids(takeAll(s)), ids(tc.expectBacklog); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("backlog %v, want %v", got, want)
			}
			if s.Gap() != nil {
				t.Errorf("gap %+v, want none", s.Gap())
			}
		})
	}
	if got := takeAll(subscribe(t, hub, "news")); len(got) != 0 {
		t.Errorf("a subscriber that did not resume got a backlog of %d", len(got))
	}
}

func TestResumeReportsWhatHistoryNoLongerHolds(t *testing.T) {
	t.Parallel()
	hub := newHistoryHub(t, 3, time.Hour, nil, nil)
	sent := publishN(t, hub, "news", 10)

	s := resume(t, hub, "news", sent[0].ID)
	if got, want := ids(takeAll(s)), ids(sent[7:]); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("backlog %v, want the newest three %v", got, want)
	}
	// Messages 2 to 7 (six of them) are gone.
	if gap := s.Gap(); gap == nil || !gap.Known || gap.Missing != 6 || gap.Since != sent[0].ID {
		t.Errorf("gap %+v, want 6 known missing after %d", gap, sent[0].ID)
	}

	// An id this history never gave out, as after a restart without a
	// store: everything kept is replayed, and the loss is unknown.
	before := resume(t, hub, "news", sent[0].ID-1000)
	if got := ids(takeAll(before)); fmt.Sprint(got) != fmt.Sprint(ids(sent[7:])) {
		t.Errorf("backlog %v for an id before the sequence", got)
	}
	if gap := before.Gap(); gap == nil || gap.Known {
		t.Errorf("gap %+v for an id before the sequence, want an unknown count", gap)
	}
	future := resume(t, hub, "news", sent[9].ID+1)
	if gap, backlog := future.Gap(), takeAll(future); gap == nil || gap.Known || len(backlog) != 3 {
		t.Errorf("an id past the last one: gap %+v backlog %d, want unknown gap and all 3 kept", gap, len(backlog))
	}
}

func TestNewTopicsStartAboveAnyEarlierRunsIDs(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	first := newHistoryHub(t, 10, time.Hour, clock, nil)
	old := publishN(t, first, "news", 3)

	// A restart without a store, a moment later: a new hub, a new sequence.
	clock.Advance(time.Second)
	second := newHistoryHub(t, 10, time.Hour, clock, nil)
	fresh := publishN(t, second, "news", 2)
	if fresh[0].ID <= old[2].ID {
		t.Fatalf("after a restart the first id %d is not above the last id %d of the run before", fresh[0].ID, old[2].ID)
	}
	// A client of the old run resumes: it gets all that the new run has.
	s := resume(t, second, "news", old[2].ID)
	if got := ids(takeAll(s)); fmt.Sprint(got) != fmt.Sprint(ids(fresh)) {
		t.Errorf("backlog %v, want %v", got, ids(fresh))
	}
	if gap := s.Gap(); gap == nil || gap.Known {
		t.Errorf("gap %+v, want an unknown count: the old run's tail is gone", gap)
	}
}

func TestHistoryExpiresAndSweepForgetsIdleTopics(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	hub := newHistoryHub(t, 10, time.Minute, clock, nil)
	old := publishN(t, hub, "news", 2)
	publishN(t, hub, "idle", 1)
	clock.Advance(30 * time.Second)
	recent := publishN(t, hub, "news", 1)
	clock.Advance(45 * time.Second) // all but recent are past the TTL

	s := resume(t, hub, "news", old[0].ID)
	if got := ids(takeAll(s)); fmt.Sprint(got) != fmt.Sprint(ids(recent)) {
		t.Errorf("backlog %v, want only the unexpired %v", got, ids(recent))
	}
	if gap := s.Gap(); gap == nil || !gap.Known || gap.Missing != 1 {
		t.Errorf("gap %+v, want 1 known missing", gap)
	}
	s.Close()

	if err := hub.Sweep(); err != nil {
		t.Fatal(err)
	}
	if n := hub.Stats().Topics; n != 1 {
		t.Errorf("after the sweep the hub holds %d topics, want 1: idle's history expired and nobody listens", n)
	}
	clock.Advance(time.Minute)
	if err := hub.Sweep(); err != nil {
		t.Fatal(err)
	}
	if n := hub.Stats().Topics; n != 0 {
		t.Errorf("after everything expired the hub holds %d topics, want 0", n)
	}
	// A forgotten topic starts a new sequence, still above its old ids.
	again := publishN(t, hub, "news", 1)
	if again[0].ID <= recent[0].ID {
		t.Errorf("id %d after the topic was forgotten is not above %d", again[0].ID, recent[0].ID)
	}
}

func TestTopicsAreBoundedButExistingOnesStayOpen(t *testing.T) {
	t.Parallel()
	hub, err := NewHub(HubOptions{MaxLagBytes: 1 << 20, MaxMessageBytes: 64, HistorySize: 4, HistoryTTL: time.Hour, MaxTopics: 2})
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, hub, "a", 1)
	subscribe(t, hub, "b")
	if _, _, err := hub.Publish("c", "x"); !errors.Is(err, ErrTooManyTopics) {
		t.Errorf("publish to a third topic: %v, want ErrTooManyTopics", err)
	}
	if _, err := hub.Subscribe(SubscribeRequest{Topic: "c"}); !errors.Is(err, ErrTooManyTopics) {
		t.Errorf("subscribe to a third topic: %v, want ErrTooManyTopics", err)
	}
	if _, _, err := hub.Publish("b", "still fine"); err != nil {
		t.Errorf("publish to an existing topic at the limit: %v", err)
	}
}

func TestTopicNames(t *testing.T) {
	t.Parallel()
	for _, good := range []string{"default", "a", "news.eu-1_X", strings.Repeat("z", 64)} {
		if err := CheckTopic(good); err != nil {
			t.Errorf("CheckTopic(%q) = %v", good, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("z", 65), "a/b", "a b", "café", "a\x00", "#sequence-starts", "../x"} {
		if err := CheckTopic(bad); !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("CheckTopic(%q) = %v, want ErrInvalidTopic", bad, err)
		}
	}
}

// The seam: subscribers that resume while publishers run must each see
// every message exactly once, in order, across backlog and live queue.
func TestResumeUnderConcurrentPublishingHasNoGapAndNoDuplicate(t *testing.T) {
	t.Parallel()
	const publishers, each, joiners = 4, 1000, 40
	hub := newHistoryHub(t, publishers*each, time.Hour, nil, nil)
	first := publishN(t, hub, "seam", 1)[0]

	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				if _, _, err := hub.Publish("seam", fmt.Sprintf("p%d-%d", p, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	subs := make(chan *Subscriber, joiners)
	for range joiners {
		wg.Go(func() {
			s, err := hub.Subscribe(SubscribeRequest{Topic: "seam", Resume: true, Since: first.ID})
			if err != nil {
				t.Error(err)
				return
			}
			subs <- s
		})
	}
	wg.Wait()
	close(subs)

	last := first.ID + publishers*each
	for s := range subs {
		got := ids(takeAll(s))
		if len(got) != publishers*each {
			t.Fatalf("subscriber %d saw %d messages, want %d", s.ID(), len(got), publishers*each)
		}
		for i, id := range got {
			if id != first.ID+1+uint64(i) {
				t.Fatalf("subscriber %d: message %d has id %d, want %d )", s.ID(), i, id, first.ID+1+uint64(i))
			}
		}
		if got[len(got)-1] != last {
			t.Fatalf("subscriber %d ends at %d, want %d", s.ID(), got[len(got)-1], last)
		}
	}
}

func TestPresenceTellsWatchersOfJoinsAndLeaves(t *testing.T) {
	t.Parallel()
	hub := newHistoryHub(t, 4, time.Hour, nil, nil)
	watcher, err := hub.Subscribe(SubscribeRequest{Topic: "room", Presence: true})
	if err != nil {
		t.Fatal(err)
	}
	var d Delivery
	// presence is the count the next delivery tells of, or -1 for none.
	presence := func(s *Subscriber) int {
		t.Helper()
		s.Next(&d, 1<<20)
		defer s.Sent(&d)
		count := -1
		for _, n := range d.Notices {
			if n.Kind != NoticePresence {
				continue
			}
			if count != -1 {
				t.Fatalf("one delivery holds two presence notices: %+v", d.Notices)
			}
			var notice struct{ Subscribers int }
			if err := json.Unmarshal(n.JSON, &notice); err != nil {
				t.Fatal(err)
			}
			count = notice.Subscribers
		}
		return count
	}
	if n := presence(watcher); n != 1 {
		t.Errorf("after joining alone the count is %d", n)
	}
	// Joins pile into one pending notice that reads the count when taken.
	others := []*Subscriber{subscribe(t, hub, "room"), subscribe(t, hub, "room"), subscribe(t, hub, "room")}
	subscribe(t, hub, "elsewhere")
	if n := presence(watcher); n != 4 {
		t.Errorf("after three joins the count is %d, want 4", n)
	}
	if n := presence(watcher); n != -1 {
		t.Errorf("three joins gave more than one notice: then %d", n)
	}
	others[0].Close()
	if n := presence(watcher); n != 3 {
		t.Errorf("after a leave the count is %d, want 3", n)
	}
	if n := presence(others[1]); n != -1 {
		t.Errorf("a subscriber that did not ask for presence was told the count, %d", n)
	}
}

// One client subscribing to made-up names and leaving again holds nothing,
// so it must not use up the topic limit for everyone else.
func TestTopicsThatHoldNothingAreFreedWhenTheLastSubscriberLeaves(t *testing.T) {
	t.Parallel()
	hub, err := NewHub(HubOptions{MaxLagBytes: 1 << 20, MaxMessageBytes: 64, HistorySize: 4, HistoryTTL: time.Hour, MaxTopics: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		s, err := hub.Subscribe(SubscribeRequest{Topic: fmt.Sprint("made-up-", i)})
		if err != nil {
			t.Fatalf("subscription %d to a new topic: %v", i, err)
		}
		s.Close()
	}
	if n := hub.Stats().Topics; n != 0 {
		t.Errorf("after everyone left, the hub holds %d topics, want 0", n)
	}
	// Without history, a publish to a topic nobody watches holds nothing too.
	noHistory, err := NewHub(HubOptions{MaxLagBytes: 1 << 20, MaxMessageBytes: 64, HistorySize: 0, HistoryTTL: time.Hour, MaxTopics: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, _, err := noHistory.Publish(fmt.Sprint("made-up-", i), "x"); err != nil {
			t.Fatalf("publish %d to a new topic without history: %v", i, err)
		}
	}
	// The limit still holds against topics that hold something.
	publishN(t, hub, "kept-a", 1)
	subscribe(t, hub, "watched-b")
	if _, err := hub.Subscribe(SubscribeRequest{Topic: "third"}); !errors.Is(err, ErrTooManyTopics) {
		t.Errorf("a third topic beside one with history and one with a subscriber: %v, want ErrTooManyTopics", err)
	}
}

// A subscriber knows where its messages start, so that a client that
// reconnects before its first message can resume from there.
func TestSubscribersKnowWhereTheyStart(t *testing.T) {
	t.Parallel()
	hub := newHistoryHub(t, 3, time.Hour, nil, nil)
	sent := publishN(t, hub, "news", 5) // history keeps the last 3
	live := subscribe(t, hub, "news")
	for _, tc := range []struct {
		name string
		sub  *Subscriber
		want uint64
	}{
		{"a live subscriber: the last id when it joined", live, sent[4].ID},
		{"resuming after an id history holds", resume(t, hub, "news", sent[3].ID), sent[3].ID},
		{"resuming with since=0: before the oldest kept", resume(t, hub, "news", 0), sent[1].ID},
		{"resuming past what history holds: before the oldest kept", resume(t, hub, "news", sent[0].ID), sent[1].ID},
	} {
		if got := tc.sub.StartsAfter(); got != tc.want {
			t.Errorf("%s: starts after %d, want %d", tc.name, got, tc.want)
		}
	}
	next := publishN(t, hub, "news", 1)[0]
	if got := takeAll(live); len(got) != 1 || got[0].ID != live.StartsAfter()+1 || got[0].ID != next.ID {
		t.Errorf("the live subscriber got %v, want the message right after where it starts", ids(got))
	}
}
