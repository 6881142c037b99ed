package redisbroker

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"herald/app"
	"herald/app/apptest"
	"herald/app/push"
	"herald/app/push/pushtest"
	"herald/app/redistest"
)

func pushSubscription(t *testing.T, topic, endpoint string) push.Subscription {
	t.Helper()
	p256dh, auth := pushtest.Keys(t)
	return push.Subscription{Topic: topic, Endpoint: endpoint, P256dh: p256dh, Auth: auth}
}

// Instances that start at once, each with a fresh key pair of its own,
// all keep the one that Redis took first.
func TestPushKeyPairIsOneForInstancesStartingAtOnce(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	const instances = 8
	stores := make([]*PushStore, instances)
	for i := range stores {
		b := newRedisTestBroker(t, apptest.NewHub(t, app.HubOptions{}), r)
		t.Cleanup(func() { b.Close() })
		stores[i] = b.PushStore(push.Limits{PerTopic: 10, Total: 10})
	}
	publics := make([]string, instances)
	errs := make([]error, instances)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, store := range stores {
		fresh, err := push.NewKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			<-start
			keys, err := store.Keys(context.Background(), fresh)
			publics[i], errs[i] = keys.Public(), err
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i, public := range publics {
		if public != publics[0] {
			t.Errorf("instance %d keeps %q, instance 0 %q", i, public, publics[0])
		}
	}
}

// Subscriptions are shared by every instance, within the limits, which
// hold in all however many instances add at once.
func TestPushSubscriptionsAreSharedAndBounded(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	ctx := context.Background()
	limits := push.Limits{PerTopic: 3, Total: 5}
	a, b := newRedisTestBroker(t, apptest.NewHub(t, app.HubOptions{}), r), newRedisTestBroker(t, apptest.NewHub(t, app.HubOptions{}), r)
	t.Cleanup(func() { a.Close(); b.Close() })
	storeA, storeB := a.PushStore(limits), b.PushStore(limits)

	first := pushSubscription(t, "news", "https://push.example/1")
	for _, store := range []*PushStore{storeA, storeB} { // the same one twice
		if err := store.Add(ctx, first); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	results := make([]error, 6)
	for i := range results {
		store := []*PushStore{storeA, storeB}[i%2]
		sub := pushSubscription(t, "news", "https://push.example/"+string(rune('a'+i)))
		wg.Go(func() { results[i] = store.Add(ctx, sub) })
	}
	wg.Wait()
	added, full := 0, 0
	for _, err := range results {
		switch {
		case err == nil:
			added++
		case errors.Is(err, push.ErrTopicFull):
			full++
		default:
			t.Errorf("add: %v", err)
		}
	}
	if added != 2 || full != 4 {
		t.Errorf("%d added and %d refused as too many for the topic, want 2 and 4", added, full)
	}
	subs, err := storeB.List(ctx, "news")
	if err != nil || len(subs) != 3 || !slices.Contains(subs, first) {
		t.Errorf("news lists %v (%v), want 3 with the first", subs, err)
	}

	for _, endpoint := range []string{"https://push.example/1", "https://push.example/2"} {
		if err := storeA.Add(ctx, pushSubscription(t, "sport", endpoint)); err != nil {
			t.Fatal(err)
		}
	}
	if err := storeB.Add(ctx, pushSubscription(t, "weather", "https://push.example/1")); !errors.Is(err, push.ErrFull) {
		t.Errorf("a sixth in all: %v, want ErrFull", err)
	}
	for range 2 { // the second time, there is nothing to remove
		if err := storeB.Remove(ctx, "news", first.Endpoint); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := storeA.Count(ctx); n != 4 || err != nil {
		t.Errorf("count %d (%v), want 4", n, err)
	}
	if subs, _ := storeA.List(ctx, "news"); slices.Contains(subs, first) {
		t.Error("the removed subscription is still listed")
	}
	keys, err := r.Client(t).Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keys {
		if strings.Contains(key, "push") && !strings.HasPrefix(key, "herald:{push}:") {
			t.Errorf("key %q is outside the prefix and the one hash slot", key)
		}
	}
}
