package handlers

import (
	"time"

	"herald/app"
)

// Both transports, WebSocket and SSE, hand a subscriber its messages the
// same way around the live loop: the backlog first, and on shutdown what is
// still queued. write sends one message in the transport's form.

// writeBacklog writes the messages a resuming subscriber asked for, oldest
// first, and stops early if the subscription ends meanwhile; the caller's
// loop then sees why.
func writeBacklog(sub *app.Subscriber, write func(*app.Message) error) error {
	for _, m := range sub.Backlog() {
		if sub.Err() != nil {
			return nil
		}
		if err := write(m); err != nil {
			return err
		}
	}
	return nil
}

// drainQueue writes what is still queued for sub, for at most timeout. The
// hub counts and logs whatever is left when the subscriber is released.
func drainQueue(sub *app.Subscriber, timeout time.Duration, write func(*app.Message) error) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case m := <-sub.Messages():
			if err := write(m); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}
