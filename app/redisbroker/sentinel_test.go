package redisbroker

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"herald/app"
	"herald/app/redistest"
)

// sentinelOptions reach the master that s's Sentinel watches, and
// acknowledge a publish once its replica holds it.
func sentinelOptions(s *redistest.Sentinel) Options {
	return Options{Addrs: s.Addrs(), MasterName: redistest.SentinelMaster, MinReplicas: 1}
}

// TestPublishThatNoReplicaConfirmedReachesNoOneBeforeItIsSafe: with the
// replica frozen, a publish reaches the master but no replica. It is
// answered with an unknown outcome, announced to no instance, and left
// out of the history that a subscriber joining then is seeded with. A
// failover then loses it, as the promoted replica never had it, and gives
// its id to the next message: every subscriber gets that message with
// that id, and none ever saw the lost one.
func TestPublishThatNoReplicaConfirmedReachesNoOneBeforeItIsSafe(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)
	opts := sentinelOptions(s)
	a, b := startTestBroker(t, opts), startTestBroker(t, opts)
	onA, onB := subscribeVia(t, a, "safe"), subscribeVia(t, b, "safe")
	first := publishVia(t, a, "safe", "confirmed")
	awaitMessages(t, onA, 1)
	awaitMessages(t, onB, 1)

	s.Replica.Freeze(t)
	_, _, err := a.Publish(context.Background(), "safe", "unconfirmed")
	if !errors.Is(err, app.ErrPublishUnknown) {
		t.Fatalf("a publish that no replica confirmed returned %v, want an unknown outcome", err)
	}
	late := startTestBroker(t, opts)
	seed, err := late.readSeed(context.Background(), "safe")
	if err != nil {
		t.Fatal(err)
	}
	if seed.LastID != first.ID || len(seed.History) != 1 || seed.History[0].Text != "confirmed" {
		t.Fatalf("a seed read while the publish was unconfirmed ends at %d with %s, want %d confirmed",
			seed.LastID, texts(seed.History), first.ID)
	}
	joiner, err := late.Subscribe(context.Background(), app.SubscribeRequest{Topic: "safe", Label: t.Name(), Resume: true})
	if err != nil {
		t.Fatal(err)
	}

	// What the failover leaves: the promoted replica never got the
	// message, so its counter and stream end before it. The master is
	// made to hold what the replica will, and passes it on once thawed.
	master := s.Master.Client(t)
	ctx := context.Background()
	if err := master.Decr(ctx, "herald:topic:safe:seq").Err(); err != nil {
		t.Fatal(err)
	}
	for _, command := range [][]any{
		{"XDEL", "herald:topic:safe:log", strconv.FormatUint(first.ID+1, 10) + "-1"},
		{"XSETID", "herald:topic:safe:log", strconv.FormatUint(first.ID, 10) + "-1"},
	} {
		if err := master.Do(ctx, command...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	s.Replica.Thaw(t)

	next := publishVia(t, b, "safe", "next")
	if next.ID != first.ID+1 {
		t.Fatalf("the next message got id %d, want the lost one's, %d", next.ID, first.ID+1)
	}
	publishVia(t, a, "safe", "after")
	for name, sub := range map[string]*app.Subscriber{"on the publishing instance": onA, "on another": onB} {
		got := awaitText(t, sub, "after")
		if len(got) != 2 || got[0].ID != next.ID || got[0].Text != "next" || sub.Gap() != nil {
			t.Errorf("a subscriber %s got %s (gap %+v), want %d next, then after", name, texts(got), sub.Gap(), next.ID)
		}
	}
	got := awaitText(t, joiner, "after")
	if len(got) != 3 || got[0].Text != "confirmed" || got[1].ID != next.ID || got[1].Text != "next" || joiner.Gap() != nil {
		t.Errorf("a subscriber that joined while the publish was unconfirmed got %s (gap %+v), want confirmed, %d next, after",
			texts(got), joiner.Gap(), next.ID)
	}
}
