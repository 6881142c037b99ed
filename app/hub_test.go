package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

func newTestHub(t *testing.T) *Hub {
	t.Helper()
	return newLagHub(t, 1<<20)
}

func newLagHub(t *testing.T, maxLagBytes int) *Hub {
	t.Helper()
	hub, err := NewHub(HubOptions{MaxLagBytes: maxLagBytes, MaxMessageBytes: 1 << 10, HistorySize: 16, HistoryTTL: time.Hour, MaxTopics: 100})
	if err != nil {
		t.Fatal(err)
	}
	return hub
}

func subscribe(t *testing.T, hub *Hub, topic string) *Subscriber {
	t.Helper()
	s, err := hub.Subscribe(SubscribeRequest{Topic: topic, Label: t.Name()})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return s
}

// takeAll takes everything waiting for s, in as many batches as it takes.
func takeAll(s *Subscriber) []*Message {
	var got []*Message
	for {
		n := len(got)
		if got, _, _ = s.take(got, 4<<10); len(got) == n {
			return got
		}
	}
}

// receive takes what waits for s and fails unless it is exactly n messages.
func receive(t *testing.T, s *Subscriber, n int) []*Message {
	t.Helper()
	got := takeAll(s)
	if len(got) != n {
		t.Fatalf("subscriber %d has %d messages, want %d", s.ID(), len(got), n)
	}
	return got
}

func TestPublishReachesEverySubscriberOfTheTopicInOrder(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	a, b := subscribe(t, hub, DefaultTopic), subscribe(t, hub, DefaultTopic)
	other := subscribe(t, hub, "other")

	var firstID uint64
	for i := range 5 {
		m, delivered, err := hub.Publish(DefaultTopic, fmt.Sprint("m", i))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			firstID = m.ID
		}
		if delivered != 2 || m.ID != firstID+uint64(i) || m.Topic != DefaultTopic || m.Time.IsZero() {
			t.Fatalf("publish %d: got message %+v delivered to %d, want id %d delivered to 2", i, m, delivered, firstID+uint64(i))
		}
	}
	for _, s := range []*Subscriber{a, b} {
		for i, m := range receive(t, s, 5) {
			if m.Text != fmt.Sprint("m", i) || m.ID != firstID+uint64(i) {
				t.Errorf("subscriber %d message %d = %q id %d", s.ID(), i, m.Text, m.ID)
			}
		}
	}
	if n := len(takeAll(other)); n != 0 {
		t.Errorf("subscriber of another topic got %d messages", n)
	}
	select {
	case <-other.Ready():
		t.Error("a subscriber of another topic was woken")
	default:
	}
}

func TestSubscriberTooManyBytesBehindIsEndedAlone(t *testing.T) {
	t.Parallel()
	hub := newLagHub(t, 1000)
	slow, healthy := subscribe(t, hub, DefaultTopic), subscribe(t, hub, DefaultTopic)

	text := strings.Repeat("x", 100)
	for i := range 11 {
		if slow.Err() != nil {
			t.Fatalf("the slow subscriber was ended after %d messages of 100 bytes, within the 1000-byte limit", i)
		}
		if _, _, err := hub.Publish(DefaultTopic, text); err != nil {
			t.Fatal(err)
		}
		receive(t, healthy, 1) // the healthy one keeps up; the slow one never takes
	}
	// 1100 bytes behind now: over the limit.
	if !errors.Is(slow.Err(), ErrSlowSubscriber) {
		t.Fatalf("slow subscriber ended with %v, want ErrSlowSubscriber", slow.Err())
	}
	if healthy.Err() != nil {
		t.Fatalf("healthy subscriber ended: %v", healthy.Err())
	}
	if _, delivered, _ := hub.Publish(DefaultTopic, "after"); delivered != 1 {
		t.Errorf("after eviction the message reached %d subscribers, want 1", delivered)
	}
	stats := hub.Stats()
	if stats.SlowDisconnects != 1 || stats.Dropped != 0 {
		t.Errorf("stats = %+v, want 1 slow disconnect and nothing counted dropped before release", stats)
	}
	// The evicted connection still counts until it unsubscribes.
	if stats.Subscribers != 2 {
		t.Errorf("subscribers = %d before unsubscribe, want 2", stats.Subscribers)
	}
	slow.Close()
	slow.Close()
	stats = hub.Stats()
	if stats.Subscribers != 1 {
		t.Errorf("subscribers = %d after unsubscribing twice, want 1", stats.Subscribers)
	}
	// All 11 published to it were never taken: dropped, once.
	if stats.Dropped != 11 {
		t.Errorf("dropped = %d after the evicted subscriber was released, want 11", stats.Dropped)
	}
}

// Subscribers who stop reading are ended wherever they sit among the
// topic's subscribers, several in one publish, and removing them never
// makes the publish skip or repeat anyone else.
func TestSlowSubscribersAnywhereAreEndedTogetherAndTheRestMissNothing(t *testing.T) {
	t.Parallel()
	hub := newLagHub(t, 1000)
	var subs []*Subscriber
	for range 6 {
		subs = append(subs, subscribe(t, hub, DefaultTopic))
	}
	slow := map[*Subscriber]bool{subs[0]: true, subs[2]: true, subs[5]: true} // first, middle, last
	text := strings.Repeat("x", 100)
	for range 11 { // 1,100 bytes: over the limit with the last one
		if _, _, err := hub.Publish(DefaultTopic, text); err != nil {
			t.Fatal(err)
		}
		for _, s := range subs {
			if !slow[s] {
				receive(t, s, 1)
			}
		}
	}
	for i, s := range subs {
		if ended := errors.Is(s.Err(), ErrSlowSubscriber); ended != slow[s] {
			t.Errorf("subscriber %d: ended as slow = %v, want %v (err %v)", i, ended, slow[s], s.Err())
		}
	}
	if _, delivered, _ := hub.Publish(DefaultTopic, "after"); delivered != 3 {
		t.Errorf("after the evictions a message reached %d subscribers, want 3", delivered)
	}
	subs[3].Leave()
	late := subscribe(t, hub, DefaultTopic)
	if _, delivered, _ := hub.Publish(DefaultTopic, "last"); delivered != 3 {
		t.Errorf("after one left and one joined a message reached %d subscribers, want 3", delivered)
	}
	for _, s := range []*Subscriber{subs[1], subs[4]} {
		if got := receive(t, s, 2); got[0].Text != "after" || got[1].Text != "last" {
			t.Errorf("subscriber %d got %q and %q, want after and last", s.ID(), got[0].Text, got[1].Text)
		}
	}
	if got := receive(t, late, 1); got[0].Text != "last" {
		t.Errorf("the late subscriber got %q, want last", got[0].Text)
	}
	receive(t, subs[3], 1) // what it was owed before it left, and no more
}

// A server that is behind makes every subscriber lag by many messages at
// once. Counted in bytes, that is no reason to drop anyone, and the log
// keeps what they have yet to take beyond the history window.
func TestManySmallMessagesBehindIsNotSlow(t *testing.T) {
	t.Parallel()
	hub := newLagHub(t, 1<<20)
	behind := subscribe(t, hub, DefaultTopic)
	sent := make([]*Message, 0, 20000)
	for i := range cap(sent) {
		m, _, err := hub.Publish(DefaultTopic, fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m)
	}
	if err := behind.Err(); err != nil {
		t.Fatalf("a subscriber 20000 small messages behind was ended: %v", err)
	}
	got := receive(t, behind, len(sent))
	for i := range got {
		if got[i] != sent[i] {
			t.Fatalf("message %d is %q, want %q", i, got[i].Text, sent[i].Text)
		}
	}
	// Once taken, the log holds the history window again, no more.
	if _, _, err := hub.Publish(DefaultTopic, "one more"); err != nil {
		t.Fatal(err)
	}
	topic := behind.topic
	topic.mu.Lock()
	held := topic.log.len()
	topic.mu.Unlock()
	if held != 16 {
		t.Errorf("the log holds %d messages after everyone caught up, want the 16 of the history window", held)
	}
}

func TestStalledConnectionEndsItsSubscriberAsSlow(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	stalled, other := subscribe(t, hub, DefaultTopic), subscribe(t, hub, DefaultTopic)
	hub.stalled(stalled, 10*time.Second)
	hub.stalled(stalled, 10*time.Second) // counted once
	if !errors.Is(stalled.Err(), ErrSlowSubscriber) || other.Err() != nil {
		t.Fatalf("stalled ended with %v and the other with %v, want only the stalled one slow", stalled.Err(), other.Err())
	}
	if _, delivered, _ := hub.Publish(DefaultTopic, "x"); delivered != 1 {
		t.Errorf("a publish after the stall reached %d subscribers, want 1", delivered)
	}
	if n := hub.Stats().SlowDisconnects; n != 1 {
		t.Errorf("slow disconnects = %d, want 1", n)
	}
}

func TestConcurrentPublishersGiveEverySubscriberTheSameOrder(t *testing.T) {
	t.Parallel()
	const publishers, each = 4, 250
	hub := newTestHub(t)
	subs := []*Subscriber{subscribe(t, hub, DefaultTopic), subscribe(t, hub, DefaultTopic), subscribe(t, hub, DefaultTopic)}

	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				if _, _, err := hub.Publish(DefaultTopic, fmt.Sprintf("%d-%d", p, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	first := receive(t, subs[0], publishers*each)
	for i, m := range first {
		if m.ID != first[0].ID+uint64(i) {
			t.Fatalf("message %d has id %d: ids must follow delivery order", i, m.ID)
		}
	}
	for _, s := range subs[1:] {
		for i, m := range receive(t, s, publishers*each) {
			if m != first[i] {
				t.Fatalf("subscriber %d message %d is %q, subscriber %d had %q", s.ID(), i, m.Text, subs[0].ID(), first[i].Text)
			}
		}
	}
}

func TestPublishRefusesBadText(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	tests := []struct {
		name      string
		givenText string
		expectErr error
	}{
		{"whenEmpty", "", ErrEmptyMessage},
		{"whenOverLimit", strings.Repeat("x", 1<<10+1), ErrMessageTooLarge},
		{"whenInvalidUTF8", "bad \xff byte", ErrInvalidUTF8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := hub.Publish(DefaultTopic, tc.givenText); !errors.Is(err, tc.expectErr) {
				t.Errorf("got %v, want %v", err, tc.expectErr)
			}
		})
	}
	if _, _, err := hub.Publish(DefaultTopic, strings.Repeat("é", 512)); err != nil {
		t.Errorf("a message of exactly the limit was refused: %v", err)
	}
}

func TestShutdownEndsEverySubscriptionAndWaitsForThem(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	subs := []*Subscriber{subscribe(t, hub, DefaultTopic), subscribe(t, hub, "other"),
		subscribe(t, hub, DefaultTopic), subscribe(t, hub, DefaultTopic)}

	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- hub.Shutdown(context.Background()) }()

	for _, s := range subs {
		<-s.Done()
		if !errors.Is(s.Err(), ErrHubClosed) {
			t.Errorf("subscriber ended with %v, want ErrHubClosed", s.Err())
		}
	}
	select {
	case err := <-shutdownDone:
		t.Fatalf("shutdown returned %v while subscribers were still connected", err)
	default:
	}
	for _, s := range subs {
		s.Close()
	}
	if err := <-shutdownDone; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := hub.Subscribe(SubscribeRequest{Topic: DefaultTopic, Label: "late"}); !errors.Is(err, ErrHubClosed) {
		t.Errorf("subscribe after shutdown: %v, want ErrHubClosed", err)
	}
	if _, _, err := hub.Publish(DefaultTopic, "late"); !errors.Is(err, ErrHubClosed) {
		t.Errorf("publish after shutdown: %v, want ErrHubClosed", err)
	}
}

func TestLeaveStopsDeliveryButShutdownWaitsForUnsubscribe(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	leaving, staying := subscribe(t, hub, DefaultTopic), subscribe(t, hub, DefaultTopic)
	leaving.Leave()
	leaving.Leave()
	if !errors.Is(leaving.Err(), ErrUnsubscribed) {
		t.Errorf("left subscriber ended with %v", leaving.Err())
	}
	if _, delivered, _ := hub.Publish(DefaultTopic, "x"); delivered != 1 {
		t.Errorf("delivered to %d subscribers after one left, want 1", delivered)
	}
	staying.Close()

	// The left subscriber's connection is still open, so shutdown cannot
	// finish: with a context that has already ended, it must say so.
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := hub.Shutdown(ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("shutdown = %v with a connection still open, want context.Canceled", err)
	}
	leaving.Close()
	if err := hub.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown after the last unsubscribe: %v", err)
	}
}

func TestShutdownGivesUpWhenContextEnds(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	subscribe(t, hub, DefaultTopic) // never unsubscribes
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := hub.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

// A subscriber whose client can be told what it lost skips ahead when it
// falls too far behind, and learns how much it missed, in order; one that
// cannot be told is cut off.
func TestASubscriberThatCanBeToldSkipsAheadInsteadOfBeingCutOff(t *testing.T) {
	t.Parallel()
	hub := newLagHub(t, 1000)
	told, err := hub.Subscribe(SubscribeRequest{Topic: DefaultTopic, SkipAhead: true})
	if err != nil {
		t.Fatal(err)
	}
	plain := subscribe(t, hub, DefaultTopic)

	text := strings.Repeat("x", 100)
	sent := publishN(t, hub, DefaultTopic, 0)
	for range 15 { // 1,500 bytes: over the 1,000-byte limit, with nobody taking
		m, _, err := hub.Publish(DefaultTopic, text)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m)
	}
	if !errors.Is(plain.Err(), ErrSlowSubscriber) {
		t.Errorf("the plain subscriber ended with %v, want ErrSlowSubscriber", plain.Err())
	}
	if err := told.Err(); err != nil {
		t.Fatalf("the subscriber that can be told was ended: %v", err)
	}
	got, gap, _ := told.take(nil, 1<<20)
	if gap == nil || !gap.Known || gap.Since != sent[0].ID-1 {
		t.Fatalf("gap %+v, want a known gap after %d", gap, sent[0].ID-1)
	}
	// What it skipped and what it then gets add up to everything, in order.
	if int(gap.Missing)+len(got) != len(sent) || got[0].ID != sent[gap.Missing].ID {
		t.Fatalf("skipped %d and got %d starting at %d, want %d in all, carrying on from the skip", gap.Missing, len(got), got[0].ID, len(sent))
	}
	// The 11th publish put it 1,100 bytes behind: it skipped the first 6,
	// to be 500 behind, and the 4 publishes after that wait for it too.
	if gap.Missing != 6 || len(got) != 9 {
		t.Errorf("skipped %d and then got %d, want 6 skipped and 9 to take", gap.Missing, len(got))
	}
	if _, again, _ := told.take(nil, 1<<20); again != nil {
		t.Errorf("the gap was reported twice: %+v", again)
	}
	if dropped := hub.Stats().Dropped; dropped != gap.Missing {
		t.Errorf("dropped = %d, want the %d skipped", dropped, gap.Missing)
	}
}

// A resumed subscriber learns of its resume gap from Take, like a skip;
// if it also skips before it takes, one notice covers both, and Gap still
// says what resume found.
func TestTheResumeGapAndASkipAreReportedOnceTogether(t *testing.T) {
	t.Parallel()
	hub, err := NewHub(HubOptions{MaxLagBytes: 1000, MaxMessageBytes: 1 << 10, HistorySize: 2, HistoryTTL: time.Hour, MaxTopics: 100})
	if err != nil {
		t.Fatal(err)
	}
	first := publishN(t, hub, DefaultTopic, 5)
	s, err := hub.Subscribe(SubscribeRequest{Topic: DefaultTopic, Resume: true, Since: first[0].ID, SkipAhead: true})
	if err != nil {
		t.Fatal(err)
	}
	resumed := *s.Gap() // 3 lost: history keeps the newest 2
	text := strings.Repeat("x", 100)
	for range 11 { // 1,100 bytes behind: a skip
		if _, _, err := hub.Publish(DefaultTopic, text); err != nil {
			t.Fatal(err)
		}
	}
	_, gap, _ := s.take(nil, 1<<20)
	if gap == nil || gap.Since != first[0].ID || gap.Missing <= resumed.Missing {
		t.Fatalf("Take reported %+v, want one gap after %d covering the %d resume lost and the skip", gap, first[0].ID, resumed.Missing)
	}
	if *s.Gap() != resumed {
		t.Errorf("Gap changed from %+v to %+v after the skip", resumed, *s.Gap())
	}
	if _, again, _ := s.take(nil, 1<<20); again != nil {
		t.Errorf("the gap was reported twice: %+v", again)
	}
}

// TestATopicOwnsItsName: a topic outlives the request that named it, and
// a name cut from a request's query shares that query's memory. The hub
// keeps a copy, so that a topic holds its name, not the request.
func TestATopicOwnsItsName(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	query := "news&msg=" + strings.Repeat("x", 1000)
	name := query[:len("news")]
	if _, _, err := hub.Publish(name, "x"); err != nil {
		t.Fatal(err)
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	for key, topic := range hub.topics {
		if unsafe.StringData(key) == unsafe.StringData(query) || unsafe.StringData(topic.name) == unsafe.StringData(query) {
			t.Error("the topic's name shares the memory of the string it was cut from")
		}
	}
}
