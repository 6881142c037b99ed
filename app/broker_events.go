// The hub as a shared broker sees it: messages whose ids the broker gave
// them, which the hub keeps and fans out as it does its own but does not
// number; topics seeded from the broker's history; whether the broker
// answers; and subscriber counts across instances.

package app

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// TopicPosition is where a topic a broker seeded stands on this instance.
type TopicPosition struct {
	// LastID is the newest id held here; 0 when the topic is not held.
	LastID uint64
	// Held is false for a topic the broker has not seeded here: its
	// messages are of no use to anyone on this instance.
	Held bool
	// Epoch is the broker's run of the topic's sequence that LastID is of.
	Epoch uint64
}

// Position returns where topic stands here.
func (h *Hub) Position(topic string) TopicPosition {
	h.mu.Lock()
	t, ok := h.topics[topic]
	h.mu.Unlock()
	if !ok {
		return TopicPosition{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.removed || !t.seeded {
		return TopicPosition{}
	}
	return TopicPosition{LastID: t.lastID, Held: true, Epoch: t.epoch}
}

// HeldTopics returns the last id of every topic a broker seeded here, for
// the broker to catch up on after it lost its connection.
func (h *Hub) HeldTopics() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	held := make(map[string]uint64, len(h.topics))
	for name, t := range h.topics {
		t.mu.Lock()
		if t.seeded {
			held[name] = t.lastID
		}
		t.mu.Unlock()
	}
	return held
}

// TopicSeed is where a broker says a topic stands, for an instance that
// does not hold the topic yet: its sequence began at SequenceStart, its
// last id is LastID, and History holds its kept messages, oldest first,
// with consecutive ids ending at LastID (or none).
type TopicSeed struct {
	// Epoch names the broker's run of the topic's sequence. A broker that
	// lost the topic (its store was wiped, or the topic expired there)
	// starts a new run: ids of two runs cannot be compared, so a message
	// of another epoch than the last one's breaks the sequence with a gap
	// of unknown size.
	Epoch         uint64
	SequenceStart uint64
	LastID        uint64
	History       []*Message
}

// ErrNotSeeded is SubscribeSeeded's answer when it was given no seed for a
// topic that the hub does not hold: the broker reads one and calls again.
var ErrNotSeeded = errors.New("topic not held here: seed it from the broker")

// SubscribeSeeded registers a subscriber, as Subscribe does, to a topic
// whose ids a shared broker gives. Whether the hub holds the topic is
// decided under the lock that forgets a topic when its last subscriber
// leaves, so that a join racing that leave never finds the topic gone or
// unseeded: when the hub does not hold it, SubscribeSeeded starts it from
// seed, or, when seed is nil, changes nothing and returns ErrNotSeeded.
// The broker must keep Accept out between reading a seed and passing it.
func (h *Hub) SubscribeSeeded(req SubscribeRequest, seed *TopicSeed) (*Subscriber, error) {
	return h.subscribe(req, true, seed)
}

// holdSeededLocked makes sure the hub holds topic as a shared broker's,
// starting it from seed when it does not. The caller holds h.mu.
func (h *Hub) holdSeededLocked(topic string, seed *TopicSeed) error {
	t, ok := h.topics[topic]
	if ok {
		t.mu.Lock()
		seeded := t.seeded
		t.mu.Unlock()
		if seeded {
			return nil
		}
	}
	if seed == nil {
		return ErrNotSeeded
	}
	if !ok && len(h.topics) >= h.maxTopics {
		return fmt.Errorf("%w: the server holds its limit of %d", ErrTooManyTopics, h.maxTopics)
	}
	h.seedLocked(topic, seed)
	return nil
}

// seedLocked makes topic's state from a broker's seed. Messages older than
// the history TTL are left out. The caller holds h.mu and has found that
// the hub does not hold the topic seeded.
func (h *Hub) seedLocked(topic string, seed *TopicSeed) {
	if old, ok := h.topics[topic]; ok {
		// Unseeded, so no subscriber of a shared broker is in it: every
		// one joins through SubscribeSeeded.
		old.mu.Lock()
		old.removed = true
		old.mu.Unlock()
	}
	t := h.newTopic(topic, max(min(seed.SequenceStart, seed.LastID+1), 1))
	t.lastID, t.assigned, t.seeded, t.epoch = seed.LastID, seed.LastID, true, seed.Epoch
	t.windowStart = seed.LastID + 1
	history := seed.History
	cutoff := h.now().Add(-h.historyTTL)
	for len(history) > 0 && history[0].Time.Before(cutoff) {
		history = history[1:]
	}
	if len(history) > 0 {
		t.lastID = history[0].ID - 1
		t.windowStart = history[0].ID
		for _, m := range history {
			t.keep(m, h.historySize)
		}
	}
	h.topics[t.name] = t
}

// Accept keeps a message that a broker numbered in the run epoch of the
// topic's sequence (see TopicSeed), published on this instance or another,
// and hands it to the topic's subscribers, as Publish does for its own. A
// topic's messages must come in id order: one at or below the topic's
// last id is a duplicate and is dropped. One that does not follow the last
// id means the broker lost what came between (its stream was trimmed
// while this instance was away): the topic starts a new sequence at m, and
// its subscribers are told how many they missed, as resuming ones are.
// One of another epoch starts a new sequence too, and its subscribers are
// told that an unknown number may be lost. It returns how many subscribers
// m was handed to. Acknowledged messages are never refused. A topic that
// is not held here (no subscriber ever asked for it, or it was forgotten)
// is skipped: a subscriber that comes seeds it from the broker's history.
func (h *Hub) Accept(m *Message, epoch uint64) int {
	h.mu.Lock()
	t, ok := h.topics[m.Topic]
	if h.closed || !ok {
		h.mu.Unlock()
		return 0
	}
	t.mu.Lock()
	h.mu.Unlock()
	defer t.mu.Unlock()
	switch {
	case !t.seeded || t.removed:
		return 0
	case epoch != t.epoch:
		h.breakSequenceLocked(t, m.ID, false)
		h.log.Warn("topic's sequence started again: the broker lost the topic, and how many messages is unknown", "topic", t.name, "resumes_at", m.ID)
		t.epoch = epoch
	case m.ID <= t.lastID:
		return 0
	case m.ID > t.lastID+1:
		h.breakSequenceLocked(t, m.ID, true)
		h.log.Warn("topic's sequence broke: the broker lost messages", "topic", t.name, "resumes_at", m.ID)
	}
	h.expireLocked(t)
	t.assigned = m.ID
	return h.deliverLocked(t, m)
}

// breakSequenceLocked starts t's sequence again at next, after ids that
// will never come: the log before them goes, and each subscriber that may
// have missed some is told, with how many when known. The caller holds
// t.mu.
func (h *Hub) breakSequenceLocked(t *topicState, next uint64, known bool) {
	for _, s := range t.subscribers {
		if known && s.cursor >= next {
			continue
		}
		missing := uint64(0)
		if known {
			missing = next - s.cursor
		}
		switch {
		case s.pendingGap == nil:
			s.pendingGap = &Gap{Since: s.cursor - 1, Missing: missing, Known: known}
		case known:
			s.pendingGap.Missing += missing
		default:
			s.pendingGap.Missing, s.pendingGap.Known = 0, false
		}
		if s.cursor <= t.lastID { // what it had yet to take here is gone too
			h.stats.dropped.Add(t.lastID + 1 - s.cursor)
		}
		s.cursor = next
		s.lagBase = t.totalBytes
	}
	for t.log.len() > 0 {
		t.log.popFront()
	}
	t.sequenceStart, t.windowStart = next, next
	t.lastID, t.assigned = next-1, next-1
}

// brokerStatus is whether a shared broker answers, with a generation that
// rises at every change, so that each writer reports each change once.
type brokerStatus struct {
	mu   sync.Mutex
	gen  uint64
	down bool
}

func (b *brokerStatus) read() (gen uint64, up bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gen, !b.down
}

// SetBrokerUp records whether the shared broker answers, and when that
// changes wakes every subscriber, whose writer tells JSON and SSE clients:
// while it is down nothing new arrives, and once it is back what was
// published meanwhile follows.
func (h *Hub) SetBrokerUp(up bool) {
	h.brokerStatus.mu.Lock()
	changed := h.brokerStatus.down == up
	if changed {
		h.brokerStatus.down = !up
		h.brokerStatus.gen++
	}
	h.brokerStatus.mu.Unlock()
	if !changed {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.topics {
		t.mu.Lock()
		for _, s := range t.subscribers {
			s.signal()
		}
		t.mu.Unlock()
	}
}

// countWatch notes the topics whose local subscriber count changes, once
// a shared broker asks (WatchCounts): the broker tells the other
// instances. Until then it costs a load per change.
type countWatch struct {
	on      atomic.Bool
	mu      sync.Mutex
	changed map[string]struct{}
	wake    chan struct{}
}

// note records that topic's count changed. It runs under the topic's
// lock, so it only notes it.
func (w *countWatch) note(topic string) {
	if !w.on.Load() {
		return
	}
	w.mu.Lock()
	w.changed[topic] = struct{}{}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // already told
	}
}

// WatchCounts starts noting the topics whose local subscriber count
// changes, and returns the channel that says when there are some to take
// with TakeCountChanges. A shared broker calls it before anyone can
// subscribe.
func (h *Hub) WatchCounts() <-chan struct{} {
	h.counts.mu.Lock()
	if h.counts.changed == nil {
		h.counts.changed = map[string]struct{}{}
	}
	h.counts.mu.Unlock()
	h.counts.on.Store(true)
	return h.counts.wake
}

// TakeCountChanges returns the topics whose local subscriber count changed
// since the last call, with their counts now: 0 for a topic nobody here
// watches any more.
func (h *Hub) TakeCountChanges() map[string]int {
	h.counts.mu.Lock()
	changed := h.counts.changed
	h.counts.changed = map[string]struct{}{}
	h.counts.mu.Unlock()
	counts := make(map[string]int, len(changed))
	for topic := range changed {
		counts[topic] = h.LocalSubscribers(topic)
	}
	return counts
}

// LocalSubscribers is how many subscribers topic has on this instance.
func (h *Hub) LocalSubscribers(topic string) int {
	h.mu.Lock()
	t, ok := h.topics[topic]
	h.mu.Unlock()
	if !ok {
		return 0
	}
	return int(t.watchers.Load())
}

// SetSubscribersElsewhere records how many subscribers topic has on other
// instances, and tells the local subscribers that asked for presence when
// that changes.
func (h *Hub) SetSubscribersElsewhere(topic string, n int) {
	h.mu.Lock()
	t, ok := h.topics[topic]
	h.mu.Unlock()
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.elsewhere.Swap(int64(n)) != int64(n) {
		t.tellWatchersLocked()
	}
}
