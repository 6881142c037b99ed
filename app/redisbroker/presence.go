// Presence over Redis: each instance keeps its own subscriber count per
// topic in a hash that every instance reads, so "N watching" counts
// subscribers everywhere.

package redisbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Presence timing: an instance restates its counts every presenceRefresh,
// and a count not restated for presenceStale is taken for an instance
// that is gone (it crashed, or lost Redis) and no longer counted.
const (
	presenceRefresh = 15 * time.Second
	presenceStale   = 3 * presenceRefresh
)

// presence is the Redis broker's part that shares subscriber counts. The
// hub notes which topics' local counts changed; one goroutine takes them
// and writes the changes to Redis. It costs Redis
// nothing while no count changes, but the restatement every
// presenceRefresh.
//
// A change is written to the topic's hash and announced on the presence
// channel as "instance\ntopic\ntopic...". The other instances read the
// hash of each topic announced that they have subscribers to; an instance
// ignores its own announcements.
type presence struct {
	b        *Broker
	instance string // this instance's field in every topic's hash
	channel  string // where instances say that topics' counts changed

	// writing makes each write of this instance's counts one step from
	// reading them to recording what Redis holds, so that a restatement
	// never overwrites a newer count with an older one.
	writing sync.Mutex

	counts <-chan struct{} // the hub's: local counts changed
	// refresh is presenceRefresh; a test that must see what a change
	// alone brings makes it longer than the test.
	refresh time.Duration

	mu      sync.Mutex
	local   map[string]int      // this instance's counts, as last taken from the hub
	written map[string]int      // the counts Redis holds for this instance
	others  map[string]struct{} // topics whose counts another instance changed
	wake    chan struct{}
}

func newPresence(b *Broker) *presence {
	id := make([]byte, 8)
	rand.Read(id) // crypto/rand.Read never fails
	return &presence{
		b:        b,
		counts:   b.events.WatchCounts(),
		refresh:  presenceRefresh,
		instance: hex.EncodeToString(id),
		channel:  b.opts.Prefix + "presence",
		local:    map[string]int{},
		written:  map[string]int{},
		others:   map[string]struct{}{},
		wake:     make(chan struct{}, 1),
	}
}

func (p *presence) key(topic string) string { return p.b.topicKey(topic, "presence") }

// pull takes the local counts that changed from the hub.
func (p *presence) pull() {
	changes := p.b.events.TakeCountChanges()
	p.mu.Lock()
	defer p.mu.Unlock()
	for topic, n := range changes {
		p.local[topic] = n
	}
}

// announced notes the topics of an announcement from another instance
// that this one has subscribers to, whose counts to read again.
func (p *presence) announced(payload string) {
	instance, topics, _ := strings.Cut(payload, "\n")
	if instance == p.instance || topics == "" {
		return
	}
	p.mu.Lock()
	noted := false
	for topic := range strings.SplitSeq(topics, "\n") {
		if p.local[topic] > 0 {
			p.others[topic] = struct{}{}
			noted = true
		}
	}
	p.mu.Unlock()
	if noted {
		p.poke()
	}
}

func (p *presence) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run writes this instance's changes and reads the others' until ctx ends,
// and restates its counts every presenceRefresh.
func (p *presence) run(ctx context.Context) {
	refresh := time.NewTicker(p.refresh)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			p.withdraw()
			return
		case <-p.counts:
			p.pull()
			p.sync(ctx)
		case <-p.wake:
			p.sync(ctx)
		case <-refresh.C:
			if err := p.restate(ctx, false); err != nil {
				p.b.failed(err)
			}
		}
	}
}

// sync writes and announces the counts that changed since they were last
// written, then reads the other instances' counts of the topics that got
// their first subscriber here, and of the topics they announced.
func (p *presence) sync(ctx context.Context) {
	if err := p.write(ctx, false, true); err != nil {
		p.b.failed(err)
		return
	}
	p.mu.Lock()
	read := slices.Collect(maps.Keys(p.others))
	clear(p.others)
	p.mu.Unlock()
	if err := p.readOthers(ctx, read); err != nil {
		p.b.failed(err)
	}
}

// restate writes all of this instance's counts again, so that they do
// not go stale, or come back after Redis lost them, and reads the other
// instances' counts of the same topics, some of which may have gone
// stale. With announce, the other instances are told to read them too.
func (p *presence) restate(ctx context.Context, announce bool) error {
	p.pull()
	if err := p.write(ctx, true, announce); err != nil {
		return err
	}
	p.mu.Lock()
	var read []string
	for topic, n := range p.local {
		if n > 0 {
			read = append(read, topic)
		}
	}
	p.mu.Unlock()
	return p.readOthers(ctx, read)
}

// write stores in one pipeline this instance's counts that differ from
// what Redis holds, or with all every count, and with announce says which
// topics changed. A pipeline rather than a transaction: in a cluster the
// topics' hashes are on several slots, which one transaction cannot span,
// and each change stands alone. Each topic's announcement follows its
// write on the same connection, so whoever it tells reads the new count.
func (p *presence) write(ctx context.Context, all, announce bool) error {
	p.writing.Lock()
	defer p.writing.Unlock()
	p.mu.Lock()
	counts := map[string]int{}
	for topic, n := range p.local {
		switch written, ok := p.written[topic]; {
		case (all && n > 0) || written != n:
			counts[topic] = n
		case !ok && n == 0:
			delete(p.local, topic) // joined and left here before it was written
		}
	}
	p.mu.Unlock()
	if len(counts) == 0 {
		return nil
	}
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	pipe := p.b.client.Pipeline()
	for topic, n := range counts {
		if n > 0 {
			pipe.HSet(ctx, p.key(topic), p.instance, strconv.Itoa(n)+":"+now)
			pipe.PExpire(ctx, p.key(topic), presenceStale)
		} else {
			pipe.HDel(ctx, p.key(topic), p.instance)
		}
	}
	if announce {
		p.announce(ctx, pipe, slices.Collect(maps.Keys(counts)))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for topic, n := range counts {
		if _, before := p.written[topic]; !before && n > 0 {
			// Its first subscriber here: the others' counts of it are
			// read next, or they would show only at the restatement.
			p.others[topic] = struct{}{}
		}
		p.written[topic] = n
		if n == 0 {
			delete(p.written, topic)
			if p.local[topic] == 0 {
				delete(p.local, topic) // the topic's last subscriber here left: forget it
			}
		}
	}
	return nil
}

// readOthers sums the fresh counts of the other instances for each topic,
// in one round trip, and gives the sums to the hub.
func (p *presence) readOthers(ctx context.Context, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	pipe := p.b.client.Pipeline()
	reads := make([]*redis.MapStringStringCmd, len(topics))
	for i, topic := range topics {
		reads[i] = pipe.HGetAll(ctx, p.key(topic))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	freshSince := time.Now().Add(-presenceStale).UnixMilli()
	for i, topic := range topics {
		others := 0
		for instance, value := range reads[i].Val() {
			countText, stampText, _ := strings.Cut(value, ":")
			count, errCount := strconv.Atoi(countText)
			stamp, errStamp := strconv.ParseInt(stampText, 10, 64)
			if instance == p.instance || errCount != nil || errStamp != nil || stamp < freshSince {
				continue
			}
			others += count
		}
		p.b.events.SetSubscribersElsewhere(topic, others)
	}
	return nil
}

// withdraw removes this instance's counts as it stops, so that the others
// stop counting its subscribers at once rather than when they go stale.
func (p *presence) withdraw() {
	ctx, cancel := context.WithTimeout(context.Background(), p.b.opts.Timeout)
	defer cancel()
	p.mu.Lock()
	topics := slices.Collect(maps.Keys(p.written))
	p.mu.Unlock()
	if len(topics) == 0 {
		return
	}
	pipe := p.b.client.Pipeline()
	for _, topic := range topics {
		pipe.HDel(ctx, p.key(topic), p.instance)
	}
	p.announce(ctx, pipe, topics)
	pipe.Exec(ctx) // stopping: the counts go stale if Redis does not answer
}

// announce says in pipe that topics' counts changed: on the presence
// channel, or in a cluster on each topic's channel, which only the
// instances that hold the topic read, so that a change costs the topic's
// master alone rather than every node.
func (p *presence) announce(ctx context.Context, pipe redis.Pipeliner, topics []string) {
	if p.b.mode != ModeCluster {
		pipe.Publish(ctx, p.channel, p.instance+"\n"+strings.Join(topics, "\n"))
		return
	}
	for _, topic := range topics {
		pipe.SPublish(ctx, p.b.channelOf(topic), p.instance+"\n"+topic)
	}
}
