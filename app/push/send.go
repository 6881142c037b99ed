// Sending: the workers that take messages from the queue and push them to
// each subscription of their topic, one after another.

package push

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/SherClockHolmes/webpush-go"
)

// Retrying a push that a push service answered with 429 or a 5xx: the
// push service may say when to try again (Retry-After); else the waits
// double from defaultFirstBackoff.
const (
	maxAttempts         = 3
	defaultFirstBackoff = time.Second
	// maxRetryWait is the longest a worker waits to try a push again: a
	// push service that asks for longer is not tried again, so that one
	// push service cannot hold a worker for long.
	maxRetryWait = 30 * time.Second
)

// Run pushes queued messages with the pool of workers until ctx ends,
// which also ends the pushes in flight. What is still queued then is not
// pushed: it is counted as dropped, and logged.
func (s *Service) Run(ctx context.Context) error {
	var workers sync.WaitGroup
	for range s.workers {
		workers.Go(func() { s.work(ctx) })
	}
	workers.Wait()
	s.stopped.Store(true)
	s.transport.CloseIdleConnections()
	left := 0
drain:
	for {
		select {
		case <-s.queue:
			left++
		default:
			break drain
		}
	}
	if left > 0 {
		s.dropped.Add(uint64(left))
		s.log.Warn("pushes dropped: the server stopped before they were sent", "messages", left)
	}
	return nil
}

// work pushes one message after another until ctx ends.
func (s *Service) work(ctx context.Context) {
	for ctx.Err() == nil { // select alone might take one more message after the end
		select {
		case <-ctx.Done():
			return
		case m := <-s.queue:
			s.deliver(ctx, m)
		}
	}
}

// deliver pushes m to every subscription of its topic.
func (s *Service) deliver(ctx context.Context, m Message) {
	listCtx, cancel := context.WithTimeout(ctx, s.timeout)
	subs, err := s.store.List(listCtx, m.Topic)
	cancel()
	if err != nil {
		s.dropped.Add(1)
		s.log.Error("push dropped: the topic's push subscriptions could not be read", "topic", m.Topic, "id", m.ID, "err", err)
		return
	}
	if len(subs) == 0 {
		return
	}
	payload := Payload(m)
	for i, sub := range subs {
		if ctx.Err() != nil {
			s.failed.Add(uint64(len(subs) - i))
			s.log.Warn("pushes not sent: the server stopped", "topic", m.Topic, "id", m.ID, "subscriptions", len(subs)-i)
			return
		}
		s.send(ctx, m, sub, payload)
	}
}

// send pushes payload to sub, trying again as the push service asks.
func (s *Service) send(ctx context.Context, m Message, sub Subscription, payload []byte) {
	service := pushService(sub.Endpoint)
	for attempt := 1; ; attempt++ {
		status, retryAfter, detail, err := s.post(ctx, sub, payload)
		switch {
		case err != nil && ctx.Err() != nil:
			s.failed.Add(1)
			s.log.Warn("push not sent: the server stopped", "topic", m.Topic, "id", m.ID, "service", service)
			return
		case err != nil:
			s.failed.Add(1)
			s.log.Warn("push failed", "topic", m.Topic, "id", m.ID, "service", service, "err", err)
			return
		case status >= 200 && status < 300:
			s.sent.Add(1)
			return
		case status == http.StatusNotFound || status == http.StatusGone:
			s.removeGone(ctx, m, sub, status)
			return
		case status == http.StatusTooManyRequests || status >= 500:
			wait, ok := s.retryWait(attempt, retryAfter, time.Now())
			if !ok {
				s.failed.Add(1)
				s.log.Warn("push failed: the push service did not take it", "topic", m.Topic, "id", m.ID, "service", service,
					"status", status, "attempts", attempt, "retry_after", retryAfter, "answer", detail)
				return
			}
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				s.failed.Add(1)
				s.log.Warn("push not sent: the server stopped", "topic", m.Topic, "id", m.ID, "service", service)
				return
			case <-timer.C:
			}
		default:
			s.failed.Add(1)
			s.log.Warn("push refused", "topic", m.Topic, "id", m.ID, "service", service, "status", status, "answer", detail)
			return
		}
	}
}

// removeGone forgets a subscription that its push service says is gone
// for good (RFC 8030, section 7.3): the browser unsubscribed, or its
// subscription expired.
func (s *Service) removeGone(ctx context.Context, m Message, sub Subscription, status int) {
	removeCtx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.store.Remove(removeCtx, sub.Topic, sub.Endpoint); err != nil {
		s.failed.Add(1)
		s.log.Error("push subscription gone, but it could not be removed", "topic", m.Topic, "service", pushService(sub.Endpoint), "err", err)
		return
	}
	s.removed.Add(1)
	s.log.Info("push subscription gone: removed", "topic", m.Topic, "id", m.ID, "service", pushService(sub.Endpoint), "status", status)
}

// post makes one push request, within the service's timeout, and returns
// the push service's answer: its status, its Retry-After, and the start
// of its body, for the log.
func (s *Service) post(ctx context.Context, sub Subscription, payload []byte) (status int, retryAfter, detail string, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := webpush.SendNotificationWithContext(ctx, payload,
		&webpush.Subscription{Endpoint: sub.Endpoint, Keys: webpush.Keys{P256dh: sub.P256dh, Auth: sub.Auth}},
		&webpush.Options{
			HTTPClient:      s.client,
			RecordSize:      webpush.MaxRecordSize,
			Subscriber:      s.subscriber,
			TTL:             s.ttlSeconds,
			VAPIDPublicKey:  s.keys.public,
			VAPIDPrivateKey: s.keys.private,
		})
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err // without the endpoint, which the log need not show
		}
		return 0, "", "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so that the connection can carry the next push
	return resp.StatusCode, resp.Header.Get("Retry-After"), strings.TrimSpace(string(body)), nil
}

// retryWait is how long to wait before the next try after attempt tries,
// and whether to try again at all.
func (s *Service) retryWait(attempt int, retryAfter string, now time.Time) (time.Duration, bool) {
	if attempt >= maxAttempts {
		return 0, false
	}
	wait := s.firstBackoff << (attempt - 1)
	if asked, ok := parseRetryAfter(retryAfter, now); ok {
		wait = asked
	}
	return wait, wait <= maxRetryWait
}

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date.
func parseRetryAfter(value string, now time.Time) (time.Duration, bool) {
	if value == "" {
		return 0, false
	}
	if seconds, err := strconv.Atoi(value); err == nil && seconds >= 0 {
		return time.Duration(seconds) * time.Second, true
	}
	if at, err := http.ParseTime(value); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}

// pushService is the origin of endpoint: which push service it is, for the
// log, without the part that names the browser.
func pushService(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "(unreadable endpoint)"
	}
	return u.Scheme + "://" + u.Host
}
