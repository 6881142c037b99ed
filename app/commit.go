// The group commit: publishes to a topic that wait for the history store
// share one commit.

package app

import (
	"errors"
	"time"
)

// pendingPublish is a publish waiting for its message to be on disk.
type pendingPublish struct {
	m         *Message
	done      bool
	err       error
	delivered int
}

// publishDurableLocked stores m before anyone sees it, sharing one disk
// commit with every publish to the topic that arrives meanwhile (group
// commit): the first publisher to find no commit running commits all that
// is pending, in one transaction and one fsync, without the topic's lock;
// the others wait for it. Messages become visible in id order once they
// are on disk. If a commit fails, its publishes fail, and the ids of those
// still pending, which no one has seen, are given out again so that the
// sequence stays unbroken; unless the store cannot tell whether the failed
// ones are stored (ErrOutcomeUnknown): their ids are then spent, and the
// sequence starts again after them. The caller holds t.mu.
func (h *Hub) publishDurableLocked(t *topicState, m *Message) (*Message, int, error) {
	p := &pendingPublish{m: m}
	t.pending = append(t.pending, p)
	if t.gathering {
		t.durable.Broadcast() // tell the leader another one joined
	}
	for !p.done {
		if t.committing {
			t.durable.Wait()
			continue
		}
		h.commitPendingLocked(t)
	}
	if p.err != nil {
		return nil, 0, p.err
	}
	return p.m, p.delivered, nil
}

// commitPendingLocked writes every pending publish of t to the store in one
// commit and delivers them, or fails them. It lets go of t.mu while the
// store works. The caller holds t.mu.
func (h *Hub) commitPendingLocked(t *topicState) {
	t.committing = true
	h.gatherLocked(t)
	batch := t.pending
	t.pending = nil
	messages := make([]*Message, len(batch))
	for i, p := range batch {
		messages[i] = p.m
	}
	last := messages[len(messages)-1].ID
	sequenceStart, keepFrom := t.sequenceStart, windowStartAfter(t.windowStart, last, h.historySize)
	t.mu.Unlock()
	err := h.store.Append(messages, sequenceStart, keepFrom)
	t.mu.Lock()
	t.committing = false
	t.lastBatch = len(batch)
	if err != nil {
		h.stats.storeErrors.Add(1) // each caller reports err
		if errors.Is(err, ErrOutcomeUnknown) {
			// The batch may come back from the disk: its ids are spent.
			h.breakSequenceLocked(t, last+1)
			h.log.Error("the history file failed, and whether these messages are stored is unknown: their ids are not given out again",
				"topic", t.name, "first_id", messages[0].ID, "last_id", last, "err", err)
		}
		t.assigned = t.lastID
		for _, waiting := range t.pending {
			t.assigned++
			waiting.m.ID = t.assigned
		}
	}
	for _, p := range batch {
		p.done, p.err = true, err
		if err == nil {
			p.delivered = h.deliverLocked(t, p.m)
		}
	}
	t.durable.Broadcast()
}

// gatherLocked waits, up to the commit delay, for as many publishes to be
// pending as the topic's last commit held, if it held more than one:
// publishers that were in the last commit are on their way back, and a
// commit that leaves without them makes them wait for the whole of the
// next one. A lone publisher never waits. The caller holds t.mu and has
// set committing, so that arrivals join rather than lead.
func (h *Hub) gatherLocked(t *topicState) {
	if h.commitDelay <= 0 || t.lastBatch < 2 || len(t.pending) >= t.lastBatch {
		return
	}
	t.gathering = true
	timedOut := false
	timer := time.AfterFunc(h.commitDelay, func() {
		t.mu.Lock()
		timedOut = true
		t.durable.Broadcast()
		t.mu.Unlock()
	})
	for !timedOut && len(t.pending) < t.lastBatch {
		t.durable.Wait()
	}
	timer.Stop()
	t.gathering = false
}
