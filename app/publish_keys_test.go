package app

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestAKeyedPublishIsPublishedOnce(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	sub := subscribe(t, hub, "news")
	first, _, replayed, err := hub.PublishKeyed("news", "once", "k1")
	if err != nil || replayed {
		t.Fatalf("the first keyed publish: %v, replayed %v", err, replayed)
	}
	again, n, replayed, err := hub.PublishKeyed("news", "once", "k1")
	if err != nil || again.ID != first.ID || n != 1 || !replayed {
		t.Fatalf("the retry got %v, %d subscribers, replayed %v, %v; want the first message, %d, replayed", again, n, replayed, err, first.ID)
	}
	if _, _, _, err := hub.PublishKeyed("news", "another", "k1"); !errors.Is(err, ErrKeyReused) {
		t.Errorf("the key with another text: %v, want ErrKeyReused", err)
	}
	other, _, _, err := hub.PublishKeyed("sport", "once", "k1")
	if err != nil || other.ID == first.ID && other.Topic == first.Topic {
		t.Errorf("the key on another topic: %v, %v; want a publish of its own", other, err)
	}
	if got := takeAll(sub); len(got) != 1 || got[0].ID != first.ID {
		t.Errorf("the subscriber got %v, want the message once", ids(got))
	}
}

func TestConcurrentPublishesWithOneKeyPublishOnce(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	sub := subscribe(t, hub, "news")
	const publishers = 16
	got := make([]uint64, publishers)
	var wg sync.WaitGroup
	for i := range publishers {
		wg.Go(func() {
			m, _, _, err := hub.PublishKeyed("news", "once", "same")
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = m.ID
		})
	}
	wg.Wait()
	for _, id := range got {
		if id != got[0] {
			t.Fatalf("publishes with one key got ids %v, want one", got)
		}
	}
	if n := len(takeAll(sub)); n != 1 {
		t.Errorf("the subscriber got %d messages, want 1", n)
	}
}

func TestARefusedKeyedPublishLeavesTheKeyFree(t *testing.T) {
	t.Parallel()
	hub, err := NewHub(HubOptions{MaxLagBytes: 1 << 20, MaxMessageBytes: 1 << 10, HistorySize: 16, HistoryTTL: time.Hour, MaxTopics: 1})
	if err != nil {
		t.Fatal(err)
	}
	taken := subscribe(t, hub, "taken") // the only topic the hub may hold
	if _, _, _, err := hub.PublishKeyed("news", "x", "k"); !errors.Is(err, ErrTooManyTopics) {
		t.Fatalf("publish past the topic limit: %v", err)
	}
	taken.Close() // the topic goes, and news fits
	if m, _, _, err := hub.PublishKeyed("news", "x", "k"); err != nil || m == nil {
		t.Fatalf("the retry of a refused keyed publish: %v, %v; want it published", m, err)
	}
}

func TestKeysAreForgottenAfterTheirTTL(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	hub := newHistoryHub(t, 16, 24*time.Hour, clock, nil)
	first, _, _, err := hub.PublishKeyed("news", "x", "k")
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(PublishKeyTTL)
	later, _, _, err := hub.PublishKeyed("news", "x", "k")
	if err != nil || later.ID == first.ID {
		t.Errorf("a key past its TTL gave %v, %v; want a new publish", later, err)
	}
}

// TestAKeyedPublishTheStoreFailedLeavesTheKeyFree: a publish that the
// history file refused was not acknowledged, so its retry must publish,
// not replay a message that was never kept.
func TestAKeyedPublishTheStoreFailedLeavesTheKeyFree(t *testing.T) {
	t.Parallel()
	store := &gatedStore{memoryStore: newMemoryStore(), gate: make(chan struct{}), failFirst: fmt.Errorf("%w: disk full", ErrStore)}
	close(store.gate)
	hub, err := NewHub(HubOptions{MaxLagBytes: 1 << 20, MaxMessageBytes: 1 << 10, HistorySize: 16, HistoryTTL: time.Hour, MaxTopics: 10, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	m, _, _, err := hub.PublishKeyed("news", "x", "k")
	if !errors.Is(err, ErrStore) || m != nil {
		t.Fatalf("a publish the store refused: %v, %v; want no message and the store's error", m, err)
	}
	m, _, replayed, err := hub.PublishKeyed("news", "x", "k")
	if err != nil || replayed {
		t.Fatalf("its retry: replayed %v, %v; want it published", replayed, err)
	}
	if kept := store.topics["news"]; kept == nil || kept.LastID != m.ID {
		t.Errorf("the retry's message %d is not the one the store keeps: %+v", m.ID, kept)
	}
}
