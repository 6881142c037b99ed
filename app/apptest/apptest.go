// Package apptest holds what the tests of packages built on app share: a
// hub sized for tests, a clock that tests move by hand, and ways to publish
// and take messages without a network. Like net/http/httptest, it is
// imported only by tests.
//
// app's own tests cannot import it (app would import itself), so they keep
// their own few helpers, which reach the hub's unexported parts.
package apptest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"herald/app"
)

// Clock is a clock that tests move by hand, so that history can expire
// without waiting.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock is a clock that reads start until it is moved.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// NewHub is a hub built from opts, with the sizes that opts leaves at zero
// set for tests: 1 MiB of lag, 1 KiB messages, 16 messages of history per
// topic for an hour, and 100 topics.
func NewHub(t testing.TB, opts app.HubOptions) *app.Hub {
	t.Helper()
	if opts.MaxLagBytes == 0 {
		opts.MaxLagBytes = 1 << 20
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = 1 << 10
	}
	if opts.HistorySize == 0 {
		opts.HistorySize = 16
	}
	if opts.HistoryTTL == 0 {
		opts.HistoryTTL = time.Hour
	}
	if opts.MaxTopics == 0 {
		opts.MaxTopics = 100
	}
	hub, err := app.NewHub(opts)
	if err != nil {
		t.Fatalf("new hub: %v", err)
	}
	return hub
}

// PublishN publishes n messages on topic, named topic-0, topic-1 and so
// on, and returns them in order.
func PublishN(t testing.TB, hub *app.Hub, topic string, n int) []*app.Message {
	t.Helper()
	out := make([]*app.Message, 0, n)
	for i := range n {
		m, _, err := hub.Publish(topic, fmt.Sprintf("%s-%d", topic, i))
		if err != nil {
			t.Fatalf("publish %s-%d: %v", topic, i, err)
		}
		out = append(out, m)
	}
	return out
}

// TakeAll is every message that waits for s, taken as a connection's
// writer takes them.
func TakeAll(s *app.Subscriber) []*app.Message {
	var got []*app.Message
	var d app.Delivery
	for s.Next(&d, 4<<10) {
		got = append(got, d.Messages...)
		s.Sent(&d)
	}
	return got
}

// IDs is the id of each message in ms.
func IDs(ms []*app.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}
