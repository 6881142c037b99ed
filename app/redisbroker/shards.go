// Sharded pub/sub in a Redis Cluster. Each topic has a shard channel in
// its slot, which the publish script SPUBLISHes to, so that a publish
// costs the topic's master alone and reaches only the instances that hold
// the topic. Presence notes about the topic travel on it too.
//
// An instance follows the channels of the topics it holds, with one
// subscription connection per master that holds any of them. Redis
// refuses one SSUBSCRIBE that names channels of several slots, so each
// channel is subscribed to on its own; and go-redis, which names them all
// in one command when it reconnects a subscription, is not left to: a
// subscription whose connection failed is replaced by a new one,
// subscribed channel by channel.
//
// Nothing published falls between subscribing and reading: whenever Redis
// confirms a subscription to a channel (the first time, after a
// reconnection, or on another master after the topic's slot moved), the
// topic is read from its stream, from the last message held. When a slot
// moves to another master, the old master ends the subscriptions to its
// channels (SUNSUBSCRIBE), and a master answers a subscription to a
// channel of a slot it does not hold with MOVED: either way the channel
// is followed again on the master that holds the slot now.

package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// unfollowEvery is how often the channels of topics that this instance no
// longer holds are given up.
const unfollowEvery = time.Minute

// shards follows the shard channels of the topics this instance holds.
type shards struct {
	b       *Broker
	cluster *redis.ClusterClient

	mu       sync.Mutex
	followed map[string]*shard // channel -> the subscription that carries it
	byAddr   map[string]*shard // master address -> the subscription there
	// ctx is run's, while it runs: each subscription's reader runs under
	// it. Subscriptions made before then wait, their messages unread.
	ctx     context.Context
	readers sync.WaitGroup
}

// shard is one subscription connection, to one master.
type shard struct {
	addr     string
	client   *redis.Client // of the master at addr, for the subscription alone
	pubsub   *redis.PubSub // replaced when its connection fails
	channels map[string]struct{}
	closed   bool
}

func newShards(b *Broker) *shards {
	return &shards{
		b:        b,
		cluster:  b.client.(*redis.ClusterClient),
		followed: map[string]*shard{},
		byAddr:   map[string]*shard{},
	}
}

// follow subscribes to topic's channel, unless this instance does
// already. It returns once the subscription is sent, not confirmed: the
// topic catches up when it is.
func (s *shards) follow(ctx context.Context, topic string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	channel := s.b.channelOf(topic)
	if _, ok := s.followed[channel]; ok {
		return nil
	}
	master, err := s.cluster.MasterForKey(ctx, channel)
	if err != nil {
		return fmt.Errorf("find the master of %s: %w", channel, err)
	}
	return s.subscribeLocked(ctx, master.Options().Addr, channel)
}

// subscribeLocked subscribes to channel on the master at addr.
func (s *shards) subscribeLocked(ctx context.Context, addr, channel string) error {
	sh := s.byAddr[addr]
	if sh == nil {
		sh = s.openLocked(addr)
	}
	sh.channels[channel] = struct{}{}
	s.followed[channel] = sh
	if err := sh.pubsub.SSubscribe(ctx, channel); err != nil {
		// The connection failed. Closed, it makes the reader replace it
		// and subscribe to all of sh's channels again, and spares the
		// channels after this one a dial each meanwhile.
		sh.pubsub.Close()
		return fmt.Errorf("subscribe to %s at %s: %w", channel, addr, err)
	}
	return nil
}

// openLocked starts a subscription to the master at addr, and its reader
// once run runs.
func (s *shards) openLocked(addr string) *shard {
	client := redis.NewClient(s.b.nodeOptions(addr))
	sh := &shard{addr: addr, client: client, pubsub: client.SSubscribe(context.Background()), channels: map[string]struct{}{}}
	s.byAddr[addr] = sh
	if s.ctx != nil {
		s.startLocked(sh)
	}
	return sh
}

func (s *shards) startLocked(sh *shard) {
	ctx := s.ctx
	s.readers.Go(func() { s.read(ctx, sh) })
}

// closeIfIdleLocked closes sh once it carries no channel.
func (s *shards) closeIfIdleLocked(sh *shard) {
	if len(sh.channels) > 0 || sh.closed {
		return
	}
	sh.closed = true
	sh.pubsub.Close()
	sh.client.Close()
	delete(s.byAddr, sh.addr)
}

// run reads every subscription, and gives up the channels of topics no
// longer held every unfollowEvery, until ctx ends.
func (s *shards) run(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	for _, sh := range s.byAddr {
		s.startLocked(sh)
	}
	s.mu.Unlock()
	unfollow := time.NewTicker(unfollowEvery)
	defer unfollow.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			s.ctx = nil
			// go-redis does not give up a blocked read when ctx ends;
			// closing the subscription does.
			for _, sh := range s.byAddr {
				sh.pubsub.Close()
			}
			s.mu.Unlock()
			s.readers.Wait()
			return
		case <-unfollow.C:
			s.unfollowIdle(ctx)
		}
	}
}

// read hands what comes on sh's subscription to the broker until ctx
// ends or sh closes.
func (s *shards) read(ctx context.Context, sh *shard) {
	backoff := s.b.retryFirst
	for ctx.Err() == nil {
		s.mu.Lock()
		pubsub, closed := sh.pubsub, sh.closed
		s.mu.Unlock()
		if closed {
			return
		}
		received, err := pubsub.Receive(ctx)
		if err != nil {
			s.mu.Lock()
			replaced := sh.pubsub != pubsub || sh.closed
			s.mu.Unlock()
			switch slot, addr, moved := movedTo(err); {
			case ctx.Err() != nil || replaced:
			case moved:
				s.move(ctx, sh, slot, addr)
			default:
				if !errors.Is(err, redis.ErrClosed) { // closed after a failure already counted
					s.b.failed(err)
				}
				var ok bool
				if backoff, ok = s.b.waitToRetry(ctx, backoff); !ok {
					return
				}
				s.resubscribe(ctx, sh)
			}
			continue
		}
		// Whatever comes on the connection says that Redis serves again.
		s.b.recovered(ctx)
		switch v := received.(type) {
		case *redis.Subscription:
			switch v.Kind {
			case "ssubscribe":
				backoff = s.b.retryFirst
				if topic, ok := s.topicOf(v.Channel); ok {
					s.b.catchUpTopic(ctx, topic)
				}
			case "sunsubscribe":
				s.unsubscribedByRedis(ctx, sh, v.Channel)
			}
		case *redis.Message:
			// A presence note is "instance\ntopic"; a message's
			// announcement has four line breaks at least.
			if strings.Count(v.Payload, "\n") == 1 {
				s.b.presence.announced(v.Payload)
				continue
			}
			s.b.heard(ctx, v.Payload)
		}
	}
}

// move follows sh's channels of slot on the master at addr, which Redis
// said holds it now.
func (s *shards) move(ctx context.Context, sh *shard, slot int, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for channel := range sh.channels {
		if slotOf(channel) != slot {
			continue
		}
		s.b.log.Debug("a topic's channel is on another master: following it there", "channel", channel, "master", addr)
		delete(sh.channels, channel)
		if err := s.subscribeLocked(ctx, addr, channel); err != nil {
			s.b.failed(err) // the subscription there retries once its reader reads
		}
	}
	s.closeIfIdleLocked(sh)
}

// unsubscribedByRedis follows channel elsewhere when the master at sh
// ended its subscription: the channel's slot moved. An end that this
// instance asked for is not followed.
func (s *shards) unsubscribedByRedis(ctx context.Context, sh *shard, channel string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.followed[channel] != sh {
		return
	}
	s.b.log.Debug("a master ended the subscription to a topic's channel, whose slot moved: following it elsewhere", "channel", channel, "master", sh.addr)
	delete(sh.channels, channel)
	delete(s.followed, channel)
	s.refollowLocked(ctx, sh, channel)
	s.closeIfIdleLocked(sh)
}

// refollowLocked follows channel on the master that go-redis says holds
// it, or, when go-redis cannot say, on sh's again: a master that does
// not hold it answers MOVED.
func (s *shards) refollowLocked(ctx context.Context, sh *shard, channel string) {
	s.cluster.ReloadState(ctx) // in the background: the slot map is stale
	addr := sh.addr
	if master, err := s.cluster.MasterForKey(ctx, channel); err == nil {
		addr = master.Options().Addr
	}
	if err := s.subscribeLocked(ctx, addr, channel); err != nil {
		s.b.failed(err)
	}
}

// resubscribe replaces sh's subscription, whose connection failed, with a
// new one that subscribes to its channels one by one, each on the master
// that holds it now.
func (s *shards) resubscribe(ctx context.Context, sh *shard) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh.closed || ctx.Err() != nil {
		return
	}
	sh.pubsub.Close()
	sh.pubsub = sh.client.SSubscribe(context.Background())
	channels := sh.channels
	sh.channels = map[string]struct{}{}
	for channel := range channels {
		delete(s.followed, channel)
		s.refollowLocked(ctx, sh, channel)
	}
	s.closeIfIdleLocked(sh)
}

// unfollowIdle gives up the channels of the topics that the hub no longer
// holds. It holds the broker's lock, so that a subscriber who brings a
// topic back follows its channel again.
func (s *shards) unfollowIdle(ctx context.Context) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	held := s.b.events.HeldTopics()
	s.mu.Lock()
	defer s.mu.Unlock()
	for channel, sh := range s.followed {
		if topic, ok := s.topicOf(channel); ok {
			if _, ok := held[topic]; ok {
				continue
			}
		}
		delete(s.followed, channel)
		delete(sh.channels, channel)
		if len(sh.channels) > 0 {
			sh.pubsub.SUnsubscribe(ctx, channel) // a failure ends the connection, and the channel with it
		}
		s.closeIfIdleLocked(sh)
	}
}

// topicOf is the topic whose channel is channel.
func (s *shards) topicOf(channel string) (string, bool) {
	rest, ok := strings.CutPrefix(channel, s.b.opts.Prefix+"topic:{")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "}:messages")
}

// close ends every subscription. Run has returned, or never ran.
func (s *shards) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sh := range s.byAddr {
		sh.closed = true
		sh.pubsub.Close()
		sh.client.Close()
	}
	clear(s.byAddr)
	clear(s.followed)
}

// movedTo reads a MOVED reply: the slot, and the address of the master
// that holds it.
func movedTo(err error) (slot int, addr string, ok bool) {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return 0, "", false
	}
	fields := strings.Fields(reply.Error())
	if len(fields) != 3 || fields[0] != "MOVED" {
		return 0, "", false
	}
	slot, errSlot := strconv.Atoi(fields[1])
	return slot, fields[2], errSlot == nil
}

// slotOf is the Redis Cluster slot of key: the CRC16 (XMODEM) of its
// hash tag, or of the whole key without one, modulo 16384.
func slotOf(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if length := strings.IndexByte(key[open+1:], '}'); length > 0 {
			key = key[open+1 : open+1+length]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
