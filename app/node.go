package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Node is one Herald instance as its edge sees it, and the edge's one way
// into the domain. A publish goes through the broker, which numbers the
// message, keeps it and hands it to the subscribers of every instance; a
// subscriber registers with the hub through the broker, which first seeds
// the topic's history when it is shared; and the node answers for
// readiness and statistics. Run does the node's background work.
type Node struct {
	hub       *Hub
	broker    Broker
	listeners []PublishListener
	told      toldKeys // keyed publishes the listeners were told of
	log       *slog.Logger
	// sweepEvery is how often expired history is forgotten.
	sweepEvery time.Duration
}

// PublishListener is told of each message that a publish through this
// node acknowledged, once: a message that another instance published is
// told there. A retry of a keyed publish that only replays the first one's
// answer is not told again when this node told of the first; it is told
// when this node did not (the first's outcome was unknown, or another
// instance answered it, which can tell a message twice). Published runs
// in the publisher's request once the acknowledgement is decided, so it
// must never block.
type PublishListener interface {
	Published(m *Message)
}

// NewNode returns the node of hub and broker, which must be the broker
// made for hub, that tells listeners of its publishes.
func NewNode(hub *Hub, broker Broker, listeners ...PublishListener) *Node {
	return &Node{hub: hub, broker: broker, listeners: listeners, log: hub.log, sweepEvery: sweepInterval(hub.historyTTL)}
}

// sweepInterval is how often expired history is forgotten: often enough
// that memory follows the history TTL closely, rarely enough to cost
// nothing.
func sweepInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/10, time.Second), time.Minute)
}

// Publish publishes text to topic, and returns the message with how many
// subscribers it was handed to. key, unless empty, names the publish (see
// KeyedPublisher), so that a retry with the same key, after an answer that
// never came or an unknown outcome, does not publish it twice. An error
// means nothing was published, except one wrapping ErrPublishUnknown. The
// listeners are told of what was published, once: not of a retry that
// only replays an earlier publish's answer.
func (n *Node) Publish(ctx context.Context, topic, text, key string) (*Message, int, error) {
	var m *Message
	var delivered int
	var replayed bool
	var err error
	if keyed, ok := n.broker.(KeyedPublisher); ok && key != "" {
		m, delivered, replayed, err = keyed.PublishKeyed(ctx, topic, text, key)
	} else {
		m, delivered, err = n.broker.Publish(ctx, topic, text)
	}
	if now := n.hub.now(); err == nil && (!replayed || !n.told.seen(topic, key, now)) {
		if key != "" {
			n.told.add(topic, key, now)
		}
		for _, l := range n.listeners {
			l.Published(m)
		}
	}
	return m, delivered, err
}

// Subscribe registers a subscriber; see Hub.Subscribe.
func (n *Node) Subscribe(ctx context.Context, req SubscribeRequest) (*Subscriber, error) {
	return n.broker.Subscribe(ctx, req)
}

// Ready reports why the node cannot take publishes and subscribers now,
// or nil: it is shutting down, or its store or broker does not answer.
func (n *Node) Ready(ctx context.Context) error { return n.broker.Ready(ctx) }

// MaxMessageBytes is the largest message Publish accepts.
func (n *Node) MaxMessageBytes() int { return n.hub.maxMessageBytes }

// NodeStats is a snapshot of the node's counters.
type NodeStats struct {
	HubStats
	// Broker is what a shared broker says of itself; nil for the memory
	// broker, which is always up.
	Broker *BrokerStats
}

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() NodeStats {
	stats := NodeStats{HubStats: n.hub.Stats()}
	if b, ok := n.broker.(interface{ Stats() BrokerStats }); ok {
		s := b.Stats()
		stats.Broker = &s
	}
	return stats
}

// BrokerTopology is how the shared broker reaches its servers, as its
// last readiness check found them; nil for a broker that has none to
// describe, such as the memory broker.
func (n *Node) BrokerTopology() *BrokerTopology {
	b, ok := n.broker.(interface{ Topology() BrokerTopology })
	if !ok {
		return nil
	}
	t := b.Topology()
	return &t
}

// TopicSubscribers returns how many local subscribers each topic has, for
// topics that have any.
func (n *Node) TopicSubscribers() map[string]int { return n.hub.TopicSubscribers() }

// Shutdown refuses new subscribers and publishes, ends every subscription,
// and waits until every subscriber is closed or ctx ends; see
// Hub.Shutdown.
func (n *Node) Shutdown(ctx context.Context) error { return n.hub.Shutdown(ctx) }

// Run carries other instances' publishes to the hub and forgets expired
// history, until ctx ends. It returns an error only when the broker
// cannot go on.
func (n *Node) Run(ctx context.Context) error {
	ctx, stop := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		n.sweep(ctx)
	}()
	err := n.broker.Run(ctx)
	stop() // the broker gave up: the sweeper stops too
	<-swept
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	return nil
}

// sweep forgets expired history every sweepEvery until ctx ends.
func (n *Node) sweep(ctx context.Context) {
	ticker := time.NewTicker(n.sweepEvery)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			if err := n.hub.Sweep(); err != nil {
				n.log.Error("history sweep failed", "err", err)
			}
		}
	}
}
