package app

import (
	"testing"
	"time"
)

func brokerMessage(topic string, id uint64, text string) *Message {
	return &Message{ID: id, Topic: topic, Time: time.Now(), Text: text}
}

// A shared broker's subscriber: the topic is seeded from the broker's
// history in the same step as joining, resume reads the seed, and messages
// the broker hands over afterwards follow with neither gap nor duplicate.
func TestSeededTopicResumesAndAcceptsInOrder(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	seed := &TopicSeed{Epoch: 100, SequenceStart: 100, LastID: 104, History: []*Message{
		brokerMessage("news", 103, "c"), brokerMessage("news", 104, "d"),
	}}
	s, err := hub.SubscribeSeeded(SubscribeRequest{Topic: "news", Resume: true, Since: 102}, seed)
	if err != nil {
		t.Fatal(err)
	}
	hub.Accept(brokerMessage("news", 104, "d again"), 100) // a duplicate, as the channel may bring one
	hub.Accept(brokerMessage("news", 105, "e"), 100)
	got := takeAll(s)
	var texts []string
	for _, m := range got {
		texts = append(texts, m.Text)
	}
	if len(texts) != 3 || texts[0] != "c" || texts[1] != "d" || texts[2] != "e" || s.Gap() != nil {
		t.Fatalf("got %v (gap %+v), want c d e with no gap", texts, s.Gap())
	}
	if pos := hub.Position("news"); !pos.Held || pos.LastID != 105 {
		t.Errorf("position %+v, want held at 105", pos)
	}
	// A second seed of a held topic changes nothing.
	other, err := hub.SubscribeSeeded(SubscribeRequest{Topic: "news", Resume: true, Since: 104},
		&TopicSeed{Epoch: 1, SequenceStart: 1, LastID: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := takeAll(other); len(got) != 1 || got[0].Text != "e" {
		t.Errorf("a second subscriber resumed to %v, want e", got)
	}
}

// Messages for a topic no one here asked for are not kept.
func TestAcceptSkipsTopicsNotHeld(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	if n := hub.Accept(brokerMessage("elsewhere", 7, "x"), 1); n != 0 || hub.Position("elsewhere").Held {
		t.Errorf("an unheld topic took a message: %d, %+v", n, hub.Position("elsewhere"))
	}
}

// When ids jump within one epoch (the broker's stream lost what came
// between), the subscribers are told exactly how many they missed, and go
// on from the new id.
func TestAcceptAfterLostIDsReportsTheGap(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	s, err := hub.SubscribeSeeded(SubscribeRequest{Topic: "trimmed", SkipAhead: true}, &TopicSeed{Epoch: 10, SequenceStart: 10, LastID: 10})
	if err != nil {
		t.Fatal(err)
	}
	hub.Accept(brokerMessage("trimmed", 11, "kept"), 10)
	hub.Accept(brokerMessage("trimmed", 500, "after the gap"), 10)
	// "kept" was not taken before the jump: it went with the old sequence,
	// and counts among the missing.
	got, gap, _ := s.take(nil, 4<<10)
	if len(got) != 1 || got[0].ID != 500 {
		t.Fatalf("got %d messages, want only the one after the gap", len(got))
	}
	if gap == nil || !gap.Known || gap.Since != 10 || gap.Missing != 489 {
		t.Fatalf("gap %+v, want 489 missing since 10", gap)
	}
}

// A message of another epoch (the broker lost the topic and started it
// again) starts a new sequence, and every subscriber is told that an
// unknown number may be lost: ids of two epochs cannot be subtracted.
func TestAcceptFromANewEpochReportsAnUnknownGap(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	s, err := hub.SubscribeSeeded(SubscribeRequest{Topic: "wiped"}, &TopicSeed{Epoch: 10, SequenceStart: 10, LastID: 10})
	if err != nil {
		t.Fatal(err)
	}
	hub.Accept(brokerMessage("wiped", 11, "before"), 10)
	if got := takeAll(s); len(got) != 1 {
		t.Fatalf("got %d messages before the wipe, want 1", len(got))
	}
	hub.Accept(brokerMessage("wiped", 900, "after"), 900)
	hub.Accept(brokerMessage("wiped", 901, "next"), 900)
	got, gap, _ := s.take(nil, 4<<10)
	if len(got) != 2 || got[0].Text != "after" || got[1].Text != "next" {
		t.Fatalf("got %d messages after the wipe, want after and next", len(got))
	}
	if gap == nil || gap.Known || gap.Since != 11 {
		t.Fatalf("gap %+v, want an unknown number lost since 11", gap)
	}
	if pos := hub.Position("wiped"); pos.Epoch != 900 || pos.LastID != 901 {
		t.Errorf("position %+v, want epoch 900 at 901", pos)
	}
}
