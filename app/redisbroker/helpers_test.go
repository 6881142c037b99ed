package redisbroker

import (
	"testing"
	"time"

	"herald/app"
)

// newTestHub is a hub with room for 16 messages per topic.
func newTestHub(t *testing.T) *app.Hub {
	t.Helper()
	hub, err := app.NewHub(app.HubOptions{MaxLagBytes: 1 << 20, MaxMessageBytes: 1 << 10, HistorySize: 16, HistoryTTL: time.Hour, MaxTopics: 100})
	if err != nil {
		t.Fatal(err)
	}
	return hub
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
