package history

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald/app"
)

// BenchmarkDurableAppend is one commit to the history file, through its
// journal as Herald runs it and straight to bbolt: one message, or a group
// of 16 as concurrent publishers share a commit.
func BenchmarkDurableAppend(b *testing.B) {
	stores := []struct {
		name string
		open func(string) (app.Store, error)
	}{
		{"journal", func(path string) (app.Store, error) { return Open(path) }},
		{"bbolt", func(path string) (app.Store, error) { return OpenBolt(path) }},
	}
	for _, kind := range stores {
		for _, group := range []int{1, 16} {
			b.Run(fmt.Sprintf("store=%s/messages=%d", kind.name, group), func(b *testing.B) {
				benchmarkDurableAppend(b, kind.open, group)
			})
		}
	}
}

func benchmarkDurableAppend(b *testing.B, open func(string) (app.Store, error), group int) {
	store, err := open(filepath.Join(b.TempDir(), "history.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	text := strings.Repeat("x", 64)
	next := uint64(1)
	messages := make([]*app.Message, group)
	b.ReportAllocs()
	for b.Loop() {
		for i := range messages {
			messages[i] = &app.Message{ID: next, Topic: "bench", Time: time.Now(), Text: text}
			next++
		}
		// Keep the newest 1,000, as history.size does.
		if err := store.Append([]app.Commit{commit(messages, 1, max(next, 1000)-1000)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*group)/b.Elapsed().Seconds(), "messages/s")
}

// BenchmarkConcurrentPublish is 16 publishers publishing at once through
// the hub, to one topic or each to its own, with history in memory or in
// a history file as Herald runs it (journal, group commit, the default
// commit delay). The durable rate over the in-memory rate is what the
// history file costs publishers.
func BenchmarkConcurrentPublish(b *testing.B) {
	const publishers = 16
	for _, history := range []string{"memory", "file"} {
		for _, topics := range []int{1, 16} {
			b.Run(fmt.Sprintf("history=%s/topics=%d", history, topics), func(b *testing.B) {
				var store app.Store
				if history == "file" {
					s, err := Open(filepath.Join(b.TempDir(), "history.db"))
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					store = s
				}
				hub, err := app.NewHub(app.HubOptions{MaxLagBytes: 16 << 20, MaxMessageBytes: 64 << 10, HistorySize: 1000, HistoryTTL: time.Hour,
					MaxTopics: 100, Store: store, CommitDelay: time.Millisecond}) // history.commit_delay's default
				if err != nil {
					b.Fatal(err)
				}
				text := strings.Repeat("x", 64)
				var left atomic.Int64
				left.Store(int64(b.N))
				var wg sync.WaitGroup
				b.ResetTimer()
				for p := range publishers {
					topic := fmt.Sprint("bench-", p%topics)
					wg.Go(func() {
						for left.Add(-1) >= 0 {
							if _, _, err := hub.Publish(topic, text); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
			})
		}
	}
}
