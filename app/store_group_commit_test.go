package app

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// gatedStore is the real store with a gate in front of its first Append,
// so that a test can line publishes up behind a commit in progress, and an
// optional failure for that first commit.
type gatedStore struct {
	*BoltStore
	gate      chan struct{}
	failFirst error

	mu      sync.Mutex
	commits [][]uint64 // the ids each Append stored
}

func (s *gatedStore) Append(messages []*Message, sequenceStart, keepFrom uint64) error {
	s.mu.Lock()
	first := len(s.commits) == 0
	s.commits = append(s.commits, ids(messages))
	s.mu.Unlock()
	if first {
		<-s.gate
		if s.failFirst != nil {
			return s.failFirst
		}
	}
	return s.BoltStore.Append(messages, sequenceStart, keepFrom)
}

// lineUp starts publishers, lets the first one's commit start, waits until
// the others are all waiting behind it, then opens the gate, and returns
// each publish's result.
func lineUp(t *testing.T, hub *Hub, store *gatedStore, publishers int) (ids []uint64, errs []error) {
	t.Helper()
	ids, errs = make([]uint64, publishers), make([]error, publishers)
	var wg sync.WaitGroup
	publish := func(i int) {
		m, _, err := hub.Publish("news", fmt.Sprint("m", i))
		errs[i] = err
		if err == nil {
			ids[i] = m.ID
		}
	}
	wg.Go(func() { publish(0) })
	topic := func() *topicState {
		hub.mu.Lock()
		defer hub.mu.Unlock()
		return hub.topics["news"]
	}
	waitFor := func(done func(*topicState) bool) {
		for {
			if tp := topic(); tp != nil {
				tp.mu.Lock()
				ok := done(tp)
				tp.mu.Unlock()
				if ok {
					return
				}
			}
			runtime.Gosched()
		}
	}
	waitFor(func(tp *topicState) bool { return tp.committing })
	for i := 1; i < publishers; i++ {
		wg.Go(func() { publish(i) })
	}
	waitFor(func(tp *topicState) bool { return len(tp.pending) == publishers-1 })
	close(store.gate)
	wg.Wait()
	return ids, errs
}

func TestPublishesWaitingForTheDiskShareOneCommit(t *testing.T) {
	t.Parallel()
	bolt := openStore(t, filepath.Join(t.TempDir(), "history.db"))
	defer bolt.Close()
	store := &gatedStore{BoltStore: bolt, gate: make(chan struct{})}
	hub := newHistoryHub(t, 100, time.Hour, nil, store)
	sub := subscribe(t, hub, "news")

	ids, errs := lineUp(t, hub, store, 16)
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
	stored, err := bolt.Load(100, time.Time{})
	if err != nil || len(stored) != 1 || len(stored[0].Messages) != 16 {
		t.Fatalf("the store holds %+v (%v), want 16 messages of news", stored, err)
	}
}

func TestAFailedCommitFailsOnlyItsPublishesAndIDsStayUnbroken(t *testing.T) {
	t.Parallel()
	bolt := openStore(t, filepath.Join(t.TempDir(), "history.db"))
	defer bolt.Close()
	diskFull := errors.New("disk full")
	store := &gatedStore{BoltStore: bolt, gate: make(chan struct{}), failFirst: fmt.Errorf("%w: %w", ErrStore, diskFull)}
	hub := newHistoryHub(t, 100, time.Hour, nil, store)
	sub := subscribe(t, hub, "news")

	_, errs := lineUp(t, hub, store, 8)
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
	bolt := openStore(t, filepath.Join(t.TempDir(), "history.db"))
	defer bolt.Close()
	store := &gatedStore{BoltStore: bolt, gate: make(chan struct{})}
	hub, err := NewHub(HubOptions{MaxLagBytes: 1 << 20, MaxMessageBytes: 1 << 10, HistorySize: 100, HistoryTTL: time.Hour,
		MaxTopics: 100, Store: store, CommitDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Commits of 1, then of the 5 that lined up behind it: neither leader
	// waits, since neither follows a shared commit.
	if _, errs := lineUp(t, hub, store, 6); errors.Join(errs...) != nil {
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
// ErrOutcomeUnknown, and their ids are never given out again: the message
// may come back from the disk after a crash. The next messages follow
// them, and subscribers are told that those ids are missing.
func TestACommitOfUnknownOutcomeNeverGivesItsIDsAgain(t *testing.T) {
	t.Parallel()
	bolt := openStore(t, filepath.Join(t.TempDir(), "history.db"))
	defer bolt.Close()
	unknown := fmt.Errorf("%w: %w: the disk failed, and so did the checkpoint", ErrOutcomeUnknown, ErrStore)
	store := &gatedStore{BoltStore: bolt, gate: make(chan struct{}), failFirst: unknown}
	hub := newHistoryHub(t, 100, time.Hour, nil, store)
	sub := subscribe(t, hub, "news")

	_, errs := lineUp(t, hub, store, 8)
	if !errors.Is(errs[0], ErrOutcomeUnknown) {
		t.Fatalf("the publish whose commit has an unknown outcome returned %v, want ErrOutcomeUnknown", errs[0])
	}
	if err := errors.Join(errs[1:]...); err != nil {
		t.Fatal(err)
	}
	unknownID := store.commits[0][0]
	got, gap := sub.Take(nil, 1<<20)
	if gap == nil || !gap.Known || gap.Since != unknownID-1 || gap.Missing != 1 {
		t.Errorf("the subscriber was told %+v, want one known missing after %d", gap, unknownID-1)
	}
	if len(got) != 7 || got[0].ID != unknownID+1 || got[6].ID != unknownID+7 {
		t.Fatalf("the subscriber got ids %v, want the 7 after the unknown %d", ids(got), unknownID)
	}
}
