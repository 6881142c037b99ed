package history

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"herald/app"
)

// fakeClock is a clock tests move by hand, so history can expire without
// waiting.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newHistoryHub is a hub that keeps size messages per topic for ttl, in
// store, on clock (nil: the real one).
func newHistoryHub(t *testing.T, size int, ttl time.Duration, clock *fakeClock, store app.Store) *app.Hub {
	t.Helper()
	opts := app.HubOptions{MaxLagBytes: 1 << 20, MaxMessageBytes: 1 << 10, HistorySize: size, HistoryTTL: ttl, MaxTopics: 100, Store: store}
	if clock != nil {
		opts.Now = clock.Now
	}
	hub, err := app.NewHub(opts)
	if err != nil {
		t.Fatal(err)
	}
	return hub
}

func publishN(t *testing.T, hub *app.Hub, topic string, n int) []*app.Message {
	t.Helper()
	out := make([]*app.Message, 0, n)
	for i := range n {
		m, _, err := hub.Publish(topic, fmt.Sprintf("%s-%d", topic, i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func resume(t *testing.T, hub *app.Hub, topic string, since uint64) *app.Subscriber {
	t.Helper()
	s, err := hub.Subscribe(app.SubscribeRequest{Topic: topic, Label: t.Name(), Resume: true, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// takeAll is every message that waits for s.
func takeAll(s *app.Subscriber) []*app.Message {
	var got []*app.Message
	var d app.Delivery
	for s.Next(&d, 4<<10) {
		got = append(got, d.Messages...)
		s.Sent(&d)
	}
	return got
}

func ids(ms []*app.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// commit is one topic's commit of messages.
func commit(messages []*app.Message, sequenceStart, keepFrom uint64) app.Commit {
	return app.Commit{Messages: messages, SequenceStart: sequenceStart, KeepFrom: keepFrom}
}
