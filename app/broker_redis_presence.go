// Presence over Redis: each instance keeps its own subscriber count per
// topic in a hash that every instance reads, so "N watching" counts
// subscribers everywhere.

package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Presence timing: an instance restates its counts every presenceRefresh,
// and a count not restated for presenceStale is taken for an instance
// that is gone (it crashed, or lost Redis) and no longer counted.
const (
	presenceRefresh = 15 * time.Second
	presenceStale   = 3 * presenceRefresh
)

// presence is the Redis broker's part that shares subscriber counts. The
// hub reports local counts under its locks, so reporting only records the
// count; one goroutine talks to Redis.
type presence struct {
	b        *RedisBroker
	instance string // this instance's field in every topic's hash
	channel  string // where instances say that a topic's counts changed

	mu      sync.Mutex
	changed map[string]bool // topics whose counts to restate or read again
	local   map[string]int  // this instance's counts, for the refresh
	wake    chan struct{}
}

func newPresence(b *RedisBroker) *presence {
	id := make([]byte, 8)
	rand.Read(id) // crypto/rand.Read never fails
	return &presence{
		b:        b,
		instance: hex.EncodeToString(id),
		channel:  b.opts.Prefix + "presence",
		changed:  map[string]bool{},
		local:    map[string]int{},
		wake:     make(chan struct{}, 1),
	}
}

func (p *presence) key(topic string) string { return p.b.opts.Prefix + "topic:" + topic + ":presence" }

// localCount records the local count of topic; the hub calls it under its
// locks, so it only notes the change.
func (p *presence) localCount(topic string, n int) {
	p.mu.Lock()
	p.local[topic] = n
	p.changed[topic] = true
	p.mu.Unlock()
	p.poke()
}

// othersChanged notes that another instance's count of topic changed.
func (p *presence) othersChanged(topic string) {
	p.mu.Lock()
	p.changed[topic] = true
	p.mu.Unlock()
	p.poke()
}

func (p *presence) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run writes this instance's counts and reads everyone's until ctx ends.
func (p *presence) run(ctx context.Context) {
	refresh := time.NewTicker(presenceRefresh)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			p.withdraw()
			return
		case <-p.wake:
			p.sync(ctx, false)
		case <-refresh.C:
			p.sync(ctx, true)
		}
	}
}

// sync restates the changed counts (all of them on a refresh), announces
// those that changed, and reads the others' counts of the same topics.
func (p *presence) sync(ctx context.Context, all bool) {
	p.mu.Lock()
	topics := p.changed
	p.changed = map[string]bool{}
	local := make(map[string]int, len(topics))
	for topic, n := range p.local {
		if all || topics[topic] {
			local[topic] = n
			topics[topic] = true
		}
		if n == 0 {
			delete(p.local, topic)
		}
	}
	p.mu.Unlock()

	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	for topic := range topics {
		if n, mine := local[topic]; mine {
			pipe := p.b.client.TxPipeline()
			if n > 0 {
				pipe.HSet(ctx, p.key(topic), p.instance, strconv.Itoa(n)+":"+now)
				pipe.PExpire(ctx, p.key(topic), presenceStale)
			} else {
				pipe.HDel(ctx, p.key(topic), p.instance)
			}
			if !all {
				pipe.Publish(ctx, p.channel, topic)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				p.b.failed(err)
				continue
			}
		}
		p.readOthers(ctx, topic)
	}
}

// readOthers sums the fresh counts of the other instances for topic and
// gives the sum to the hub.
func (p *presence) readOthers(ctx context.Context, topic string) {
	fields, err := p.b.client.HGetAll(ctx, p.key(topic)).Result()
	if err != nil {
		p.b.failed(err)
		return
	}
	freshSince := time.Now().Add(-presenceStale).UnixMilli()
	others := 0
	for instance, value := range fields {
		countText, stampText, _ := strings.Cut(value, ":")
		count, errCount := strconv.Atoi(countText)
		stamp, errStamp := strconv.ParseInt(stampText, 10, 64)
		if instance == p.instance || errCount != nil || errStamp != nil || stamp < freshSince {
			continue
		}
		others += count
	}
	p.b.hub.SetSubscribersElsewhere(topic, others)
}

// withdraw removes this instance's counts as it stops, so that the others
// stop counting its subscribers at once rather than when they go stale.
func (p *presence) withdraw() {
	ctx, cancel := context.WithTimeout(context.Background(), p.b.opts.Timeout)
	defer cancel()
	p.mu.Lock()
	topics := make([]string, 0, len(p.local))
	for topic := range p.local {
		topics = append(topics, topic)
	}
	p.mu.Unlock()
	for _, topic := range topics {
		p.b.client.HDel(ctx, p.key(topic), p.instance)
		p.b.client.Publish(ctx, p.channel, topic)
	}
}
