package app

import (
	"strings"
	"testing"
	"time"
)

// BenchmarkPublish is one publish to a topic with no subscribers, history
// in memory.
func BenchmarkPublish(b *testing.B) {
	hub := newBenchHub(b, nil)
	text := strings.Repeat("x", 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := hub.Publish("bench", text); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFanOut is one publish to 1,000 subscribers, each of which takes
// what was published, as their writers do. It measures the hub's part of
// fan-out, without sockets.
func BenchmarkFanOut(b *testing.B) {
	hub := newBenchHub(b, nil)
	subs := make([]*Subscriber, 1000)
	for i := range subs {
		s, err := hub.Subscribe(SubscribeRequest{Topic: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		subs[i] = s
	}
	text := strings.Repeat("x", 64)
	batch := make([]*Message, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := hub.Publish("bench", text); err != nil {
			b.Fatal(err)
		}
		for _, s := range subs {
			batch, _, _ = s.take(batch[:0], 64<<10)
		}
	}
	b.ReportMetric(float64(b.N*len(subs))/b.Elapsed().Seconds(), "deliveries/s")
}

func newBenchHub(b *testing.B, store Store) *Hub {
	b.Helper()
	hub, err := NewHub(HubOptions{MaxLagBytes: 16 << 20, MaxMessageBytes: 64 << 10, HistorySize: 1000, HistoryTTL: time.Hour, MaxTopics: 100, Store: store})
	if err != nil {
		b.Fatal(err)
	}
	return hub
}
