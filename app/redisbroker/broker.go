// Package redisbroker shares topics between Herald instances through Redis:
// ids, order, history and presence, for the hub of each instance. See
// Broker for how.
package redisbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"herald/app"

	"github.com/redis/go-redis/v9"
)

// Options configures a Broker.
type Options struct {
	// URL is redis://[:password@]host:port[/db], or rediss:// for TLS: one
	// Redis. It is used when Addrs is empty.
	URL string
	// Addrs are host:port addresses: Sentinels when MasterName is set,
	// else nodes of a Redis Cluster, from which go-redis finds the others.
	Addrs []string
	// MasterName is the master that the Sentinels in Addrs watch.
	MasterName string
	// Username and Password authenticate with the data nodes; with URL,
	// they stand in for the URL's own.
	Username, Password string
	// SentinelUsername and SentinelPassword authenticate with the
	// Sentinels.
	SentinelUsername, SentinelPassword string
	// TLS speaks TLS to the nodes in Addrs; with URL, rediss:// does.
	TLS bool
	// TLSCAFile is a PEM file of the authorities that sign the nodes'
	// certificates, when the system's do not.
	TLSCAFile string
	// MinReplicas is, with MasterName, how many replicas must hold a
	// publish before it is acknowledged; see Broker.
	MinReplicas int
	// Prefix starts every key and channel, so that several deployments
	// can share one Redis.
	Prefix string
	// Timeout bounds connecting and each command.
	Timeout time.Duration
	// HistorySize and HistoryTTL bound each topic's stream, as they bound
	// the hub's history.
	HistorySize int
	HistoryTTL  time.Duration
	Logger      *slog.Logger
}

// Broker shares topics between Herald instances through Redis:
//   - A publish runs one script that gives the message the topic's next id
//     (a counter per topic), appends it to the topic's stream (its
//     history, capped at HistorySize) and announces it to the other
//     instances. The publish is acknowledged once Redis has done all three.
//   - Every instance hears the announcements and hands each message of a
//     topic it holds to its hub, in id order. A message that does not
//     follow the last one held means messages were missed (Redis was out
//     of reach): they are read from the stream first.
//   - A subscriber to a topic the instance does not hold yet seeds it
//     from the stream, in the same step as joining, so resume works on
//     every instance.
//
// How announcements travel depends on the Mode. With one Redis or
// Sentinel, on one channel that every instance reads. In a Redis Cluster,
// every key of a topic, and its channel, share a slot (the topic's name
// is their hash tag), so that the script runs on the topic's master alone
// and announces on the topic's shard channel (SPUBLISH): a publish costs
// one shard, and an instance reads the channels of the topics it holds
// (see shards). With Sentinel and MinReplicas, the script announces
// nothing: the publish waits until that many replicas hold the message
// (WAIT), and only then announces it and moves the topic's last id
// announced, which seeds and catch-ups read no further than. A message
// that the replicas do not confirm is never announced nor read by
// anyone, so a failover that loses it, and gives its id to another
// message, shows no one two messages with one id (see replicas.go).
//
// A topic's ids start at the Unix time in microseconds when Redis first
// sees it, as the hub's do, so that a Redis that lost its data starts
// above every id it gave before: a client resuming across the wipe is
// told of the gap instead of waiting for ids that were given out again.
// That start is also the epoch that announcements and seeds carry, which
// tells an instance that Redis lost the topic, and that the gap's size is
// unknown.
type Broker struct {
	events app.BrokerEventHandler // the hub
	mode   Mode
	// client runs every command but publishes; it may retry. Other parts
	// of the package that keep their own keys in Redis use it too.
	client redis.UniversalClient
	// publisher runs publishes only: it never retries, nor follows a
	// cluster's redirections, which could run a publish twice.
	publisher redis.UniversalClient
	pubsub    *redis.PubSub // the channels, from the start; Run reads them (one Redis, Sentinel)
	shards    *shards       // the topics' shard channels (Cluster)
	sentinels []*redis.SentinelClient
	tls       *tls.Config // nil without TLS
	opts      Options
	channel   string
	log       *slog.Logger

	// mu makes seeding and accepting one sequence, so that a topic's
	// messages reach the hub in id order with none skipped between a
	// seed and the channel.
	mu sync.Mutex

	// up says whether Redis answered last time; changing makes each
	// change of it one step with telling the hub and the log.
	up       atomic.Bool
	changing sync.Mutex
	wentDown chan struct{} // told when up turns false
	// backAgain is closed once Redis answers again, and replaced by an
	// open one when it fails: a subscription reader waiting to try again
	// after a failure stops waiting then, so that what was published
	// meanwhile arrives as soon as Redis is back, not after the reader's
	// backoff. Guarded by changing.
	backAgain chan struct{}
	// retryFirst and retryMax bound a subscription reader's wait after a
	// failure, doubling from the first.
	retryFirst, retryMax time.Duration

	errorCount atomic.Uint64
	presence   *presence
	// topology is what the last readiness check found.
	topology atomic.Pointer[app.BrokerTopology]

	// joinHook, set only by tests, runs as a subscriber is about to join
	// the hub: a test forces a topic's last leave into that moment.
	joinHook func()
}

var (
	_ app.Broker         = (*Broker)(nil)
	_ app.KeyedPublisher = (*Broker)(nil)
)

// quietLibrary is go-redis's logger: it says nothing. go-redis would print
// a plain-text line to stderr for every failed dial, once per command
// while Redis is down; the broker logs each outage once, as structured
// logs, and counts every failure in its metrics instead.
type quietLibrary struct{}

func (quietLibrary) Printf(context.Context, string, ...any) {}

// New connects to Redis and checks that it answers: a Redis that
// cannot be reached stops start-up with one line, rather than a server that
// refuses every publish.
func New(events app.BrokerEventHandler, opts Options) (*Broker, error) {
	redis.SetLogger(quietLibrary{}) // process-wide, and the same every time
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		events:     events,
		mode:       opts.Mode(),
		opts:       opts,
		channel:    opts.Prefix + "messages",
		log:        opts.Logger,
		wentDown:   make(chan struct{}, 1),
		backAgain:  closedChannel(),
		retryFirst: 100 * time.Millisecond,
		retryMax:   5 * time.Second,
	}
	if err := b.connect(); err != nil {
		return nil, err
	}
	b.presence = newPresence(b)
	if b.mode == ModeCluster {
		b.shards = newShards(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(opts.Timeout, time.Second))
	defer cancel()
	if err := b.check(ctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("%s does not answer: %w", b.opts.Describe(), err)
	}
	if b.mode != ModeCluster {
		// Listening before anyone can subscribe or publish means that every
		// message a subscriber could miss comes on the channel: Run reads
		// what waits there once it starts.
		b.pubsub = b.client.Subscribe(ctx, b.channel, b.presence.channel)
		for range 2 { // one confirmation per channel
			if _, err := b.pubsub.Receive(ctx); err != nil {
				b.Close()
				return nil, fmt.Errorf("%s: subscribe to %s: %w", b.opts.Describe(), b.channel, err)
			}
		}
	}
	b.up.Store(true)
	return b, nil
}

// topicKey is the name of one of topic's keys, or of its shard channel.
// In a cluster the topic's name is the hash tag, so that every key of a
// topic and its channel share one slot, and topics spread over the
// masters.
func (b *Broker) topicKey(topic, suffix string) string {
	if b.mode == ModeCluster {
		return b.opts.Prefix + "topic:{" + topic + "}:" + suffix
	}
	return b.opts.Prefix + "topic:" + topic + ":" + suffix
}

// channelOf is where topic's announcements go: its shard channel in a
// cluster, else the one channel every instance reads.
func (b *Broker) channelOf(topic string) string {
	if b.mode == ModeCluster {
		return b.topicKey(topic, "messages")
	}
	return b.channel
}

// keys are a topic's counter, sequence start, stream, presence hash and
// last id announced (kept with Sentinel and MinReplicas only), in the
// order the scripts take them.
func (b *Broker) keys(topic string) []string {
	return []string{b.topicKey(topic, "seq"), b.topicKey(topic, "start"), b.topicKey(topic, "log"),
		b.topicKey(topic, "presence"), b.topicKey(topic, "announced")}
}

// announcing is how the publish script announces a message in b's mode.
func (b *Broker) announcing() string {
	switch {
	case b.waitsForReplicas():
		return announceLater
	case b.mode == ModeCluster:
		return announceShard
	}
	return announcePublish
}

// Publish numbers and keeps text in Redis and announces it to every
// instance. It returns once Redis has it; this instance's subscribers get
// it from the channel, like everyone else's. When Redis did not answer, a
// publish it never received is refused with ErrBrokerUnavailable, and one
// that it may have run gets ErrPublishUnknown: it reaches every
// subscriber once or no one. It is never sent twice: a retry after a
// timeout could publish it twice.
func (b *Broker) Publish(ctx context.Context, topic, text string) (*app.Message, int, error) {
	m, n, _, err := b.publish(ctx, topic, text, "")
	return m, n, err
}

// PublishKeyed is Publish with a key that names the publish on topic for
// app.PublishKeyTTL: a publish whose key Redis holds is not published again,
// but answered with the first one's message. A key that came with another
// text is refused with ErrKeyReused.
func (b *Broker) PublishKeyed(ctx context.Context, topic, text, key string) (*app.Message, int, bool, error) {
	return b.publish(ctx, topic, text, key)
}

func (b *Broker) publish(ctx context.Context, topic, text, key string) (_ *app.Message, _ int, replayed bool, _ error) {
	if err := b.events.CheckMessage(topic, text); err != nil {
		return nil, 0, false, err
	}
	now := time.Now()
	keys := b.keys(topic)
	if key != "" {
		keys = append(keys, b.topicKey(topic, "publish:"+key))
	}
	reply, err := b.runPublish(ctx, keys, now.UnixMicro(), text, b.opts.HistorySize,
		b.opts.HistoryTTL.Milliseconds(), b.channelOf(topic), topic, now.Add(-presenceStale).UnixMilli(),
		b.presence.instance, app.PublishKeyTTL.Milliseconds(), b.announcing())
	if err != nil {
		return nil, 0, false, err
	}
	var id uint64
	var micros, elsewhere, replay int64
	var epoch string
	if len(reply) == 5 {
		idText, _ := reply[0].(string)
		elsewhere, _ = reply[1].(int64)
		microsText, _ := reply[2].(string)
		epoch, _ = reply[3].(string)
		replay, _ = reply[4].(int64)
		id, err = strconv.ParseUint(idText, 10, 64)
		if err == nil {
			micros, err = strconv.ParseInt(microsText, 10, 64)
		}
	}
	if len(reply) != 5 || err != nil {
		// The script ran, so the message may be out.
		return nil, 0, false, fmt.Errorf("%w: the publish script returned %v", app.ErrPublishUnknown, reply)
	}
	m := &app.Message{ID: id, Topic: topic, Time: time.UnixMicro(micros), Text: text}
	if b.waitsForReplicas() && epoch != "" {
		if err := b.announce(ctx, m, epoch); err != nil {
			return nil, 0, false, err
		}
	}
	b.recovered(ctx)
	// This instance's subscribers are counted as they are now; the
	// others' as their instances last said, which can lag a join or a
	// leave by a moment.
	subscribers := b.events.LocalSubscribers(topic) + int(elsewhere)
	return m, subscribers, replay == 1, nil
}

// runPublish runs the publish script on the publisher, and when publishes
// wait for replicas, WAIT after it on the same connection. It returns the
// script's reply, or the error the publish answers with.
func (b *Broker) runPublish(ctx context.Context, keys []string, args ...any) ([]any, error) {
	if b.waitsForReplicas() {
		return b.runPublishReplicated(ctx, keys, args...)
	}
	reply, err := publishScript.Run(ctx, b.publisher, keys, args...).Slice()
	if err != nil {
		return nil, b.publishFailed(err)
	}
	return reply, nil
}

// publishFailed is the error a publish that failed with err returns:
// ErrKeyReused, ErrBrokerUnavailable when Redis never ran the script, or
// ErrPublishUnknown.
func (b *Broker) publishFailed(err error) error {
	if strings.HasPrefix(err.Error(), "KEYREUSED") {
		return app.ErrKeyReused
	}
	if redirected(err) {
		// The topic's slot is moving between masters: Redis answers, and
		// the publisher, which does not follow redirections, finds the
		// new master next time.
		return fmt.Errorf("%w: %v", app.ErrBrokerUnavailable, err)
	}
	b.failed(err)
	if neverSent(err) {
		return fmt.Errorf("%w: %v", app.ErrBrokerUnavailable, err)
	}
	return fmt.Errorf("%w: %v", app.ErrPublishUnknown, err)
}

// redirected reports whether err is a cluster's answer that a command's
// slot is, or is moving, elsewhere: it did not run.
func redirected(err error) bool {
	for _, prefix := range []string{"MOVED ", "ASK ", "TRYAGAIN "} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}

// neverSent reports whether err proves that Redis never ran a command:
// there was no connection to send it on, or Redis refused it before
// running it. A timeout, or a connection lost while waiting for the
// reply, leaves that unknown.
func neverSent(err error) bool {
	var opErr *net.OpError
	var reply redis.Error
	switch {
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return true
	case errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrClosed):
		return true
	case errors.As(err, &reply):
		// Refused before it ran (OOM, READONLY, NOAUTH), unless the
		// script itself failed part way, which Redis says with "script".
		return !strings.Contains(reply.Error(), "script")
	}
	return false
}

// Subscribe subscribes with the hub, which seeds the topic from Redis when
// this instance does not hold it.
func (b *Broker) Subscribe(ctx context.Context, req app.SubscribeRequest) (*app.Subscriber, error) {
	if err := app.CheckTopic(req.Topic); err != nil {
		return nil, err
	}
	// b.mu keeps accept out from reading the seed to joining, so that no
	// message falls between the seed and the channel.
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.joinHook != nil {
		b.joinHook()
	}
	s, err := b.events.SubscribeSeeded(req, nil)
	if !errors.Is(err, app.ErrNotSeeded) {
		return s, err
	}
	if b.shards != nil {
		// Following the topic's channel comes first: what is published
		// before the subscription takes effect is read from the stream once
		// it has (see shards).
		if err := b.shards.follow(ctx, req.Topic); err != nil {
			b.failed(err)
			return nil, fmt.Errorf("%w: %v", app.ErrBrokerUnavailable, err)
		}
	}
	seed, err := b.readSeed(ctx, req.Topic)
	if err != nil {
		b.failed(err)
		return nil, fmt.Errorf("%w: %v", app.ErrBrokerUnavailable, err)
	}
	return b.events.SubscribeSeeded(req, seed)
}

// readSeed reads where topic stands in Redis, and its kept messages.
func (b *Broker) readSeed(ctx context.Context, topic string) (*app.TopicSeed, error) {
	keys := b.keys(topic)
	micros := strconv.FormatInt(time.Now().UnixMicro(), 10)
	reply, err := seedScript.Run(ctx, b.client, keys, micros, "", 0, b.opts.HistoryTTL.Milliseconds(), b.announcing()).StringSlice()
	if err != nil {
		return nil, err
	}
	if len(reply) != 2 {
		return nil, fmt.Errorf("the seed script returned %d values", len(reply))
	}
	epoch, errEpoch := strconv.ParseUint(reply[0], 10, 64)
	last, errLast := strconv.ParseUint(reply[1], 10, 64)
	if err := errors.Join(errEpoch, errLast); err != nil {
		return nil, fmt.Errorf("topic %s in redis: %w", topic, err)
	}
	seed := &app.TopicSeed{Epoch: epoch, SequenceStart: epoch, LastID: last}
	if b.opts.HistorySize > 0 {
		entries, err := b.client.XRevRangeN(ctx, keys[2], "+", "-", int64(b.opts.HistorySize)).Result()
		if err != nil {
			return nil, err
		}
		for i := len(entries) - 1; i >= 0; i-- {
			m, err := decodeEntry(topic, entries[i])
			if err != nil {
				return nil, err
			}
			if m.ID > last {
				break // published after the counter was read: the channel brings it
			}
			seed.History = append(seed.History, m)
		}
		// Only an unbroken run that ends at the last id is history.
		for i := len(seed.History) - 1; i > 0; i-- {
			if seed.History[i-1].ID+1 != seed.History[i].ID {
				seed.History = seed.History[i:]
				break
			}
		}
		if n := len(seed.History); n > 0 && seed.History[n-1].ID != last {
			seed.History = nil
		}
	}
	return seed, nil
}

// Close closes the connections.
func (b *Broker) Close() error {
	if b.pubsub != nil {
		b.pubsub.Close() // closed already when Run has returned
	}
	if b.shards != nil {
		b.shards.close()
	}
	errs := []error{b.publisher.Close(), b.client.Close()}
	for _, s := range b.sentinels {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
