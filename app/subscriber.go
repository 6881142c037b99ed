package app

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Reasons a subscription ends, reported by Subscriber.Err.
var (
	// ErrSlowSubscriber: the subscriber fell more than the hub's lag limit
	// behind its topic, or its connection took no data for a whole write
	// timeout. The error that ends a subscriber wraps it with the detail.
	ErrSlowSubscriber = errors.New("subscriber too slow")
	// ErrHubClosed: the server is shutting down.
	ErrHubClosed = errors.New("hub closed: server shutting down")
	// ErrUnsubscribed: the connection went away and was unsubscribed.
	ErrUnsubscribed = errors.New("unsubscribed")
)

// Subscriber is one connection's subscription to a topic. It holds no
// queue of its own: it reads its topic's log through a cursor, so a
// subscriber that is behind costs a position, not a copy of each message.
// The hub wakes it when there is more to read; exactly one goroutine, the
// connection's writer, calls Take.
type Subscriber struct {
	// A publish to 1,000 subscribers, and then the writer going round
	// their connections, find each subscriber cold, after the thousand
	// writes since the last message. So what they read comes first, in
	// two cache lines: the first for the publish and for Take, the second
	// for the writer's other checks.

	// Guarded by topic.mu.
	cursor  uint64 // id of the next message to take
	lagBase uint64 // topic byte offset up to which this subscriber has taken live messages
	waker   Waker  // told instead of signalling wake, when set
	joinID  uint64 // the first id published after Subscribe
	// pendingGap is the gap Take reports next: a copy of the resume gap at
	// first, then any skip.
	pendingGap *Gap
	// skipAhead: when too far behind, skip rather than end (see
	// SubscribeRequest.SkipAhead).
	skipAhead bool
	left      bool
	// ended is set when the subscription ends, and slow too when it ended
	// for being slow: writers check them on every batch, without taking
	// endMu or reading the done channel.
	ended atomic.Bool
	slow  atomic.Bool

	// presence says the subscriber asked to hear of its topic's count;
	// presenceDue, that the count changed since Next last said it.
	presence    bool
	presenceDue atomic.Bool
	broker      *brokerStatus // the hub's, for notices when a shared broker goes and comes back
	seenGen     uint64        // the broker status generation last reported; the writer's own
	leftAt      uint64        // the topic's last id when the subscriber left it; guarded by topic.mu
	slot        int           // its index in topic.subscribers while it is there; guarded by topic.mu
	topic       *topicState
	hub         *Hub

	id          uint64
	label       string // who is on the other end, for logs
	startsAfter uint64 // see StartsAfter

	// released is set by Close; guarded by the hub's mu.
	released bool
	// unwritten counts messages taken but never written, reported by the
	// connection's writer.
	unwritten atomic.Uint64

	wake chan struct{} // a message may be waiting
	gap  *Gap

	// done closes when the subscription ends, and reason says why. They
	// cost a fraction of a context and its AfterFunc, which matters once
	// per connection.
	done   chan struct{}
	endMu  sync.Mutex
	reason error
	onEnd  func()
}

func newSubscriber(h *Hub, id uint64, t *topicState, label string) *Subscriber {
	return &Subscriber{
		hub:   h,
		id:    id,
		topic: t,
		label: label,
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
}

// brokerChanged reports whether the shared broker went away or came back
// since the last call, and whether it is up now. Only the subscriber's
// writer calls it, through Next.
func (s *Subscriber) brokerChanged() (changed, up bool) {
	gen, up := s.broker.read()
	if gen == s.seenGen {
		return false, up
	}
	s.seenGen = gen
	return true, up
}

// StartsAfter is the id after which the subscriber's messages start: the
// topic's last id when it joined, or where its resume began. A client that
// reconnects before its first message resumes from it and misses nothing.
func (s *Subscriber) StartsAfter() uint64 { return s.startsAfter }

// ID identifies the subscriber within its hub.
func (s *Subscriber) ID() uint64 { return s.id }

// Topic is the topic the subscriber receives.
func (s *Subscriber) Topic() string { return s.topic.name }

// Ready receives when something may be waiting for Next: a message, or a
// notice. One signal stands for any number of publishes, so a writer that
// wakes should call Next until it returns false.
func (s *Subscriber) Ready() <-chan struct{} { return s.wake }

// take appends to dst the messages the subscriber has not yet taken,
// oldest first, stopping once they add up to maxBytes of text (at least one
// message is taken when any waits), and returns dst; full says that it
// stopped there with more waiting. The first calls of a resuming
// subscriber return the kept messages it asked for; the seam between those
// and the live ones has neither a gap nor a duplicate.
//
// gap is not nil when messages were lost just before those returned, and
// the client should be told, before them: on the first call, the gap that
// resume reported (see Gap); later, when a subscriber that skips ahead fell
// too far behind. Each gap is returned once.
//
// After the subscription has ended, take still returns what was published
// to it before it ended.
func (s *Subscriber) take(dst []*Message, maxBytes int) (_ []*Message, gap *Gap, full bool) {
	t := s.topic
	t.mu.Lock()
	defer t.mu.Unlock()
	gap, s.pendingGap = s.pendingGap, nil
	last := t.lastID
	if s.left {
		last = s.leftAt
	}
	if t.log.len() > 0 && s.cursor < t.log.firstID() {
		// Only a subscriber that has left can be passed by the log's trim;
		// what it never took is counted when it is released.
		s.cursor = t.log.firstID()
	}
	size := 0
	for s.cursor <= last && (size < maxBytes || size == 0) {
		m := t.log.byID(s.cursor)
		if m == nil {
			break
		}
		dst = append(dst, m)
		size += len(m.Text)
		s.cursor++
		s.lagBase = max(s.lagBase, m.offset)
	}
	return dst, gap, size >= maxBytes && s.cursor <= last
}

// Leave stops delivery to the subscriber at once and ends it with
// ErrUnsubscribed, unless it had already ended for another reason: its
// connection is on its way out, and no publish should count it any more.
// The subscription keeps its place, which the hub's Shutdown waits for,
// until Close. Calling Leave again is harmless.
func (s *Subscriber) Leave() { s.hub.leave(s) }

// Close is called once the subscriber's connection is closed: it leaves,
// if that had not happened yet, and gives up the subscription's place.
// What was published to it and never written is counted as dropped and
// logged. Calling Close again is harmless.
func (s *Subscriber) Close() { s.hub.close(s) }

// Done is closed when the subscription ends.
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// Err reports why the subscription ended: an error wrapping
// ErrSlowSubscriber, ErrHubClosed or ErrUnsubscribed. It is nil while the
// subscription is live.
func (s *Subscriber) Err() error {
	s.endMu.Lock()
	defer s.endMu.Unlock()
	return s.reason
}

// OnEnd makes the subscription call f when it ends, or now if it has, and
// returns a function that cancels the call if it has not happened yet. f
// runs under the hub's locks: it must return at once and must not call
// into the hub. It suits a writer that has a blocked write to cut short or
// a queue to join.
func (s *Subscriber) OnEnd(f func()) (stop func()) {
	s.endMu.Lock()
	if s.reason != nil {
		s.endMu.Unlock()
		f()
		return func() {}
	}
	s.onEnd = f
	s.endMu.Unlock()
	return func() {
		s.endMu.Lock()
		s.onEnd = nil
		s.endMu.Unlock()
	}
}

// end finishes the subscription; only the first reason counts.
func (s *Subscriber) end(reason error) {
	s.endMu.Lock()
	if s.reason != nil {
		s.endMu.Unlock()
		return
	}
	s.reason = reason
	s.slow.Store(errors.Is(reason, ErrSlowSubscriber))
	s.ended.Store(true)
	close(s.done)
	hook := s.onEnd
	s.onEnd = nil
	s.endMu.Unlock()
	if hook != nil {
		hook()
	}
}

// EndedSlow reports whether the subscription ended for being slow, without
// a lock: writers check it before every batch.
func (s *Subscriber) EndedSlow() bool { return s.slow.Load() }

// Ended reports whether the subscription has ended, as a closed Done does,
// without reading the channel: writers ask on every batch.
func (s *Subscriber) Ended() bool { return s.ended.Load() }

// signal wakes the subscriber's writer; a signal already pending stands
// for this one too. The caller holds s.topic.mu.
func (s *Subscriber) signal() {
	if s.waker != nil {
		s.waker.Wake()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Waker is told that a subscriber may have something new to write.
type Waker interface {
	// Wake runs under the topic's lock: it must return at once and must
	// not call back into the hub.
	Wake()
}

// OnWake makes the hub tell w, instead of signalling Ready, whenever a
// message is published to the subscriber or a notice waits for it, and
// tells it once now, for anything published before. It suits
// a writer that is not a goroutine of its own. An interface rather than a
// func, so that waking a subscriber reads no closure, a cache line fewer
// per subscriber per publish.
func (s *Subscriber) OnWake(w Waker) {
	s.topic.mu.Lock()
	defer s.topic.mu.Unlock()
	s.waker = w
	w.Wake()
}

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

// Gap reports what resume found lost before the first message the
// subscriber is sent, or nil.
func (s *Subscriber) Gap() *Gap { return s.gap }

// TopicSubscribers is how many subscribers the topic has now, this one
// included while it is subscribed.
func (s *Subscriber) TopicSubscribers() int {
	return int(s.topic.watchers.Load() + s.topic.elsewhere.Load())
}
