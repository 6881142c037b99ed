package handlers

import (
	"errors"
	"os"
	"time"

	"herald/app"
)

// maxBatchBytes bounds the message text one write carries, on either
// transport: enough to send a burst in a few writes, little enough that a
// write's deadline still measures whether the peer is making progress.
const maxBatchBytes = 64 << 10

// delivery moves one event stream's messages to its connection, from the
// request's own goroutine, which net/http keeps for the stream anyway
// (WebSockets are written by the writer pool instead). It batches: each
// time it wakes, it takes everything published since it last did, up to
// maxBatchBytes, and writes it at once, so a stream that falls behind
// catches up in a few writes rather than one write per message.
type delivery struct {
	hub          *app.Hub
	sub          *app.Subscriber
	out          *sseWriter
	metrics      *metrics
	keepalive    time.Duration
	writeTimeout time.Duration
	// expired fires when the client's credential runs out; nil never.
	expired <-chan time.Time
	batch   []*app.Message
}

// errCredentialExpired ends a stream whose token or JWT ran out.
var errCredentialExpired = errors.New("the credential expired")

// run writes what the subscriber is owed until the subscription ends,
// peerGone closes, the credential expires, or a write fails; it returns
// why, unless the subscription ended or the peer went.
func (d *delivery) run(peerGone <-chan struct{}) error {
	keepalive := time.NewTicker(d.keepalive)
	defer keepalive.Stop()
	for {
		taken := d.take()
		if d.out.pending() {
			if err := d.flush(); err != nil {
				return err
			}
		}
		if taken {
			continue // more may have come while writing: take it before waiting
		}
		select {
		case <-d.sub.Ready():
		case <-d.sub.PresenceChanged():
			d.out.addNotice("presence", presenceNotice(d.sub.Topic(), d.sub.TopicSubscribers()))
		case <-keepalive.C:
			d.out.addKeepalive()
		case <-d.expired:
			d.out.addNotice("expired", expiredNotice(d.sub.Topic()))
			if err := d.flush(); err != nil {
				return err
			}
			return errCredentialExpired
		case <-d.sub.Done():
			return nil
		case <-peerGone:
			return nil
		}
	}
}

// drain writes what was published to the subscriber before it ended, for
// at most timeout; the hub counts whatever is left when the subscriber is
// released.
func (d *delivery) drain(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && d.take() {
		if err := d.flush(); err != nil {
			return err
		}
	}
	return nil
}

// take adds the next batch of messages to the stream and reports
// whether there was any.
func (d *delivery) take() bool {
	if changed, up := d.sub.BrokerChanged(); changed {
		d.out.addNotice("broker", brokerNotice(up))
	}
	var gap *app.Gap
	d.batch, gap = d.sub.Take(d.batch[:0], maxBatchBytes)
	if gap != nil {
		d.out.addNotice("lost", lostNotice(d.sub.Topic(), gap))
	}
	for _, m := range d.batch {
		d.out.addMessage(m)
	}
	return len(d.batch) > 0
}

// flush writes the batch. A write that times out is a stalled peer: the
// hub ends, counts and logs the subscriber as slow.
func (d *delivery) flush() error {
	if err := d.out.flush(); err != nil {
		d.sub.NotWritten(len(d.batch))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			d.hub.Stalled(d.sub, d.writeTimeout)
		}
		return err
	}
	for _, m := range d.batch {
		if d.sub.Live(m) {
			d.metrics.delivered(m)
		}
	}
	clear(d.batch) // let written messages go
	d.batch = d.batch[:0]
	return nil
}
