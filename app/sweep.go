// Expiry: history older than the TTL leaves the window, and Sweep forgets
// it, on disk too, with the topics that then hold nothing.

package app

import (
	"errors"
	"fmt"
)

// expireLocked moves t's history window past the messages older than the
// history TTL, forgets those no subscriber still needs, and reports whether
// any left the window. The caller holds t.mu.
func (h *Hub) expireLocked(t *topicState) bool {
	cutoff := h.now().Add(-h.historyTTL)
	start := t.windowStart
	for t.windowStart <= t.lastID {
		m := t.log.byID(t.windowStart)
		if m == nil || !m.Time.Before(cutoff) {
			break
		}
		t.windowStart++
	}
	if t.windowStart == start {
		return false
	}
	t.trimLocked(t.neededLocked())
	return true
}

// Sweep forgets expired history, on disk too, and every topic left with
// neither subscribers nor history, so that memory and the store hold only
// what is in use. The hub's owner calls it periodically.
func (h *Hub) Sweep() error {
	trims := map[string]uint64{}
	h.mu.Lock()
	var forgotten []string
	for name, t := range h.topics {
		t.mu.Lock()
		expired := h.expireLocked(t)
		switch {
		case t.holdsNothingLocked():
			t.removed = true
			delete(h.topics, name)
			forgotten = append(forgotten, name)
		case expired:
			trims[name] = t.oldestKept()
		}
		t.mu.Unlock()
	}
	var errs []error
	// Still under h.mu, so no publish can bring a forgotten topic back
	// before the store has let go of it.
	if h.store != nil {
		errs = append(errs, h.store.Forget(forgotten))
	}
	h.mu.Unlock()
	// Trimming needs no lock: it only deletes ids below what is kept, and a
	// topic started afresh has higher ids.
	if h.store != nil {
		errs = append(errs, h.store.Trim(trims))
	}
	if err := errors.Join(errs...); err != nil {
		h.stats.storeErrors.Add(1)
		return fmt.Errorf("sweep history: %w", err)
	}
	return nil
}
