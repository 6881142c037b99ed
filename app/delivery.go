// The delivery step, which every transport shares: what a subscriber's
// writer sends in one write, and what becomes of it. Only the framing
// differs between a WebSocket and an event stream.

package app

import (
	"errors"
	"os"
	"time"
)

// DeliveryBytes bounds the message text one delivery carries, on every
// transport: enough to send a burst in a few writes, little enough that a
// write's deadline still measures whether the client is making progress.
const DeliveryBytes = 64 << 10

// Delivery is one write's worth of what a subscriber is owed: notices
// first, then messages, oldest first. Next fills it, the writer frames and
// writes it, and Sent or Unsent settles it. A writer keeps one and reuses
// it, so that a write allocates nothing.
type Delivery struct {
	Notices  []Notice
	Messages []*Message
	// Full says that Next stopped at maxBytes with more messages waiting,
	// so the writer calls Next again without waiting to be woken.
	Full bool
}

// Empty reports whether there is nothing to write.
func (d *Delivery) Empty() bool { return len(d.Notices) == 0 && len(d.Messages) == 0 }

// reset empties d, letting its messages go, and keeps its room.
func (d *Delivery) reset() {
	clear(d.Notices)
	clear(d.Messages)
	d.Notices, d.Messages, d.Full = d.Notices[:0], d.Messages[:0], false
}

// Next fills d with what s is owed now, replacing what d held: a notice
// for each change the client should hear of since the last delivery (the
// shared broker going or coming back; the topic's subscriber count, if
// asked for; messages lost just before those that follow), then the
// messages published to it since, up to maxBytes of text but at least one
// when any waits. It reports whether d holds anything. Only the
// subscriber's writer calls it, and it settles each delivery with Sent or
// Unsent before the next.
//
// After the subscription has ended, Next still returns what was published
// to it before it ended, for a writer that drains on shutdown.
func (s *Subscriber) Next(d *Delivery, maxBytes int) bool {
	d.reset()
	if changed, up := s.brokerChanged(); changed {
		d.Notices = append(d.Notices, BrokerNotice(up))
	}
	if s.presenceDue.Swap(false) {
		d.Notices = append(d.Notices, PresenceNotice(s.Topic(), s.TopicSubscribers()))
	}
	var gap *Gap
	d.Messages, gap, d.Full = s.take(d.Messages, maxBytes)
	if gap != nil {
		d.Notices = append(d.Notices, LostNotice(s.Topic(), gap))
	}
	return !d.Empty()
}

// Sent records that d reached the connection: its live messages count as
// delivered, with how long each took since it was published. Replayed
// history is not counted: its age is not a delivery delay.
func (s *Subscriber) Sent(d *Delivery) {
	if len(d.Messages) > 0 {
		now := time.Now()
		for _, m := range d.Messages {
			if m.ID >= s.joinID {
				s.hub.latency.observe(now.Sub(m.Time))
			}
		}
	}
	d.reset()
}

// Unsent records that d never reached the connection because the write
// failed with err: its messages count as dropped once the subscriber is
// closed. A write that timed out means the peer stopped reading for
// writeTimeout: the subscriber is ended as too slow, counted and logged.
func (s *Subscriber) Unsent(d *Delivery, err error, writeTimeout time.Duration) {
	s.unwritten.Add(uint64(len(d.Messages)))
	d.reset()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.hub.stalled(s, writeTimeout)
	}
}
