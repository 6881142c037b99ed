// A topic's state: its log, history window, id sequence and subscribers,
// and what the hub does with them under the topic's lock.

package app

import (
	"sync"
	"sync/atomic"
)

// topicState is one topic's subscribers, log and id sequence. Its lock
// makes publishing to a topic one critical section, so ids follow publish
// order and every subscriber sees the same order, and it makes placing a
// subscriber's cursor one step with joining, so a resuming subscriber's
// replay ends exactly where its live messages begin.
//
// The history window is the ids [windowStart, lastID]: the newest
// HistorySize messages younger than HistoryTTL, which resuming subscribers
// may read. The log holds the window and, beyond it, whatever a live
// subscriber's cursor has not yet passed.
type topicState struct {
	name string

	mu            sync.Mutex
	sequenceStart uint64 // first id of the unbroken sequence lastID ends
	lastID        uint64
	windowStart   uint64
	totalBytes    uint64 // text bytes kept since the topic started here; offsets count from it
	log           topicLog
	// subscribers holds each subscriber at its slot. A slice rather than a
	// map: a publish walks them all, and a slice walks them in the same
	// order every time, in the order of memory, which measurably shortens
	// a fan-out pass and the time to its first write.
	subscribers []*Subscriber
	// assigned is the last id given to a publish, which is lastID unless
	// publishes wait for the store; pending holds those that no commit has
	// taken yet, in id order. queued is set while the topic is in the
	// group committer's queue, and committing while a commit holds some of
	// its publishes.
	assigned   uint64
	pending    []*pendingPublish
	queued     bool
	committing bool
	// watching holds the subscribers that asked for presence, so that a
	// join or leave tells them without walking every subscriber.
	watching map[*Subscriber]struct{}
	// watchers counts subscribers for their writers to read without the
	// lock; it changes only under mu, with subscribers.
	watchers atomic.Int64
	// elsewhere counts the topic's subscribers on other instances, as a
	// shared broker reports them; it changes only under mu.
	elsewhere atomic.Int64
	// counts is the hub's: it notes that the local count changed, for a
	// shared broker to tell the other instances.
	counts  *countWatch
	removed bool // forgotten by Sweep: look the topic up again
	// seeded marks a topic whose ids a shared broker gives: it is kept up
	// to date with Accept. epoch is the broker's run of its sequence.
	seeded bool
	epoch  uint64
}

// countChangedLocked publishes the topic's subscriber count and tells the
// subscribers that asked. A notice still pending stands for this one too,
// so a burst of joins costs each watcher one frame, not one per join. The
// caller holds t.mu.
func (t *topicState) countChangedLocked() {
	t.watchers.Store(int64(len(t.subscribers)))
	t.counts.note(t.name)
	t.tellWatchersLocked()
}

// tellWatchersLocked tells the subscribers that asked for presence that
// the count changed: their next delivery says it. The caller holds t.mu.
func (t *topicState) tellWatchersLocked() {
	for s := range t.watching {
		s.presenceDue.Store(true)
		s.signal()
	}
}

// resumeFrom returns where a subscriber resuming after since starts
// reading, and the gap between since and that place, if any. The caller
// holds t.mu.
func (t *topicState) resumeFrom(since uint64) (uint64, *Gap) {
	switch {
	case since == 0:
		return t.windowStart, nil
	case since > t.lastID || since+1 < t.sequenceStart:
		// An id this sequence never gave out: from a history this server
		// no longer has (a restart without a store, or a forgotten topic).
		// Everything kept is new to the client; what came before is unknown.
		return t.windowStart, &Gap{Since: since}
	case t.windowStart > since+1:
		return t.windowStart, &Gap{Since: since, Missing: t.windowStart - since - 1, Known: true}
	}
	return since + 1, nil
}

// removeLocked takes s out of t's subscribers, remembering where it left,
// and reports whether it was there. The caller holds t.mu.
func (t *topicState) removeLocked(s *Subscriber) bool {
	if s.slot >= len(t.subscribers) || t.subscribers[s.slot] != s {
		return false
	}
	last := len(t.subscribers) - 1
	t.subscribers[s.slot] = t.subscribers[last]
	t.subscribers[s.slot].slot = s.slot
	t.subscribers[last] = nil
	t.subscribers = t.subscribers[:last]
	delete(t.watching, s)
	s.left, s.leftAt = true, t.lastID
	return true
}

// releaseLogLocked forgets what only departed subscribers held back in the
// log. Shutdown skips it: its subscribers still drain. The caller holds
// t.mu.
func (t *topicState) releaseLogLocked() {
	if t.log.len() > 0 && t.log.firstID() < t.windowStart {
		t.trimLocked(t.neededLocked())
	}
}

// keep appends m to the log and moves the history window up to it. The
// caller holds t.mu.
func (t *topicState) keep(m *Message, historySize int) {
	t.totalBytes += uint64(len(m.Text))
	m.offset = t.totalBytes
	t.log.push(m)
	t.lastID = m.ID
	t.windowStart = windowStartAfter(t.windowStart, m.ID, historySize)
}

// windowStartAfter is where a history window of size messages starts once
// lastID is kept, given that it started at start.
func windowStartAfter(start, lastID uint64, size int) uint64 {
	if lastID+1 < uint64(size) {
		return start
	}
	return max(start, lastID+1-uint64(size))
}

// trimLocked forgets the messages that are outside the history window and
// below needed, the oldest id a subscriber has yet to take. The caller
// holds t.mu.
func (t *topicState) trimLocked(needed uint64) {
	keepFrom := min(t.windowStart, needed)
	for t.log.len() > 0 && t.log.firstID() < keepFrom {
		t.log.popFront()
	}
}

// neededLocked is the oldest id a subscriber of t has yet to take. The
// caller holds t.mu.
func (t *topicState) neededLocked() uint64 {
	needed := t.lastID + 1
	for _, s := range t.subscribers {
		needed = min(needed, s.cursor)
	}
	return needed
}

// holdsNothingLocked reports whether t has no subscribers, no history and
// no publish on its way to the store: forgetting it loses nothing. The
// caller holds t.mu.
func (t *topicState) holdsNothingLocked() bool {
	return len(t.subscribers) == 0 && t.windowStart > t.lastID && t.log.len() == 0 &&
		!t.committing && len(t.pending) == 0
}

// oldestKept is the id of the oldest message in the history window, or the
// next id when the window is empty. The caller holds t.mu.
func (t *topicState) oldestKept() uint64 { return t.windowStart }
