package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Reasons a message is refused by Publish.
var (
	ErrEmptyMessage    = errors.New("message is empty")
	ErrMessageTooLarge = errors.New("message is too large")
	ErrInvalidUTF8     = errors.New("message is not valid UTF-8")
)

// HubOptions configures a Hub.
type HubOptions struct {
	// QueueSize is how many messages may wait for one subscriber.
	QueueSize int
	// MaxMessageBytes is the largest message Publish accepts.
	MaxMessageBytes int
	// Logger receives slow-subscriber disconnects; nil discards them.
	Logger *slog.Logger
}

// Hub owns every local subscription and hands each published message to the
// subscribers of its topic. Publish never blocks on a subscriber: a full
// queue ends that subscriber, and everyone else carries on in order.
//
// The hub starts no goroutines, so there is nothing of its own to stop;
// Shutdown ends the subscriptions and waits for their connections to go.
type Hub struct {
	queueSize       int
	maxMessageBytes int
	log             *slog.Logger

	// Lock order: mu before any topicState.mu.
	mu               sync.Mutex
	topics           map[string]*topicState
	nextSubscriberID uint64
	live             int           // subscribed and not yet unsubscribed (connections still open)
	closed           bool          // set by Shutdown; refuses new work
	drained          chan struct{} // closed once closed and live == 0

	stats hubCounters
}

// topicState is one topic's subscribers and id sequence. Its lock makes
// publishing to a topic one critical section, so ids follow publish order
// and every subscriber sees the same order.
type topicState struct {
	mu          sync.Mutex
	lastID      uint64
	subscribers map[*Subscriber]struct{}
}

type hubCounters struct {
	published       atomic.Uint64
	delivered       atomic.Uint64
	dropped         atomic.Uint64
	slowDisconnects atomic.Uint64
}

// HubStats is a snapshot of the hub's counters since it started.
type HubStats struct {
	Subscribers     int    // live subscriptions
	Published       uint64 // messages accepted by Publish
	Delivered       uint64 // message handed to a subscriber's queue, counted per subscriber
	Dropped         uint64 // messages handed to a subscriber but never written to it
	SlowDisconnects uint64 // subscribers ended with ErrSlowSubscriber
}

// NewHub returns a hub ready for subscribers.
func NewHub(opts HubOptions) (*Hub, error) {
	if opts.QueueSize < 1 {
		return nil, fmt.Errorf("new hub: queue size %d is below 1", opts.QueueSize)
	}
	if opts.MaxMessageBytes < 1 {
		return nil, fmt.Errorf("new hub: max message bytes %d is below 1", opts.MaxMessageBytes)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{
		queueSize:       opts.QueueSize,
		maxMessageBytes: opts.MaxMessageBytes,
		log:             opts.Logger,
		topics:          make(map[string]*topicState),
		drained:         make(chan struct{}),
	}, nil
}

// Subscribe registers a subscriber to topic. label names the other end in
// logs. Every message published after Subscribe returns reaches the
// subscriber's queue, until the subscription ends.
func (h *Hub) Subscribe(topic, label string) (*Subscriber, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	h.nextSubscriberID++
	s := newSubscriber(h.nextSubscriberID, topic, label, h.queueSize)
	t := h.topicLocked(topic)
	t.mu.Lock()
	t.subscribers[s] = struct{}{}
	t.mu.Unlock()
	h.live++
	return s, nil
}

// Leave stops delivery to s at once and ends it with ErrUnsubscribed,
// unless it had already ended for another reason. Its connection may still
// be closing: the subscription keeps its place, which Shutdown waits for,
// until Unsubscribe. Calling Leave again is harmless.
func (h *Hub) Leave(s *Subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leaveLocked(s)
}

// Unsubscribe is called once the subscriber's connection is closed: it
// leaves, if that had not happened yet, and gives up the subscription's
// place. Calling it again is harmless.
func (h *Hub) Unsubscribe(s *Subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leaveLocked(s)
	if s.released {
		return
	}
	s.released = true
	// Nothing is queued for s any more, and its writer has stopped: what is
	// left in its queue was never written.
	if left := len(s.queue); left > 0 {
		h.stats.dropped.Add(uint64(left))
		h.log.Warn("subscriber gone with undelivered messages",
			"subscriber", s.label, "topic", s.topic, "dropped", left, "reason", s.Err())
	}
	h.live--
	if h.closed && h.live == 0 {
		close(h.drained)
	}
}

func (h *Hub) leaveLocked(s *Subscriber) {
	// An evicted subscriber has already left its topic.
	if t, ok := h.topics[s.topic]; ok {
		t.mu.Lock()
		delete(t.subscribers, s)
		t.mu.Unlock()
	}
	s.end(ErrUnsubscribed)
}

// Publish stamps text with the topic's next id and the current time and
// hands it to every subscriber of the topic. It returns the message and how
// many subscribers it was handed to.
func (h *Hub) Publish(topic, text string) (*Message, int, error) {
	if err := h.checkText(text); err != nil {
		return nil, 0, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, 0, ErrHubClosed
	}
	t := h.topicLocked(topic)
	h.mu.Unlock()

	t.mu.Lock()
	defer t.mu.Unlock()
	t.lastID++
	m := &Message{ID: t.lastID, Topic: topic, Time: time.Now(), Text: text}
	delivered := 0
	for s := range t.subscribers {
		select {
		case s.queue <- m:
			delivered++
		default:
			h.evictLocked(t, s)
		}
	}
	h.stats.published.Add(1)
	h.stats.delivered.Add(uint64(delivered))
	return m, delivered, nil
}

// evictLocked ends a subscriber whose queue is full. The message in hand is
// dropped here; what is still queued is counted when the connection is
// released. The caller holds t.mu.
func (h *Hub) evictLocked(t *topicState, s *Subscriber) {
	delete(t.subscribers, s)
	s.end(ErrSlowSubscriber)
	h.stats.dropped.Add(1)
	h.stats.slowDisconnects.Add(1)
	h.log.Warn("disconnected slow subscriber: queue full",
		"subscriber", s.label, "topic", s.topic, "queue_size", h.queueSize)
}

func (h *Hub) checkText(text string) error {
	switch {
	case text == "":
		return ErrEmptyMessage
	case len(text) > h.maxMessageBytes:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessageTooLarge, len(text), h.maxMessageBytes)
	case !utf8.ValidString(text):
		return ErrInvalidUTF8
	}
	return nil
}

// MaxMessageBytes is the largest message Publish accepts.
func (h *Hub) MaxMessageBytes() int { return h.maxMessageBytes }

// Closed reports whether Shutdown has begun.
func (h *Hub) Closed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// Shutdown refuses new subscribers and publishes, ends every subscription
// with ErrHubClosed, and waits until every subscriber has unsubscribed or
// ctx ends.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		for _, t := range h.topics {
			t.mu.Lock()
			for s := range t.subscribers {
				s.end(ErrHubClosed)
				delete(t.subscribers, s)
			}
			t.mu.Unlock()
		}
		if h.live == 0 {
			close(h.drained)
		}
	}
	h.mu.Unlock()

	select {
	case <-h.drained:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("hub shutdown: subscribers still connected: %w", ctx.Err())
	}
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() HubStats {
	h.mu.Lock()
	live := h.live
	h.mu.Unlock()
	return HubStats{
		Subscribers:     live,
		Published:       h.stats.published.Load(),
		Delivered:       h.stats.delivered.Load(),
		Dropped:         h.stats.dropped.Load(),
		SlowDisconnects: h.stats.slowDisconnects.Load(),
	}
}

// topicLocked returns the state of topic, creating it. The caller holds h.mu.
func (h *Hub) topicLocked(topic string) *topicState {
	t, ok := h.topics[topic]
	if !ok {
		t = &topicState{subscribers: make(map[*Subscriber]struct{})}
		h.topics[topic] = t
	}
	return t
}
