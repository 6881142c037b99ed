// The channel: how every instance learns what any instance published,
// in order, and catches up on what it missed.

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

	"herald/app"
)

// Run reads the channel and hands messages to the hub until ctx ends.
// When the connection drops, go-redis reconnects and subscribes again; each
// time it does, the held topics catch up from their streams. It runs the
// presence goroutine, and the one that pings Redis while it is down, and
// stops them before it returns.
func (b *Broker) Run(ctx context.Context) error {
	var helpers sync.WaitGroup
	defer helpers.Wait()
	helpers.Go(func() { b.presence.run(ctx) })
	helpers.Go(func() { b.pingWhileDown(ctx) })
	if b.shards != nil {
		b.shards.run(ctx)
		return nil
	}
	pubsub := b.pubsub
	defer pubsub.Close()
	// go-redis does not give up a blocked read when ctx ends; closing the
	// subscription does.
	stop := context.AfterFunc(ctx, func() { pubsub.Close() })
	defer stop()
	backoff := b.retryFirst
	for {
		received, err := pubsub.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			b.failed(err)
			var ok bool
			if backoff, ok = b.waitToRetry(ctx, backoff); !ok {
				return nil
			}
			continue
		}
		// Whatever comes on the connection says that Redis serves again,
		// even when it only stalled and the connection never dropped.
		b.recovered(ctx)
		switch v := received.(type) {
		case *redis.Subscription:
			if v.Kind == "subscribe" && v.Channel == b.channel {
				// Subscribed again after the connection dropped: what
				// came meanwhile is in the streams.
				backoff = b.retryFirst
				b.catchUp(ctx)
			}
		case *redis.Message:
			if v.Channel == b.presence.channel {
				b.presence.announced(v.Payload)
				continue
			}
			b.heard(ctx, v.Payload)
		}
	}
}

// heard hands the hub the message of an announcement.
func (b *Broker) heard(ctx context.Context, payload string) {
	m, epoch, err := decodeAnnouncement(payload)
	if err != nil {
		b.log.Error("ignored a message on a redis channel", "err", err)
		return
	}
	b.accept(ctx, m, epoch)
}

// accept hands m, of the topic's run epoch, to the hub, after any
// messages of its topic that this instance missed.
func (b *Broker) accept(ctx context.Context, m *app.Message, epoch uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	position := b.events.Position(m.Topic)
	if !position.Held || (epoch == position.Epoch && m.ID <= position.LastID) {
		return // no one here asked for the topic, or a duplicate
	}
	if m.ID > position.LastID+1 && !b.fillLocked(ctx, m.Topic, position.LastID, m.ID-1) {
		// Redis holds what came between but did not answer: taking m now
		// would report those messages lost. The next message, or the
		// catch-up after a reconnect, reads them all.
		return
	}
	b.events.Accept(m, epoch)
}

// fillLocked hands the hub the messages of topic after last, up to upTo
// (0: all that subscribers may see), from its stream, with the epoch they
// were numbered in, and reports whether Redis answered. What the stream
// no longer holds is a gap, which the hub reports. The caller holds b.mu.
func (b *Broker) fillLocked(ctx context.Context, topic string, last, upTo uint64) bool {
	end := "+"
	if upTo > 0 {
		end = strconv.FormatUint(upTo, 10) + "-1"
	}
	keys := b.keys(topic)
	pipe := b.client.TxPipeline() // the epoch and the entries of one moment
	epochRead := pipe.Get(ctx, keys[1])
	entriesRead := pipe.XRange(ctx, keys[2], strconv.FormatUint(last+1, 10)+"-0", end)
	var announcedRead *redis.StringCmd
	if upTo == 0 && b.waitsForReplicas() {
		// Up to the last id announced, which replicas hold: an entry after
		// it may be lost in a failover, and its id given again. Up to a
		// given id, the message that brought it was announced.
		announcedRead = pipe.Get(ctx, keys[4])
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		b.failed(err)
		return false
	}
	epoch, err := strconv.ParseUint(epochRead.Val(), 10, 64)
	if err != nil {
		return true // Redis no longer has the topic: nothing to fill
	}
	if announcedRead != nil {
		if announced, err := strconv.ParseUint(announcedRead.Val(), 10, 64); err == nil {
			upTo = announced
		}
	}
	for _, entry := range entriesRead.Val() {
		m, err := decodeEntry(topic, entry)
		if err != nil {
			b.log.Error("ignored a damaged stream entry", "topic", topic, "err", err)
			continue
		}
		if upTo > 0 && m.ID > upTo {
			break
		}
		b.events.Accept(m, epoch)
	}
	return true
}

// catchUp reads, for every held topic, what was published while the
// channel was down.
func (b *Broker) catchUp(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for topic, last := range b.events.HeldTopics() {
		b.fillLocked(ctx, topic, last, 0)
	}
}

// catchUpTopic reads what was published to topic while this instance did
// not hear its channel, when it holds the topic.
func (b *Broker) catchUpTopic(ctx context.Context, topic string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if position := b.events.Position(topic); position.Held {
		b.fillLocked(ctx, topic, position.LastID, 0)
	}
}

// decodeAnnouncement reads "topic\nepoch\nid\nmicros\ntext" from the
// channel.
func decodeAnnouncement(payload string) (*app.Message, uint64, error) {
	parts := strings.SplitN(payload, "\n", 5)
	if len(parts) != 5 {
		return nil, 0, fmt.Errorf("announcement has %d parts, want 5", len(parts))
	}
	epoch, errEpoch := strconv.ParseUint(parts[1], 10, 64)
	id, errID := strconv.ParseUint(parts[2], 10, 64)
	micros, errTime := strconv.ParseInt(parts[3], 10, 64)
	if err := errors.Join(errEpoch, errID, errTime, app.CheckTopic(parts[0])); err != nil {
		return nil, 0, err
	}
	return &app.Message{ID: id, Topic: parts[0], Time: time.UnixMicro(micros), Text: parts[4]}, epoch, nil
}

// decodeEntry reads one stream entry: its id is the message's, then -1.
func decodeEntry(topic string, entry redis.XMessage) (*app.Message, error) {
	idText, _, _ := strings.Cut(entry.ID, "-")
	id, err := strconv.ParseUint(idText, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("stream entry %s: %w", entry.ID, err)
	}
	text, _ := entry.Values["m"].(string)
	microsText, _ := entry.Values["t"].(string)
	micros, err := strconv.ParseInt(microsText, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("stream entry %s: time: %w", entry.ID, err)
	}
	return &app.Message{ID: id, Topic: topic, Time: time.UnixMicro(micros), Text: text}, nil
}
