// Whether Redis answers: outages are noticed, counted and logged once,
// and recovery is noticed by itself, so subscribers hear of both.

package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"herald/app"
)

// recoveryPing is how often a broker that lost Redis pings it, to notice
// when it is back.
const recoveryPing = time.Second

// pingWhileDown pings Redis every recoveryPing while the broker is down,
// until ctx ends. Without it, a Redis that stalled and came back would be
// noticed only by the next publish or readiness check: the channel's
// connection may never have dropped, and nothing else asks.
func (b *Broker) pingWhileDown(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.wentDown:
		}
		for !b.up.Load() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(recoveryPing):
			}
			if err := b.check(ctx); err != nil {
				b.failed(err)
				continue
			}
			b.recovered(ctx)
		}
	}
}

// failed records a Redis error: counted always, logged when Redis was up.
// A call given up because its own context ended (the server stopping, a
// publisher that went away mid-request) says nothing about Redis, so it is
// neither: it would otherwise refuse publishes with 503 and tell every
// subscriber the broker went, until the next call succeeded.
func (b *Broker) failed(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	b.errorCount.Add(1)
	b.changing.Lock()
	defer b.changing.Unlock()
	if b.up.Swap(false) {
		b.backAgain = make(chan struct{})
		b.log.Error("redis is unreachable: publishes get 503 until it is back", "err", err)
		b.events.SetBrokerUp(false)
		select {
		case b.wentDown <- struct{}{}:
		default:
		}
	}
}

// recovered records that Redis answers again. Redis may have lost this
// instance's subscriber counts with its data, so they are restated before
// anyone is told that it is back: from then on, a receipt counts them.
func (b *Broker) recovered(ctx context.Context) {
	if b.up.Load() {
		return
	}
	b.changing.Lock()
	defer b.changing.Unlock()
	if b.up.Load() {
		return
	}
	if err := b.presence.restate(ctx, true); err != nil {
		if !errors.Is(err, context.Canceled) {
			b.errorCount.Add(1) // still down: the next ping tries again
		}
		return
	}
	b.up.Store(true)
	close(b.backAgain)
	b.log.Info("redis is reachable again")
	b.events.SetBrokerUp(true)
}

// Ready checks that Redis answers as its mode needs; see check.
func (b *Broker) Ready(ctx context.Context) error {
	if err := b.events.Ready(); err != nil {
		return err
	}
	if err := b.check(ctx); err != nil {
		b.failed(err)
		return fmt.Errorf("%w: redis: %v", app.ErrBrokerUnavailable, err)
	}
	b.recovered(ctx)
	return nil
}

// Stats reports whether Redis answered last time, and how many commands
// have failed.
func (b *Broker) Stats() app.BrokerStats {
	return app.BrokerStats{Up: b.up.Load(), Errors: b.errorCount.Load()}
}

// waitToRetry waits, after a failure, for backoff or until Redis is found
// to answer again, whichever comes first, and reports false if ctx ended
// first. It returns the next backoff.
func (b *Broker) waitToRetry(ctx context.Context, backoff time.Duration) (time.Duration, bool) {
	b.changing.Lock()
	back := b.backAgain
	b.changing.Unlock()
	timer := time.NewTimer(backoff)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return backoff, false
	case <-back:
	case <-timer.C:
	}
	return min(2*backoff, b.retryMax), true
}

// closedChannel is a channel that is closed already.
func closedChannel() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}
