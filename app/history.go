package app

import (
	"sort"
	"time"
)

// history is one topic's most recent messages, oldest first, in a ring that
// grows as it fills and never holds more than limit. Its topic's lock
// guards it.
type history struct {
	limit int
	buf   []*Message
	head  int // index of the oldest message in buf
	n     int
}

func newHistory(limit int) *history { return &history{limit: limit} }

func (h *history) len() int { return h.n }

// at returns the i-th oldest message.
func (h *history) at(i int) *Message { return h.buf[(h.head+i)%len(h.buf)] }

// push keeps m, dropping the oldest message when the history is full.
func (h *history) push(m *Message) {
	if h.limit == 0 {
		return
	}
	if h.n == h.limit {
		h.buf[h.head] = m
		h.head = (h.head + 1) % len(h.buf)
		return
	}
	if h.n == len(h.buf) {
		h.grow()
	}
	h.buf[(h.head+h.n)%len(h.buf)] = m
	h.n++
}

func (h *history) grow() {
	size := min(max(2*len(h.buf), 8), h.limit)
	buf := make([]*Message, size)
	for i := range h.n {
		buf[i] = h.at(i)
	}
	h.buf, h.head = buf, 0
}

// dropOlderThan forgets the messages published before cutoff and reports
// how many went.
func (h *history) dropOlderThan(cutoff time.Time) int {
	dropped := 0
	for h.n > 0 && h.at(0).Time.Before(cutoff) {
		h.buf[h.head] = nil // let the message go
		h.head = (h.head + 1) % len(h.buf)
		h.n--
		dropped++
	}
	if h.n == 0 {
		h.buf, h.head = nil, 0 // an idle topic holds no buffer
	}
	return dropped
}

// after returns a copy of the messages with an id above id, oldest first.
func (h *history) after(id uint64) []*Message {
	first := sort.Search(h.n, func(i int) bool { return h.at(i).ID > id })
	out := make([]*Message, 0, h.n-first)
	for i := first; i < h.n; i++ {
		out = append(out, h.at(i))
	}
	return out
}

// oldestKeptAfterPush is the id of the oldest message that would be kept
// once m is pushed: the store deletes everything below it.
func (h *history) oldestKeptAfterPush(m *Message) uint64 {
	switch {
	case h.limit == 0:
		return m.ID + 1
	case h.n < h.limit:
		if h.n == 0 {
			return m.ID
		}
		return h.at(0).ID
	case h.limit == 1:
		return m.ID
	default:
		return h.at(1).ID
	}
}
