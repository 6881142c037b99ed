package app

import (
	"context"
	"errors"
)

// Reasons a shared broker gives for not acknowledging a publish.
var (
	// ErrBrokerUnavailable wraps a publish the broker could not take. It
	// was not acknowledged and reaches no one.
	ErrBrokerUnavailable = errors.New("broker unavailable")
	// ErrPublishUnknown wraps a publish whose outcome is unknown. From a
	// shared broker: the broker took it, but did not answer in time, or
	// could not confirm in time that its replicas hold it. It
	// reaches every subscriber once, or no one. A retry with the same key
	// (see KeyedPublisher) publishes it once in all. From the history file,
	// with ErrStore: the disk failed a write, and every way to make sure
	// that the write never comes back after a crash failed too. It reached
	// no one, may appear in history after a restart, and its id is never
	// given to another message.
	ErrPublishUnknown = errors.New("publish outcome unknown")
	// ErrKeyReused wraps a keyed publish whose key came with another
	// message: it was not published.
	ErrKeyReused = errors.New("publish key already used for another message")
)

// KeyedPublisher is a Broker whose publishes can carry a key that the
// publisher chose: a publish with a key that the broker has seen on the
// topic is not published again, but answered with the first one's
// message, so that a publisher can retry one whose outcome was unknown.
type KeyedPublisher interface {
	// PublishKeyed is Publish with a key that names the publish. replayed
	// says that the key named an earlier publish, whose message it
	// returns: nothing was published now.
	PublishKeyed(ctx context.Context, topic, text, key string) (m *Message, subscribers int, replayed bool, err error)
}

// Broker carries publishes to every subscriber, on this instance and, for a
// shared broker, on every other instance. It owns what instances must agree
// on: each message's id, the order of a topic, and the history a
// subscriber resumes from. The hub owns the local subscribers and their
// cursors.
type Broker interface {
	// Publish numbers text as topic's next message, keeps it as the broker
	// keeps history, and returns it with how many subscribers it was
	// handed to here (a shared broker hands it to the others as it comes
	// back). An error means it was not published, except one wrapping
	// ErrPublishUnknown.
	Publish(ctx context.Context, topic, text string) (*Message, int, error)
	// Subscribe registers a local subscriber with the hub. A shared broker
	// first gives the hub the topic's history and position, so that
	// resuming works on whichever instance a client reaches.
	Subscribe(ctx context.Context, req SubscribeRequest) (*Subscriber, error)
	// Run carries other instances' publishes to the hub until ctx ends.
	// It returns an error only when it cannot go on.
	Run(ctx context.Context) error
	// Ready reports why the broker cannot take publishes now, or nil.
	Ready(ctx context.Context) error
	// Close releases the broker's connections; Run has returned.
	Close() error
}

// BrokerStats is what a shared broker reports for metrics: whether it
// answered last time, and how many of its calls have failed.
type BrokerStats struct {
	Up     bool
	Errors uint64
}

// BrokerTopology is how a shared broker reaches its servers, as its last
// readiness check found them.
type BrokerTopology struct {
	// Mode names how: for Redis, "single", "sentinel" or "cluster".
	Mode string
	// Master is the address of the server that takes writes, where the
	// broker asks for it (Sentinel); "" when none was found.
	Master string
	// Replicas is how many replicas the master has, where the broker asks
	// for them (Sentinel); nil where it does not.
	Replicas *int
	// Masters counts the servers that take writes, and Answering those of
	// them that answered, where the broker counts them (Cluster); nil
	// where it does not.
	Masters, Answering *int
}

// BrokerEventHandler is the hub as a shared broker (one that several
// instances publish through) sees it. The broker hands it every message
// any instance publishes, and keeps it told of how the broker and the
// topics stand. *Hub implements it; a shared broker is given it when it is
// made, and never reaches into the hub otherwise.
type BrokerEventHandler interface {
	// CheckMessage reports why text cannot be published to topic now, or
	// nil: a bad topic name or text, or a hub shutting down.
	CheckMessage(topic, text string) error
	// SubscribeSeeded registers a local subscriber to a topic whose ids
	// the broker gives; see Hub.SubscribeSeeded.
	SubscribeSeeded(req SubscribeRequest, seed *TopicSeed) (*Subscriber, error)
	// Position is where topic stands here.
	Position(topic string) TopicPosition
	// HeldTopics is the last id of every topic the broker seeded here.
	HeldTopics() map[string]uint64
	// Accept keeps and fans out a message the broker numbered, of the
	// given epoch of its topic's sequence; see Hub.Accept.
	Accept(m *Message, epoch uint64) int
	// SetBrokerUp says whether the broker answers.
	SetBrokerUp(up bool)
	// WatchCounts starts noting the topics whose local subscriber count
	// changes, and returns the channel that says when there are some.
	WatchCounts() <-chan struct{}
	// TakeCountChanges returns the topics whose local subscriber count
	// changed since the last call, with their counts now.
	TakeCountChanges() map[string]int
	// LocalSubscribers is how many subscribers topic has here.
	LocalSubscribers(topic string) int
	// SetSubscribersElsewhere records how many subscribers topic has on
	// the other instances.
	SetSubscribersElsewhere(topic string, n int)
	// Ready reports why the hub cannot take work, or nil.
	Ready() error
}

var _ BrokerEventHandler = (*Hub)(nil)

// MemoryBroker is the broker of a single instance: the hub numbers
// messages itself and keeps history in memory, or in its store.
type MemoryBroker struct {
	hub *Hub
}

var (
	_ Broker         = (*MemoryBroker)(nil)
	_ KeyedPublisher = (*MemoryBroker)(nil)
)

// NewMemoryBroker returns the broker that publishes straight to hub.
func NewMemoryBroker(hub *Hub) *MemoryBroker { return &MemoryBroker{hub: hub} }

// Publish publishes through the hub.
func (b *MemoryBroker) Publish(_ context.Context, topic, text string) (*Message, int, error) {
	return b.hub.Publish(topic, text)
}

// PublishKeyed publishes through the hub, which remembers the key; see
// Hub.PublishKeyed.
func (b *MemoryBroker) PublishKeyed(_ context.Context, topic, text, key string) (*Message, int, bool, error) {
	return b.hub.PublishKeyed(topic, text, key)
}

// Subscribe subscribes with the hub, which holds every topic's history.
func (b *MemoryBroker) Subscribe(_ context.Context, req SubscribeRequest) (*Subscriber, error) {
	return b.hub.Subscribe(req)
}

// Run waits for ctx: there are no other instances.
func (b *MemoryBroker) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Ready is the hub's readiness.
func (b *MemoryBroker) Ready(context.Context) error { return b.hub.Ready() }

// Close has nothing to release.
func (b *MemoryBroker) Close() error { return nil }
