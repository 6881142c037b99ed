package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons a message is refused by Publish.
var (
	ErrEmptyMessage    = errors.New("message is empty")
	ErrMessageTooLarge = errors.New("message is too large")
	ErrInvalidUTF8     = errors.New("message is not valid UTF-8")
	// ErrTooManyTopics: the hub holds its maximum number of topics and the
	// request would add one.
	ErrTooManyTopics = errors.New("too many topics")
)

// HubOptions configures a Hub.
type HubOptions struct {
	// MaxLagBytes is how far, in bytes of message text, a subscriber may
	// fall behind the newest message of its topic before it is ended with
	// ErrSlowSubscriber. Lag is counted in bytes rather than messages so
	// that a busy server, whose healthy subscribers are all a little
	// behind, does not mistake many small messages for a stalled client.
	MaxLagBytes int
	// MaxMessageBytes is the largest message Publish accepts.
	MaxMessageBytes int
	// HistorySize is how many recent messages each topic keeps for resuming
	// subscribers; 0 keeps none.
	HistorySize int
	// HistoryTTL is how long a message is kept for resuming subscribers.
	HistoryTTL time.Duration
	// MaxTopics bounds the topics the hub holds at once, counting topics
	// with subscribers or kept history.
	MaxTopics int
	// Store, when set, keeps history on disk: a publish returns only once
	// the message is stored. Nil keeps history in memory only.
	Store Store
	// CommitDelay is how long the publish that leads a commit to the store
	// may wait for others, of any topic, to join it, and only when the last
	// commit was shared: then it waits until as many are pending as last
	// time, or CommitDelay has passed. 0 never waits.
	CommitDelay time.Duration
	// Logger receives slow-subscriber disconnects; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests move it to expire history.
	Now func() time.Time
}

// Hub owns every local subscription and each topic's log, and wakes the
// subscribers of a topic when a message is published to it. Publish never
// blocks on a subscriber: each reads the shared log through its own
// cursor, a subscriber that falls more than MaxLagBytes behind is ended,
// and everyone else carries on in order.
//
// Ids: a topic's ids rise by one per message. A topic that starts afresh
// (first use, after its history was forgotten, or after a restart without a
// store) starts at the current Unix time in microseconds, so its ids stay
// above any id an earlier run could have given out, unless that run
// averaged more than a million messages a second on the topic. A client
// resuming from an id of an earlier run therefore never skips new messages.
//
// The hub starts no goroutines, so there is nothing of its own to stop;
// Sweep is called periodically by its owner, and Shutdown ends the
// subscriptions and waits for their connections to go.
type Hub struct {
	maxLagBytes     uint64
	maxMessageBytes int
	historySize     int
	historyTTL      time.Duration
	maxTopics       int
	store           Store
	committer       *groupCommitter // with a store: shares disk commits between publishes
	log             *slog.Logger
	now             func() time.Time

	// Lock order: mu before any topicState.mu, and that before the
	// committer's mu.
	mu               sync.Mutex
	topics           map[string]*topicState
	nextSubscriberID uint64
	live             int           // subscribed and not yet unsubscribed (connections still open)
	closed           bool          // set by Shutdown; refuses new work
	drained          chan struct{} // closed once closed and live == 0

	stats        hubCounters
	latency      latencyHistogram
	counts       *countWatch
	keys         publishKeys
	brokerStatus brokerStatus
}

type hubCounters struct {
	storeErrors     atomic.Uint64
	published       atomic.Uint64
	delivered       atomic.Uint64
	dropped         atomic.Uint64
	slowDisconnects atomic.Uint64
}

// HubStats is a snapshot of the hub's counters since it started.
type HubStats struct {
	Subscribers     int    // live subscriptions
	Published       uint64 // messages accepted by Publish
	Delivered       uint64 // messages published to a subscriber, counted per subscriber
	Dropped         uint64 // messages published to a subscriber but never written to it
	SlowDisconnects uint64 // subscribers ended with ErrSlowSubscriber
	Topics          int    // topics held: with subscribers or kept history
	StoreErrors     uint64 // publishes and sweeps the store failed
	// Latency is how long live messages took from being published to
	// being written to a subscriber.
	Latency LatencyStats
}

// NewHub returns a hub ready for subscribers, with the history its store
// holds, if it has one.
func NewHub(opts HubOptions) (*Hub, error) {
	switch {
	case opts.MaxLagBytes < 1:
		return nil, fmt.Errorf("new hub: max lag bytes %d is below 1", opts.MaxLagBytes)
	case opts.MaxMessageBytes < 1:
		return nil, fmt.Errorf("new hub: max message bytes %d is below 1", opts.MaxMessageBytes)
	case opts.HistorySize < 0:
		return nil, fmt.Errorf("new hub: history size %d is below 0", opts.HistorySize)
	case opts.HistoryTTL <= 0:
		return nil, fmt.Errorf("new hub: history ttl %s is not above 0", opts.HistoryTTL)
	case opts.MaxTopics < 1:
		return nil, fmt.Errorf("new hub: max topics %d is below 1", opts.MaxTopics)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Hub{
		maxLagBytes:     uint64(opts.MaxLagBytes),
		maxMessageBytes: opts.MaxMessageBytes,
		historySize:     opts.HistorySize,
		historyTTL:      opts.HistoryTTL,
		maxTopics:       opts.MaxTopics,
		store:           opts.Store,
		log:             opts.Logger,
		now:             opts.Now,
		counts:          &countWatch{wake: make(chan struct{}, 1)},
		topics:          make(map[string]*topicState),
		drained:         make(chan struct{}),
	}
	if h.store != nil {
		h.committer = newGroupCommitter(h.store, opts.CommitDelay)
		if err := h.load(); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// load restores every stored topic. Stored topics count towards MaxTopics
// but are never refused: they were acknowledged.
func (h *Hub) load() error {
	stored, err := h.store.Load(h.historySize, h.now().Add(-h.historyTTL))
	if err != nil {
		return fmt.Errorf("load history: %w", err)
	}
	for _, st := range stored {
		t := h.newTopic(st.Name, st.SequenceStart)
		if len(st.Messages) > 0 {
			t.lastID = st.Messages[0].ID - 1
			t.windowStart = st.Messages[0].ID
		}
		for _, m := range st.Messages {
			t.keep(m, h.historySize)
		}
		t.lastID = max(t.lastID, st.LastID)
		t.assigned = t.lastID
		if t.log.len() == 0 {
			t.windowStart = t.lastID + 1
		}
		h.topics[t.name] = t
	}
	return nil
}

// SubscribeRequest says what a new subscriber receives.
type SubscribeRequest struct {
	// Topic is the topic to receive; it must pass CheckTopic.
	Topic string
	// Label names the other end in logs.
	Label string
	// Resume asks for the kept messages with ids above Since before the
	// live ones; Since 0 asks for everything kept.
	Resume bool
	Since  uint64
	// Presence asks to be told whenever the topic's subscriber count
	// changes: Next then carries a presence notice.
	Presence bool
	// SkipAhead is for a subscriber whose client can be told of lost
	// messages (JSON mode, SSE). When it falls MaxLagBytes behind, it skips
	// ahead to half that far behind, and Take reports the gap, instead of
	// the subscription ending. The skipped messages count as dropped.
	SkipAhead bool
}

// Subscribe registers a subscriber. Every message published after Subscribe
// returns can be taken by the subscriber, until the subscription ends. When
// the request resumes, Take first returns the kept messages it asked for,
// with neither a gap nor a duplicate before the live ones; Gap says when
// history did not reach back far enough.
func (h *Hub) Subscribe(req SubscribeRequest) (*Subscriber, error) {
	return h.subscribe(req, false, nil)
}

// subscribe is Subscribe, and SubscribeSeeded when shared is set.
func (h *Hub) subscribe(req SubscribeRequest, shared bool, seed *TopicSeed) (*Subscriber, error) {
	if err := CheckTopic(req.Topic); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrHubClosed
	}
	if shared {
		if err := h.holdSeededLocked(req.Topic, seed); err != nil {
			return nil, err
		}
	}
	t, err := h.topicLocked(req.Topic)
	if err != nil {
		return nil, err
	}
	h.nextSubscriberID++
	s := newSubscriber(h, h.nextSubscriberID, t, req.Label)
	s.broker = &h.brokerStatus
	s.seenGen, _ = h.brokerStatus.read()
	s.skipAhead = req.SkipAhead
	s.presence = req.Presence
	t.mu.Lock()
	s.joinID = t.lastID + 1
	s.cursor, s.lagBase = s.joinID, t.totalBytes
	if req.Resume {
		h.expireLocked(t)
		s.cursor, s.gap = t.resumeFrom(req.Since)
		if s.gap != nil {
			reported := *s.gap // a skip may add to it; Gap stays as resume found it
			s.pendingGap = &reported
		}
	}
	s.startsAfter = s.cursor - 1
	s.slot = len(t.subscribers)
	t.subscribers = append(t.subscribers, s)
	if s.presence {
		t.watching[s] = struct{}{}
	}
	t.countChangedLocked()
	t.mu.Unlock()
	h.live++
	return s, nil
}

// leave is Subscriber.Leave.
func (h *Hub) leave(s *Subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leaveLocked(s)
}

// close is Subscriber.Close.
func (h *Hub) close(s *Subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leaveLocked(s)
	if s.released {
		return
	}
	s.released = true
	// s has left its topic and its writer has stopped: what was published
	// to it and not taken, or taken and not written, never reached it.
	t := s.topic
	t.mu.Lock()
	untaken := uint64(0)
	if from := max(s.cursor, s.joinID); s.leftAt+1 > from {
		untaken = s.leftAt + 1 - from
	}
	t.mu.Unlock()
	if lost := untaken + s.unwritten.Load(); lost > 0 {
		h.stats.dropped.Add(lost)
		h.log.Warn("subscriber gone with undelivered messages",
			"subscriber", s.label, "topic", t.name, "dropped", lost, "reason", s.Err())
	}
	h.live--
	if h.closed && h.live == 0 {
		close(h.drained)
	}
}

func (h *Hub) leaveLocked(s *Subscriber) {
	t := s.topic
	t.mu.Lock()
	if t.removeLocked(s) {
		t.countChangedLocked()
		t.releaseLogLocked()
	}
	h.forgetIfIdleLocked(t)
	t.mu.Unlock()
	s.end(ErrUnsubscribed)
}

// forgetIfIdleLocked forgets t at once if it holds nothing: no subscribers
// and no history. Such a topic costs nothing to start again, so it must not
// count towards MaxTopics until the next sweep: one client opening and
// closing subscriptions to made-up names would otherwise block every new
// topic. A topic that was published to while a store is in use is left to
// Sweep, which also forgets it in the store. The caller holds h.mu and
// t.mu.
func (h *Hub) forgetIfIdleLocked(t *topicState) {
	stored := h.store != nil && t.lastID >= t.sequenceStart
	if t.holdsNothingLocked() && !stored && !t.removed && h.topics[t.name] == t {
		t.removed = true
		delete(h.topics, t.name)
	}
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
			for i := len(t.subscribers) - 1; i >= 0; i-- { // backwards, as in deliverLocked
				s := t.subscribers[i]
				t.removeLocked(s)
				s.end(ErrHubClosed)
			}
			t.watchers.Store(0)
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
	live, topics := h.live, len(h.topics)
	h.mu.Unlock()
	return HubStats{
		Subscribers:     live,
		Topics:          topics,
		StoreErrors:     h.stats.storeErrors.Load(),
		Published:       h.stats.published.Load(),
		Delivered:       h.stats.delivered.Load(),
		Dropped:         h.stats.dropped.Load(),
		SlowDisconnects: h.stats.slowDisconnects.Load(),
		Latency:         h.latency.snapshot(),
	}
}

// topicLocked returns the state of topic, creating it unless the hub holds
// MaxTopics already. The caller holds h.mu.
func (h *Hub) topicLocked(topic string) (*topicState, error) {
	if t, ok := h.topics[topic]; ok {
		return t, nil
	}
	if len(h.topics) >= h.maxTopics {
		return nil, fmt.Errorf("%w: the server holds its limit of %d", ErrTooManyTopics, h.maxTopics)
	}
	t := h.newTopic(topic, max(uint64(h.now().UnixMicro()), 1))
	h.topics[t.name] = t
	return t, nil
}

// newTopic returns an empty topic whose first id will be sequenceStart.
func (h *Hub) newTopic(name string, sequenceStart uint64) *topicState {
	t := &topicState{
		// A copy: name may be cut from a request, which the topic outlives.
		name:          strings.Clone(name),
		sequenceStart: sequenceStart,
		lastID:        sequenceStart - 1,
		assigned:      sequenceStart - 1,
		windowStart:   sequenceStart,
		watching:      make(map[*Subscriber]struct{}),
		counts:        h.counts,
	}
	return t
}

// TopicSubscribers returns how many subscribers each topic has, for
// topics that have any.
func (h *Hub) TopicSubscribers() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	counts := make(map[string]int)
	for name, t := range h.topics {
		t.mu.Lock()
		if n := len(t.subscribers); n > 0 {
			counts[name] = n
		}
		t.mu.Unlock()
	}
	return counts
}

// Pinger is a Store that can check that it still works.
type Pinger interface {
	Ping() error
}

// Ready reports why the hub cannot take work, or nil: it is shutting down,
// or its store, if it can tell, does not answer.
func (h *Hub) Ready() error {
	if h.Closed() {
		return ErrHubClosed
	}
	if p, ok := h.store.(Pinger); ok {
		if err := p.Ping(); err != nil {
			return err
		}
	}
	return nil
}
