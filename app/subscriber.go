package app

import (
	"context"
	"errors"
	"sync/atomic"
)

// Reasons a subscription ends, reported by Subscriber.Err.
var (
	// ErrSlowSubscriber: the subscriber's queue was full when a message
	// arrived, so it was disconnected rather than allowed to delay others.
	ErrSlowSubscriber = errors.New("subscriber too slow: queue full")
	// ErrHubClosed: the server is shutting down.
	ErrHubClosed = errors.New("hub closed: server shutting down")
	// ErrUnsubscribed: the connection went away and was unsubscribed.
	ErrUnsubscribed = errors.New("unsubscribed")
)

// Subscriber is one connection's subscription to a topic. The hub is its
// only producer and never blocks on it: messages wait in a bounded queue,
// and a subscriber whose queue is full is ended with ErrSlowSubscriber.
// Exactly one goroutine, the connection's writer, consumes Messages.
type Subscriber struct {
	id    uint64
	topic string
	label string // who is on the other end, for logs

	// released is set by Unsubscribe; guarded by the hub's mu.
	released bool

	queue chan *Message

	// Set by Subscribe, read-only afterwards.
	backlog  []*Message
	gap      *Gap
	presence chan struct{} // nil unless presence was asked for
	watchers *atomic.Int64 // the topic's subscriber count

	// ctx ends when the subscription does; its cause says why.
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func newSubscriber(id uint64, topic, label string, queueSize int) *Subscriber {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Subscriber{
		id:     id,
		topic:  topic,
		label:  label,
		queue:  make(chan *Message, queueSize),
		ctx:    ctx,
		cancel: cancel,
	}
}

// ID identifies the subscriber within its hub.
func (s *Subscriber) ID() uint64 { return s.id }

// Topic is the topic the subscriber receives.
func (s *Subscriber) Topic() string { return s.topic }

// Messages delivers the subscriber's messages in publish order. The hub
// never closes it; watch Done to learn that no more will come.
func (s *Subscriber) Messages() <-chan *Message { return s.queue }

// Done is closed when the subscription ends.
func (s *Subscriber) Done() <-chan struct{} { return s.ctx.Done() }

// Err reports why the subscription ended: ErrSlowSubscriber, ErrHubClosed or
// ErrUnsubscribed. It is nil while the subscription is live.
func (s *Subscriber) Err() error { return context.Cause(s.ctx) }

// Context ends when the subscription does, with Err as its cause.
func (s *Subscriber) Context() context.Context { return s.ctx }

// end finishes the subscription; only the first reason counts.
func (s *Subscriber) end(reason error) { s.cancel(reason) }

// Gap says that history no longer reached back to where a subscriber asked
// to resume: messages after Since were published but are no longer kept.
type Gap struct {
	// Since is the id the subscriber resumed after.
	Since uint64
	// Missing is how many messages are gone, when Known.
	Missing uint64
	// Known is false when Since came from a history the server no longer
	// has, such as before a restart without a store.
	Known bool
}

// Backlog is what the subscriber resumed with: kept messages, oldest first,
// to be written before anything from Messages. It is empty unless the
// subscription resumed.
func (s *Subscriber) Backlog() []*Message { return s.backlog }

// Gap reports messages lost before the Backlog, or nil.
func (s *Subscriber) Gap() *Gap { return s.gap }

// PresenceChanged receives when the topic's subscriber count may have
// changed since it last did; read the count with TopicSubscribers. It is
// nil, and never receives, unless the subscription asked for presence.
func (s *Subscriber) PresenceChanged() <-chan struct{} { return s.presence }

// TopicSubscribers is how many subscribers the topic has now, this one
// included while it is subscribed.
func (s *Subscriber) TopicSubscribers() int { return int(s.watchers.Load()) }
