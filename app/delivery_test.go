package app

import (
	"strings"
	"testing"
)

// TestNextSaysWhetherItStoppedAtTheCap: a writer that is told nothing
// waits for a wake-up, so Full must be true exactly when messages are left
// behind by the byte cap, and false when Next took all there was, even at
// exactly the cap.
func TestNextSaysWhetherItStoppedAtTheCap(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	s := subscribe(t, hub, "news")
	for range 3 {
		if _, _, err := hub.Publish("news", strings.Repeat("x", 500)); err != nil {
			t.Fatal(err)
		}
	}
	var d Delivery
	for i, want := range []struct {
		messages int
		full     bool
	}{{2, true}, {1, false}} {
		if !s.Next(&d, 1000) || len(d.Messages) != want.messages || d.Full != want.full {
			t.Fatalf("delivery %d: %d messages, Full %v; want %d, %v", i, len(d.Messages), d.Full, want.messages, want.full)
		}
		s.Sent(&d)
	}
	for range 2 {
		if _, _, err := hub.Publish("news", strings.Repeat("y", 500)); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Next(&d, 1000) || len(d.Messages) != 2 || d.Full {
		t.Fatalf("two messages that fill the cap exactly: %d messages, Full %v; want 2, false", len(d.Messages), d.Full)
	}
	s.Sent(&d)
	if s.Next(&d, 1000) || d.Full {
		t.Errorf("with nothing waiting, Next gave %d messages, Full %v", len(d.Messages), d.Full)
	}
}
