// Publishing: a message is numbered under its topic's lock, kept in the
// topic's log (on disk first, with a store: see commit.go), and every
// subscriber of the topic is woken.

package app

import (
	"fmt"
	"unicode/utf8"
)

// Publish stamps text with the topic's next id and the current time, keeps
// it in the topic's history (on disk first, when there is a store) and
// hands it to every subscriber of the topic. It returns the message and how
// many subscribers it was handed to. An error means nothing was kept or
// delivered.
func (h *Hub) Publish(topic, text string) (*Message, int, error) {
	if err := CheckTopic(topic); err != nil {
		return nil, 0, err
	}
	if err := h.checkText(text); err != nil {
		return nil, 0, err
	}
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, 0, ErrHubClosed
		}
		t, err := h.topicLocked(topic)
		h.mu.Unlock()
		if err != nil {
			return nil, 0, err
		}
		t.mu.Lock()
		if t.removed {
			t.mu.Unlock() // Sweep forgot it in between: take the new one
			continue
		}
		m, delivered, err := h.publishLocked(t, text)
		idle := err == nil && t.holdsNothingLocked()
		t.mu.Unlock()
		if idle && h.store == nil {
			// With history.size 0 and nobody listening, the topic holds
			// nothing once published to.
			h.mu.Lock()
			t.mu.Lock()
			h.forgetIfIdleLocked(t)
			t.mu.Unlock()
			h.mu.Unlock()
		}
		return m, delivered, err
	}
}

// publishLocked does Publish's work with t.mu held, and returns with it
// held. With a store it may let go of the lock while it waits for the disk.
func (h *Hub) publishLocked(t *topicState, text string) (*Message, int, error) {
	h.expireLocked(t)
	m := &Message{ID: t.assigned + 1, Topic: t.name, Time: h.now(), Text: text}
	t.assigned = m.ID
	if h.store != nil {
		return h.publishDurableLocked(t, m)
	}
	return m, h.deliverLocked(t, m), nil
}

// deliverLocked keeps m in t's log and wakes the topic's subscribers, and
// returns how many there are. The caller holds t.mu.
func (h *Hub) deliverLocked(t *topicState, m *Message) int {
	t.keep(m, h.historySize)
	// One pass wakes every subscriber, ends those too far behind, and finds
	// the oldest message anyone still needs.
	needed, evicted := t.lastID+1, false
	// Backwards, since removeLocked moves the last subscriber into the
	// slot it frees, which this loop has then already seen.
	for i := len(t.subscribers) - 1; i >= 0; i-- {
		s := t.subscribers[i]
		if lag := t.totalBytes - s.lagBase; lag > h.maxLagBytes && h.fellBehindLocked(t, s, lag) {
			evicted = true
			continue
		}
		needed = min(needed, s.cursor)
		s.signal()
	}
	t.trimLocked(needed)
	if evicted {
		t.countChangedLocked()
	}
	delivered := len(t.subscribers)
	h.stats.published.Add(1)
	h.stats.delivered.Add(uint64(delivered))
	return delivered
}

// CheckMessage reports why text cannot be published to topic now, or nil:
// a bad topic name, an empty, oversized or malformed text, or a hub that
// is shutting down.
func (h *Hub) CheckMessage(topic, text string) error {
	if err := CheckTopic(topic); err != nil {
		return err
	}
	if err := h.checkText(text); err != nil {
		return err
	}
	if h.Closed() {
		return ErrHubClosed
	}
	return nil
}

func (h *Hub) checkText(text string) error {
	switch {
	case text == "":
		return ErrEmptyMessage
	case len(text) > h.maxMessageBytes:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessageTooLarge, len(text), h.maxMessageBytes)
	case !utf8.ValidString(text):
		return ErrInvalidUTF8
	}
	return nil
}
