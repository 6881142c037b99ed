package history

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"herald/app/push"
	"herald/app/push/pushtest"

	bolt "go.etcd.io/bbolt"
)

// pushSubscription makes a well-formed subscription to topic, at
// endpoint.
func pushSubscription(t *testing.T, topic, endpoint string) push.Subscription {
	t.Helper()
	p256dh, auth := pushtest.Keys(t)
	return push.Subscription{Topic: topic, Endpoint: endpoint, P256dh: p256dh, Auth: auth}
}

func freshKeys(t *testing.T) push.KeyPair {
	t.Helper()
	keys, err := push.NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func listed(t *testing.T, s push.Store, topic string) []push.Subscription {
	t.Helper()
	subs, err := s.List(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(subs, func(a, b push.Subscription) int { return strings.Compare(a.Endpoint, b.Endpoint) })
	return subs
}

// The key pair and the subscriptions are in the history file: a restart,
// clean or after kill -9, finds them as they were.
func TestPushKeysAndSubscriptionsSurviveReopening(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "history.db")
	limits := push.Limits{PerTopic: 10, Total: 10}
	f := openHistoryFile(t, path)
	first := freshKeys(t)
	if keys, err := f.PushStore(limits).Keys(ctx, first); err != nil || keys.Public() != first.Public() {
		t.Fatalf("the first keys: %v, %v", keys, err)
	}
	a, b := pushSubscription(t, "news", "https://push.example/a"), pushSubscription(t, "news", "https://push.example/b")
	for _, sub := range []push.Subscription{a, b, pushSubscription(t, "sport", "https://push.example/a")} {
		if err := f.PushStore(limits).Add(ctx, sub); err != nil {
			t.Fatal(err)
		}
	}

	for _, reopen := range []func(*File) *File{
		func(f *File) *File { f.Close(); return openHistoryFile(t, path) },
		func(f *File) *File { return crashAndRestart(t, f, path) },
	} {
		f = reopen(f)
		store := f.PushStore(limits)
		if keys, err := store.Keys(ctx, freshKeys(t)); err != nil || keys.Public() != first.Public() {
			t.Errorf("after reopening, the keys are %v (%v), want %v", keys, err, first)
		}
		if got := listed(t, store, "news"); !slices.Equal(got, []push.Subscription{a, b}) {
			t.Errorf("after reopening, news has %v, want %v", got, []push.Subscription{a, b})
		}
		if n, err := store.Count(ctx); n != 3 || err != nil {
			t.Errorf("after reopening, the count is %d (%v), want 3", n, err)
		}
	}
	f.Close()
}

// The limits hold per topic and in all, also across a restart; adding
// one again replaces it, and removing one makes room.
func TestPushStoreInTheHistoryFileKeepsItsLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "history.db")
	limits := push.Limits{PerTopic: 2, Total: 3}
	f := openHistoryFile(t, path)
	defer func() { f.Close() }()
	store := f.PushStore(limits)
	add := func(topic, endpoint string) error {
		return store.Add(ctx, pushSubscription(t, topic, endpoint))
	}
	for _, endpoint := range []string{"https://push.example/1", "https://push.example/2", "https://push.example/2"} {
		if err := add("news", endpoint); err != nil {
			t.Fatal(err)
		}
	}
	if err := add("news", "https://push.example/3"); !errors.Is(err, push.ErrTopicFull) {
		t.Errorf("a third to news: %v, want ErrTopicFull", err)
	}
	if err := add("sport", "https://push.example/1"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	f = openHistoryFile(t, path)
	store = f.PushStore(limits)
	if err := add("weather", "https://push.example/1"); !errors.Is(err, push.ErrFull) {
		t.Errorf("a fourth in all after a restart: %v, want ErrFull", err)
	}
	for range 2 { // the second time, there is nothing to remove
		if err := store.Remove(ctx, "news", "https://push.example/1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := add("weather", "https://push.example/1"); err != nil {
		t.Errorf("after a removal: %v", err)
	}
	if n, _ := store.Count(ctx); n != 3 {
		t.Errorf("count %d, want 3", n)
	}
}

// A damaged push record is found when the file is opened, as damage to
// history is, and the file is left untouched.
func TestDamagedPushRecordIsRefusedAndLeftUntouched(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		damage func(*bolt.Bucket) error
	}{
		{"givenAKeyPairThatDoesNotMatch", func(b *bolt.Bucket) error {
			keys := freshKeys(t).Encode()
			other := freshKeys(t).Public()
			return b.Put(pushKeysKey, bytes.Replace(keys, []byte(`"public":"`), []byte(`"public":"`+other[:10]), 1))
		}},
		{"givenASubscriptionCutShort", func(b *bolt.Bucket) error {
			return b.Bucket(pushSubscriptionsKey).Bucket([]byte("news")).Put([]byte("https://push.example/a"), []byte{4, 1, 2})
		}},
		{"givenATopicThatIsNoName", func(b *bolt.Bucket) error {
			_, err := b.Bucket(pushSubscriptionsKey).CreateBucket([]byte("no spaces"))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "history.db")
			f := openHistoryFile(t, path)
			store := f.PushStore(push.Limits{PerTopic: 10, Total: 10})
			if _, err := store.Keys(context.Background(), freshKeys(t)); err != nil {
				t.Fatal(err)
			}
			if err := store.Add(context.Background(), pushSubscription(t, "news", "https://push.example/a")); err != nil {
				t.Fatal(err)
			}
			f.Close()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { return tc.damage(tx.Bucket(pushBucket)) }); err != nil {
				t.Fatal(err)
			}
			db.Close()
			before, _ := os.ReadFile(path)

			f, err = Open(path)
			if err == nil {
				f.Close()
				t.Fatal("a history file with a damaged push record was opened")
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "push") {
				t.Errorf("opening it: %v, want ErrDamaged that names push", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the damaged file was changed")
			}
		})
	}
}

// Push's records never show as topics.
func TestPushRecordsAreNoTopics(t *testing.T) {
	t.Parallel()
	f := openHistoryFile(t, filepath.Join(t.TempDir(), "history.db"))
	defer f.Close()
	if err := f.PushStore(push.Limits{PerTopic: 1, Total: 1}).Add(context.Background(), pushSubscription(t, "news", "https://push.example/a")); err != nil {
		t.Fatal(err)
	}
	topics, err := f.Load(10, time.Time{})
	if err != nil || len(topics) != 0 {
		t.Errorf("the file holds topics %v (%v), want none", topics, err)
	}
}
