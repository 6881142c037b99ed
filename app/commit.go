// The group commit: publishes that wait for the history store, to any
// topic, share one commit.

package app

import (
	"errors"
	"sync"
	"time"
)

// pendingPublish is a publish waiting for its message to be on disk.
type pendingPublish struct {
	m         *Message
	done      bool // guarded by the committer's mu
	err       error
	delivered int
}

// groupCommitter has one job: to put the publishes of every topic that
// wait for the store into as few Store.Append calls as it can, each one
// journal record and one sync. A publish joins the next commit; the first
// publisher to find no commit running leads it, and the others wait for
// it: there is no goroutine of its own. Commits run one at a time, so each
// topic's messages reach the store, and become visible, in id order.
//
// Lock order: a topic's mu, then the committer's mu. A publisher holds its
// topic's lock to join; the leader holds no lock while the store works,
// and takes each topic's lock, alone, to take its batch and to settle it.
type groupCommitter struct {
	store Store
	// delay is how long a leader may wait for publishes to join its
	// commit: only while fewer are waiting than the last commit held.
	delay time.Duration

	mu sync.Mutex
	// queued holds the topics with publishes that no commit has taken yet,
	// each once, and waiting counts those publishes.
	queued  []*topicState
	waiting int
	running bool // a leader is committing
	// finished is signaled when a commit ends: its publishes are settled,
	// and another may lead.
	finished sync.Cond
	// joined is signaled when a publish joins while the leader gathers.
	joined    sync.Cond
	gathering bool
	lastSize  int // publishes in the last commit
}

func newGroupCommitter(store Store, delay time.Duration) *groupCommitter {
	c := &groupCommitter{store: store, delay: delay}
	c.finished.L, c.joined.L = &c.mu, &c.mu
	return c
}

// joinLocked puts t in the queue for the next commit, which takes every
// publish pending in t by then. The caller holds t.mu and has added its
// publish to t.pending.
func (c *groupCommitter) joinLocked(t *topicState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.queued {
		t.queued = true
		c.queued = append(c.queued, t)
	}
	c.waiting++
	if c.gathering {
		c.joined.Signal()
	}
}

// publishDurableLocked stores m before anyone sees it, in the next group
// commit. If the commit fails, its publishes fail, and the ids of those
// still pending, which no one has seen, are given out again so that each
// topic's sequence stays unbroken; unless the store cannot tell whether
// the failed ones are stored (ErrPublishUnknown): their ids are then
// spent, and the sequence starts again after them. The caller holds t.mu,
// which is let go of while the message waits for the disk.
func (h *Hub) publishDurableLocked(t *topicState, m *Message) (*Message, int, error) {
	p := &pendingPublish{m: m}
	t.pending = append(t.pending, p)
	c := h.committer
	c.joinLocked(t)
	t.mu.Unlock()
	c.mu.Lock()
	for !p.done {
		if c.running {
			c.finished.Wait()
			continue
		}
		c.running = true
		c.mu.Unlock()
		h.commit()
		c.mu.Lock()
	}
	c.mu.Unlock()
	t.mu.Lock()
	if p.err != nil {
		return nil, 0, p.err // nothing was kept: no message to show for it
	}
	return p.m, p.delivered, nil
}

// topicBatch is what one commit takes of one topic.
type topicBatch struct {
	t         *topicState
	publishes []*pendingPublish
}

// commit writes every publish queued, of every topic, in one Store.Append
// and settles them: delivers them, or fails them. The caller has set
// running and holds no lock.
func (h *Hub) commit() {
	c := h.committer
	c.mu.Lock()
	c.gatherLocked()
	topics := c.queued
	c.queued = nil
	c.mu.Unlock()

	batches := make([]topicBatch, 0, len(topics))
	commits := make([]Commit, 0, len(topics))
	size := 0
	for _, t := range topics {
		t.mu.Lock()
		b := topicBatch{t: t, publishes: t.pending}
		t.pending, t.queued, t.committing = nil, false, true
		messages := make([]*Message, len(b.publishes))
		for i, p := range b.publishes {
			messages[i] = p.m
		}
		last := messages[len(messages)-1].ID
		commits = append(commits, Commit{Messages: messages, SequenceStart: t.sequenceStart,
			KeepFrom: windowStartAfter(t.windowStart, last, h.historySize)})
		t.mu.Unlock()
		batches = append(batches, b)
		size += len(b.publishes)
	}
	c.mu.Lock()
	c.waiting -= size
	c.mu.Unlock()

	err := c.store.Append(commits)

	if err != nil {
		h.stats.storeErrors.Add(1) // each caller reports err
	}
	for _, b := range batches {
		h.settle(b, err)
	}
	c.mu.Lock()
	for _, b := range batches {
		for _, p := range b.publishes {
			p.done = true
		}
	}
	c.lastSize = size
	c.running = false
	c.finished.Broadcast()
	c.mu.Unlock()
}

// settle delivers a topic's committed batch, or fails it after err.
func (h *Hub) settle(b topicBatch, err error) {
	t := b.t
	t.mu.Lock()
	defer t.mu.Unlock()
	t.committing = false
	if err != nil {
		if errors.Is(err, ErrPublishUnknown) {
			// The batch may come back from the disk: its ids are spent.
			first, last := b.publishes[0].m.ID, b.publishes[len(b.publishes)-1].m.ID
			h.breakSequenceLocked(t, last+1, true)
			h.log.Error("the history file failed, and whether these messages are stored is unknown: their ids are not given out again",
				"topic", t.name, "first_id", first, "last_id", last, "err", err)
		}
		t.assigned = t.lastID
		for _, waiting := range t.pending {
			t.assigned++
			waiting.m.ID = t.assigned
		}
	}
	for _, p := range b.publishes {
		p.err = err
		if err == nil {
			p.delivered = h.deliverLocked(t, p.m)
		}
	}
}

// gatherLocked waits, up to the commit delay, for as many publishes to be
// waiting as the last commit held, if it held more than one: publishers
// that were in the last commit are on their way back, and a commit that
// leaves without them makes them wait for the whole of the next one. A
// lone publisher never waits. The caller holds c.mu and has set running,
// so that arrivals join rather than lead.
func (c *groupCommitter) gatherLocked() {
	if c.delay <= 0 || c.lastSize < 2 || c.waiting >= c.lastSize {
		return
	}
	c.gathering = true
	timedOut := false
	timer := time.AfterFunc(c.delay, func() {
		c.mu.Lock()
		timedOut = true
		c.joined.Signal()
		c.mu.Unlock()
	})
	for !timedOut && c.waiting < c.lastSize {
		c.joined.Wait()
	}
	timer.Stop()
	c.gathering = false
}
