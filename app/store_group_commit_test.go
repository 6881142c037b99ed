package app

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// memoryStore keeps what it is given in memory. The hub's group commit is
// tested against it; the history file's own tests cover the disk.
type memoryStore struct {
	mu     sync.Mutex
	topics map[string]*StoredTopic
}

func newMemoryStore() *memoryStore { return &memoryStore{topics: map[string]*StoredTopic{}} }

func (s *memoryStore) Load(limit int, notBefore time.Time) ([]StoredTopic, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StoredTopic
	for _, t := range s.topics {
		stored := *t
		stored.Messages = slices.DeleteFunc(slices.Clone(t.Messages), func(m *Message) bool { return m.Time.Before(notBefore) })
		stored.Messages = stored.Messages[max(len(stored.Messages)-limit, 0):]
		out = append(out, stored)
	}
	return out, nil
}

func (s *memoryStore) Append(commits []Commit) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range commits {
		name := c.Messages[0].Topic
		t := s.topics[name]
		if t == nil {
			t = &StoredTopic{Name: name}
			s.topics[name] = t
		}
		t.SequenceStart, t.LastID = c.SequenceStart, c.Messages[len(c.Messages)-1].ID
		t.Messages = append(t.Messages, c.Messages...)
		t.Messages = slices.DeleteFunc(t.Messages, func(m *Message) bool { return m.ID < c.KeepFrom })
	}
	return nil
}

func (s *memoryStore) Trim(map[string]uint64) error { return nil }
func (s *memoryStore) Forget([]string) error        { return nil }
func (s *memoryStore) Close() error                 { return nil }

// gatedStore is a store with a gate in front of its first Append, so that
// a test can line publishes up behind a commit in progress, and an
// optional failure for that first commit.
type gatedStore struct {
	*memoryStore
	gate      chan struct{}
	failFirst error

	mu      sync.Mutex
	commits [][]uint64 // the ids each Append stored, of all its topics
}

func (s *gatedStore) Append(commits []Commit) error {
	var stored []uint64
	for _, c := range commits {
		stored = append(stored, ids(c.Messages)...)
	}
	s.mu.Lock()
	first := len(s.commits) == 0
	s.commits = append(s.commits, stored)
	s.mu.Unlock()
	if first {
		<-s.gate
		if s.failFirst != nil {
			return s.failFirst
		}
	}
	return s.memoryStore.Append(commits)
}

// lineUp starts a publisher for each of topics, lets the first one's
// commit start, waits until the others are all waiting behind it, then
// opens the gate, and returns each publish's result.
func lineUp(t *testing.T, hub *Hub, store *gatedStore, topics []string) (ids []uint64, errs []error) {
	t.Helper()
	ids, errs = make([]uint64, len(topics)), make([]error, len(topics))
	var wg sync.WaitGroup
	publish := func(i int) {
		m, _, err := hub.Publish(topics[i], fmt.Sprint("m", i))
		errs[i] = err
		if err == nil {
			ids[i] = m.ID
		}
	}
	wg.Go(func() { publish(0) })
	for !store.entered() {
		runtime.Gosched()
	}
	for i := 1; i < len(topics); i++ {
		wg.Go(func() { publish(i) })
	}
	c := hub.committer
	for {
		c.mu.Lock()
		waiting := c.waiting
		c.mu.Unlock()
		if waiting == len(topics)-1 {
			break
		}
		runtime.Gosched()
	}
	close(store.gate)
	wg.Wait()
	return ids, errs
}

// entered reports whether the first Append has begun.
func (s *gatedStore) entered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.commits) > 0
}

// sameTopic is n publishers' topics, all news.
func sameTopic(n int) []string { return slices.Repeat([]string{"news"}, n) }

func TestPublishesWaitingForTheDiskShareOneCommit(t *testing.T) {
	t.Parallel()
	memory := newMemoryStore()
	store := &gatedStore{memoryStore: memory, gate: make(chan struct{})}
	hub := newHistoryHub(t, 100, time.Hour, nil, store)
	sub := subscribe(t, hub, "news")

	ids, errs := lineUp(t, hub, store, sameTopic(16))
	for i, err := range errs {
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if len(store.commits) != 2 || len(store.commits[1]) != 15 {
		t.Fatalf("commits stored %v, want the first publish alone, then the 15 that waited in one commit", store.commits)
	}
	got := takeAll(sub)
	if len(got) != 16 {
		t.Fatalf("the subscriber got %d messages, want 16", len(got))
	}
	for i, m := range got {
		if m.ID != got[0].ID+uint64(i) {
			t.Fatalf("message %d has id %d: ids must be unbroken and in order", i, m.ID)
		}
	}
	if ids[0] != got[0].ID {
		t.Errorf("the first publish got id %d, the first message delivered has %d", ids[0], got[0].ID)
	}
	// All of them are on disk.
	stored, err := memory.Load(100, time.Time{})
	if err != nil || len(stored) != 1 || len(stored[0].Messages) != 16 {
		t.Fatalf("the store holds %+v (%v), want 16 messages of news", stored, err)
	}
}

func TestAFailedCommitFailsOnlyItsPublishesAndIDsStayUnbroken(t *testing.T) {
	t.Parallel()
	memory := newMemoryStore()
	diskFull := errors.New("disk full")
	store := &gatedStore{memoryStore: memory, gate: make(chan struct{}), failFirst: fmt.Errorf("%w: %w", ErrStore, diskFull)}
	hub := newHistoryHub(t, 100, time.Hour, nil, store)
	sub := subscribe(t, hub, "news")

	_, errs := lineUp(t, hub, store, sameTopic(8))
	if !errors.Is(errs[0], diskFull) {
		t.Fatalf("the publish whose commit failed returned %v, want the store's error", errs[0])
	}
	got := takeAll(sub)
	if len(got) != 7 {
		t.Fatalf("the subscriber got %d messages, want the 7 that were committed after the failure", len(got))
	}
	for i, m := range got {
		if errs[i+1] != nil {
			t.Errorf("publish %d failed: %v", i+1, errs[i+1])
		}
		if i > 0 && m.ID != got[i-1].ID+1 {
			t.Fatalf("ids %d then %d: the failed id was not given out again", got[i-1].ID, m.ID)
		}
	}
	// The failed publish's id went to the first of those that waited.
	if got[0].ID != store.commits[0][0] {
		t.Errorf("the first message after the failure has id %d, want the failed one's id %d", got[0].ID, store.commits[0][0])
	}
	if n := hub.Stats().StoreErrors; n != 1 {
		t.Errorf("store errors = %d, want 1", n)
	}
}

// Once commits are shared, the next leader waits for as many publishes as
// the last commit held before it commits: they are publishers on their
// way back. The delay here is an hour, so the test passes only if the
// leader stops waiting because they arrived, not because time ran out.
func TestALeaderWaitsForAsManyAsItsTopicsLastCommit(t *testing.T) {
	t.Parallel()
	memory := newMemoryStore()
	store := &gatedStore{memoryStore: memory, gate: make(chan struct{})}
	hub, err := NewHub(HubOptions{MaxLagBytes: 1 << 20, MaxMessageBytes: 1 << 10, HistorySize: 100, HistoryTTL: time.Hour,
		MaxTopics: 100, Store: store, CommitDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Commits of 1, then of the 5 that lined up behind it: neither leader
	// waits, since neither follows a shared commit.
	if _, errs := lineUp(t, hub, store, sameTopic(6)); errors.Join(errs...) != nil {
		t.Fatal(errors.Join(errs...))
	}
	// Now 5 publish at once, in no particular order: the leader waits for
	// all 5, and they share one commit.
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			if _, _, err := hub.Publish("news", fmt.Sprint("again ", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.commits) != 3 || len(store.commits[1]) != 5 || len(store.commits[2]) != 5 {
		t.Errorf("commits %v, want 1, then 5, then the next 5 together", store.commits)
	}
}

// A commit whose outcome the store cannot tell fails its publishes with
// ErrPublishUnknown, and their ids are never given out again: the message
// may come back from the disk after a crash. The next messages follow
// them, and subscribers are told that those ids are missing.
func TestACommitOfUnknownOutcomeNeverGivesItsIDsAgain(t *testing.T) {
	t.Parallel()
	memory := newMemoryStore()
	unknown := fmt.Errorf("%w: %w: the disk failed, and so did the checkpoint", ErrPublishUnknown, ErrStore)
	store := &gatedStore{memoryStore: memory, gate: make(chan struct{}), failFirst: unknown}
	hub := newHistoryHub(t, 100, time.Hour, nil, store)
	sub := subscribe(t, hub, "news")

	_, errs := lineUp(t, hub, store, sameTopic(8))
	if !errors.Is(errs[0], ErrPublishUnknown) {
		t.Fatalf("the publish whose commit has an unknown outcome returned %v, want ErrPublishUnknown", errs[0])
	}
	if err := errors.Join(errs[1:]...); err != nil {
		t.Fatal(err)
	}
	unknownID := store.commits[0][0]
	got, gap, _ := sub.take(nil, 1<<20)
	if gap == nil || !gap.Known || gap.Since != unknownID-1 || gap.Missing != 1 {
		t.Errorf("the subscriber was told %+v, want one known missing after %d", gap, unknownID-1)
	}
	if len(got) != 7 || got[0].ID != unknownID+1 || got[6].ID != unknownID+7 {
		t.Fatalf("the subscriber got ids %v, want the 7 after the unknown %d", ids(got), unknownID)
	}
}

// Publishers to different topics share commits as publishers to one topic
// do: one Append, one journal record and one sync, for every topic waiting.
func TestPublishesToDifferentTopicsShareOneCommit(t *testing.T) {
	t.Parallel()
	memory := newMemoryStore()
	store := &gatedStore{memoryStore: memory, gate: make(chan struct{})}
	hub := newHistoryHub(t, 100, time.Hour, nil, store)
	var topics []string
	var subs []*Subscriber
	for i := range 16 {
		topics = append(topics, fmt.Sprint("topic-", i))
		subs = append(subs, subscribe(t, hub, topics[i]))
	}

	ids, errs := lineUp(t, hub, store, topics)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if len(store.commits) != 2 || len(store.commits[1]) != 15 {
		t.Fatalf("commits stored %v, want the first publish alone, then the 15 of other topics that waited in one", store.commits)
	}
	for i, sub := range subs {
		if got := takeAll(sub); len(got) != 1 || got[0].ID != ids[i] || got[0].Text != fmt.Sprint("m", i) {
			t.Errorf("%s's subscriber got %v, want its one message %d", topics[i], got, ids[i])
		}
	}
	stored, err := memory.Load(100, time.Time{})
	if err != nil || len(stored) != 16 {
		t.Fatalf("the store holds %d topics (%v), want 16", len(stored), err)
	}
}

// A failed commit fails only its own publishes, whatever topics the next
// one holds, and every topic's ids stay unbroken.
func TestAFailedCommitLeavesEveryTopicsIDsUnbroken(t *testing.T) {
	t.Parallel()
	memory := newMemoryStore()
	store := &gatedStore{memoryStore: memory, gate: make(chan struct{}), failFirst: fmt.Errorf("%w: disk full", ErrStore)}
	hub := newHistoryHub(t, 100, time.Hour, nil, store)
	news, sport := subscribe(t, hub, "news"), subscribe(t, hub, "sport")

	published, errs := lineUp(t, hub, store, []string{"news", "news", "news", "sport", "sport", "news", "sport"})
	if !errors.Is(errs[0], ErrStore) || errors.Join(errs[1:]...) != nil {
		t.Fatalf("publishes returned %v, want only the first to fail", errs)
	}
	if len(store.commits) != 2 || len(store.commits[1]) != 6 {
		t.Fatalf("commits stored %v, want the failed one, then the 6 that waited, of both topics, in one", store.commits)
	}
	for _, topic := range []struct {
		sub   *Subscriber
		first uint64
		n     int
	}{{news, store.commits[0][0], 3}, {sport, min(published[3], published[4], published[6]), 3}} {
		got := takeAll(topic.sub)
		if len(got) != topic.n {
			t.Fatalf("%s: the subscriber got %d messages, want %d", topic.sub.Topic(), len(got), topic.n)
		}
		for i, m := range got {
			if m.ID != topic.first+uint64(i) {
				t.Errorf("%s: ids %v, want %d on, unbroken", topic.sub.Topic(), ids(got), topic.first)
				break
			}
		}
	}
}
