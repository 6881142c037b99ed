package app

import (
	"context"
	"testing"
)

// publishedLog records what a node tells its listeners.
type publishedLog struct{ messages []*Message }

func (l *publishedLog) Published(m *Message) { l.messages = append(l.messages, m) }

// A node tells its listeners of every publish it acknowledged, once, with
// the message as acknowledged, and of nothing it refused.
func TestNodeTellsListenersOfEachAcknowledgedPublish(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	first, second := &publishedLog{}, &publishedLog{}
	node := NewNode(hub, NewMemoryBroker(hub), first, second)

	m, _, err := node.Publish(context.Background(), "news", "hello", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := node.Publish(context.Background(), "news", "", ""); err == nil {
		t.Fatal("an empty message was published")
	}
	if _, _, err := node.Publish(context.Background(), "no spaces", "hello", ""); err == nil {
		t.Fatal("a message to a bad topic was published")
	}
	for _, log := range []*publishedLog{first, second} {
		if len(log.messages) != 1 || log.messages[0] != m {
			t.Errorf("a listener was told of %v, want only %v", log.messages, m)
		}
	}
}

// A retry with the same key only replays the first publish's answer: the
// listeners (Web Push) are not told again, so nothing is pushed twice.
func TestNodeTellsListenersOnceOfAKeyedPublishAndItsRetries(t *testing.T) {
	t.Parallel()
	hub := newTestHub(t)
	log := &publishedLog{}
	node := NewNode(hub, NewMemoryBroker(hub), log)
	for range 3 {
		if _, _, err := node.Publish(context.Background(), "news", "hello", "retry-me"); err != nil {
			t.Fatal(err)
		}
	}
	if len(log.messages) != 1 {
		t.Errorf("a publish retried twice with its key was told to the listeners %d times, want once", len(log.messages))
	}
}
