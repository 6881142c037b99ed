// Slow subscribers: the one place that decides who is too slow, and what
// becomes of them. A subscriber's lag is measured in bytes of message text
// behind its topic, never in a count of messages, so that a busy server
// never mistakes healthy subscribers for slow ones. A subscriber more than
// MaxLagBytes behind is ended, or, if its client can be told what it lost
// (SkipAhead), skips ahead and is told; one whose connection took no data
// for a whole write timeout is ended (stalled). The transports only react:
// they cut a write to a subscriber that ended slow.

package app

import (
	"fmt"
	"time"
)

// fellBehindLocked deals with s, which is lag bytes behind its topic, over
// MaxLagBytes: it skips ahead if its client can be told what it lost, and
// otherwise leaves the topic and ends. It reports whether s left. The
// caller holds t.mu.
func (h *Hub) fellBehindLocked(t *topicState, s *Subscriber, lag uint64) (left bool) {
	if s.skipAhead {
		h.skipAheadLocked(t, s)
		return false
	}
	t.removeLocked(s)
	h.endSlowLocked(s, fmt.Sprintf("it fell %d bytes behind its topic, over the limit of %d", lag, h.maxLagBytes))
	return true
}

// stalled ends s because its connection took no data for a whole write
// timeout: the peer has stopped reading. It is counted and logged as a
// slow subscriber.
func (h *Hub) stalled(s *Subscriber, timeout time.Duration) {
	t := s.topic
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.Err() != nil {
		return // already ended, and counted if it was slow
	}
	if t.removeLocked(s) {
		t.countChangedLocked()
		t.releaseLogLocked()
	}
	h.endSlowLocked(s, fmt.Sprintf("its connection took no data for %s", timeout))
}

// skipAheadLocked moves a subscriber that fell more than MaxLagBytes
// behind to the oldest message that leaves it half that far behind, and
// records the gap for the next delivery to report. The caller holds t.mu.
func (h *Hub) skipAheadLocked(t *topicState, s *Subscriber) {
	from := s.cursor
	for s.cursor <= t.lastID {
		m := t.log.byID(s.cursor)
		if m == nil || t.totalBytes-(m.offset-uint64(len(m.Text))) <= h.maxLagBytes/2 {
			break
		}
		s.lagBase = m.offset
		s.cursor++
	}
	skipped := s.cursor - from
	if s.pendingGap != nil { // not yet reported: one notice covers both
		s.pendingGap.Missing += skipped
	} else {
		s.pendingGap = &Gap{Since: from - 1, Missing: skipped, Known: true}
	}
	h.stats.dropped.Add(skipped)
	h.log.Warn("subscriber fell too far behind: skipped ahead and told it",
		"subscriber", s.label, "topic", t.name, "skipped", skipped, "limit_bytes", h.maxLagBytes)
}

// endSlowLocked ends a subscriber that has left its topic for being slow,
// and counts and logs it. What it never got is counted when its connection
// is released. The caller holds s.topic.mu.
func (h *Hub) endSlowLocked(s *Subscriber, why string) {
	s.end(fmt.Errorf("%w: %s", ErrSlowSubscriber, why))
	h.stats.slowDisconnects.Add(1)
	h.log.Warn("disconnected slow subscriber",
		"subscriber", s.label, "topic", s.topic.name, "reason", why)
}
