package redisbroker

import (
	"context"
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
	// URL is redis://[:password@]host:port[/db], or rediss:// for TLS.
	URL string
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
//     history, capped at HistorySize) and publishes it on one channel.
//     The publish is acknowledged once Redis has done all three.
//   - Every instance reads the channel and hands each message of a topic
//     it holds to its hub, in id order. A message that does not follow
//     the last one held means messages were missed (Redis was out of
//     reach): they are read from the stream first.
//   - A subscriber to a topic the instance does not hold yet seeds it
//     from the stream, in the same step as joining, so resume works on
//     every instance.
//
// A topic's ids start at the Unix time in microseconds when Redis first
// sees it, as the hub's do, so that a Redis that lost its data starts
// above every id it gave before: a client resuming across the wipe is
// told of the gap instead of waiting for ids that were given out again.
// That start is also the epoch that announcements and seeds carry, which
// tells an instance that Redis lost the topic, and that the gap's size is
// unknown.
type Broker struct {
	events    app.BrokerEventHandler // the hub
	client    *redis.Client
	publisher *redis.Client // publishes only: it never retries
	pubsub    *redis.PubSub // the channels, from the start; Run reads them
	opts      Options
	channel   string
	log       *slog.Logger

	// mu makes seeding and accepting one sequence, so that a topic's
	// messages reach the hub in id order with none skipped between a
	// seed and the channel.
	mu sync.Mutex

	// up says whether Redis answered last time; changing makes each
	// change of it one step with telling the hub and the log.
	up         atomic.Bool
	changing   sync.Mutex
	wentDown   chan struct{} // told when up turns false
	errorCount atomic.Uint64
	presence   *presence

	// joinHook, set only by tests, runs as a subscriber is about to join
	// the hub: a test forces a topic's last leave into that moment.
	joinHook func()
}

var (
	_ app.Broker         = (*Broker)(nil)
	_ app.KeyedPublisher = (*Broker)(nil)
)

// sequenceLua starts the topic's sequence when Redis has none, at ARGV[1],
// the time in microseconds, and sets epoch to where it started: an
// instance that sees the epoch change knows that Redis lost the topic and
// that ids of before and after cannot be compared. KEYS[1] is the counter,
// KEYS[2] the start, ARGV[4] the TTL in milliseconds.
const sequenceLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4])
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
  redis.call('DECR', KEYS[1])
end
local epoch = redis.call('GET', KEYS[2])
if not epoch then -- the start alone was lost: count from here as a new run
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch, 'PX', ARGV[4])
end
`

// publishScript numbers, keeps and announces one message atomically, and
// counts the topic's subscribers on the other instances from the presence
// hash. KEYS: counter, sequence start, stream, presence, and the publish's
// key when it has one. ARGV: the time in microseconds, the text, the
// history size, the TTL in milliseconds, the channel, the topic, the time
// in milliseconds before which a count is stale, this instance's field in
// the hash, and how long to keep the publish's key in milliseconds. It
// announces "topic\nepoch\nid\nmicros\ntext" and returns the id, the
// count and the time. A publish whose key Redis holds is not published
// again: it returns the first one's id and time, or, when the key came
// with another text, the error KEYREUSED. Ids are formatted with %d: Lua's
// default number format would round them.
var publishScript = redis.NewScript(`
local function elsewhere()
  local subscribers = 0
  local counts = redis.call('HGETALL', KEYS[4])
  for i = 1, #counts, 2 do
    local n, stamp = string.match(counts[i + 1], '^(%d+):(%d+)$')
    if counts[i] ~= ARGV[8] and n and tonumber(stamp) >= tonumber(ARGV[7]) then subscribers = subscribers + tonumber(n) end
  end
  return subscribers
end
local digest = KEYS[5] and redis.sha1hex(ARGV[2])
if KEYS[5] then
  local first = redis.call('GET', KEYS[5])
  if first then
    local firstID, firstMicros, firstDigest = string.match(first, '^(%d+):(%d+):(%x+)$')
    if firstDigest ~= digest then return redis.error_reply('KEYREUSED the key came with another message') end
    return {firstID, elsewhere(), firstMicros}
  end
end
` + sequenceLua + `
local id = redis.call('INCR', KEYS[1])
local ids = string.format('%d', id)
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[3], ids .. '-1', 't', ARGV[1], 'm', ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6] .. '\n' .. epoch .. '\n' .. ids .. '\n' .. ARGV[1] .. '\n' .. ARGV[2])
if KEYS[5] then
  redis.call('SET', KEYS[5], ids .. ':' .. ARGV[1] .. ':' .. digest, 'PX', ARGV[9])
end
return {ids, elsewhere(), ARGV[1]}
`)

// seedScript reads where a topic stands, starting its sequence if Redis
// has none, so that every instance agrees on it: it returns the epoch and
// the last id. KEYS and ARGV as for publishScript (ARGV[1] and ARGV[4]
// only).
var seedScript = redis.NewScript(sequenceLua + `
return {epoch, redis.call('GET', KEYS[1])}
`)

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
	clientOpts, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("redis.url: %w", err)
	}
	if opts.Timeout > 0 {
		clientOpts.DialTimeout, clientOpts.ReadTimeout, clientOpts.WriteTimeout = opts.Timeout, opts.Timeout, opts.Timeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	// Publishes are never retried: a retry after a timeout could publish
	// twice.
	publisherOpts := *clientOpts
	publisherOpts.MaxRetries = -1
	b := &Broker{
		events:    events,
		client:    redis.NewClient(clientOpts),
		publisher: redis.NewClient(&publisherOpts),
		opts:      opts,
		channel:   opts.Prefix + "messages",
		log:       opts.Logger,
		wentDown:  make(chan struct{}, 1),
	}
	b.presence = newPresence(b)
	ctx, cancel := context.WithTimeout(context.Background(), max(opts.Timeout, time.Second))
	defer cancel()
	if err := b.client.Ping(ctx).Err(); err != nil {
		b.client.Close()
		b.publisher.Close()
		return nil, fmt.Errorf("redis at %s does not answer: %w", clientOpts.Addr, err)
	}
	// Listening before anyone can subscribe or publish means that every
	// message a subscriber could miss comes on the channel: Run reads what
	// waits there once it starts.
	b.pubsub = b.client.Subscribe(ctx, b.channel, b.presence.channel)
	for range 2 { // one confirmation per channel
		if _, err := b.pubsub.Receive(ctx); err != nil {
			b.Close()
			return nil, fmt.Errorf("redis at %s: subscribe to %s: %w", clientOpts.Addr, b.channel, err)
		}
	}
	b.up.Store(true)
	return b, nil
}

// keys are a topic's counter, sequence start and stream.
func (b *Broker) keys(topic string) []string {
	base := b.opts.Prefix + "topic:" + topic
	return []string{base + ":seq", base + ":start", base + ":log"}
}

// publishKeyTTL is how long Redis keeps a publish's key: a retry with the
// key after that publishes again.
const publishKeyTTL = 10 * time.Minute

// Publish numbers and keeps text in Redis and announces it to every
// instance. It returns once Redis has it; this instance's subscribers get
// it from the channel, like everyone else's. When Redis did not answer, a
// publish it never received is refused with ErrBrokerUnavailable, and one
// that it may have run gets ErrPublishUnknown: it reaches every
// subscriber once or no one. It is never sent twice: a retry after a
// timeout could publish it twice.
func (b *Broker) Publish(ctx context.Context, topic, text string) (*app.Message, int, error) {
	return b.publish(ctx, topic, text, "")
}

// PublishKeyed is Publish with a key that names the publish on topic for
// publishKeyTTL: a publish whose key Redis holds is not published again,
// but answered with the first one's message. A key that came with another
// text is refused with ErrKeyReused.
func (b *Broker) PublishKeyed(ctx context.Context, topic, text, key string) (*app.Message, int, error) {
	return b.publish(ctx, topic, text, key)
}

func (b *Broker) publish(ctx context.Context, topic, text, key string) (*app.Message, int, error) {
	if err := b.events.CheckMessage(topic, text); err != nil {
		return nil, 0, err
	}
	now := time.Now()
	keys := append(b.keys(topic), b.presence.key(topic))
	if key != "" {
		keys = append(keys, b.opts.Prefix+"topic:"+topic+":publish:"+key)
	}
	reply, err := publishScript.Run(ctx, b.publisher, keys, now.UnixMicro(), text, b.opts.HistorySize,
		b.opts.HistoryTTL.Milliseconds(), b.channel, topic, now.Add(-presenceStale).UnixMilli(),
		b.presence.instance, publishKeyTTL.Milliseconds()).Slice()
	if err != nil {
		return nil, 0, b.publishFailed(err)
	}
	var id uint64
	var micros int64
	var elsewhere int64
	if len(reply) == 3 {
		idText, _ := reply[0].(string)
		elsewhere, _ = reply[1].(int64)
		microsText, _ := reply[2].(string)
		id, err = strconv.ParseUint(idText, 10, 64)
		if err == nil {
			micros, err = strconv.ParseInt(microsText, 10, 64)
		}
	}
	if len(reply) != 3 || err != nil {
		// The script ran, so the message may be out.
		return nil, 0, fmt.Errorf("%w: the publish script returned %v", app.ErrPublishUnknown, reply)
	}
	b.recovered(ctx)
	// This instance's subscribers are counted as they are now; the
	// others' as their instances last said, which can lag a join or a
	// leave by a moment.
	subscribers := b.events.LocalSubscribers(topic) + int(elsewhere)
	return &app.Message{ID: id, Topic: topic, Time: time.UnixMicro(micros), Text: text}, subscribers, nil
}

// publishFailed is the error a publish that failed with err returns:
// ErrKeyReused, ErrBrokerUnavailable when Redis never ran the script, or
// ErrPublishUnknown.
func (b *Broker) publishFailed(err error) error {
	if strings.HasPrefix(err.Error(), "KEYREUSED") {
		return app.ErrKeyReused
	}
	b.failed(err)
	if neverSent(err) {
		return fmt.Errorf("%w: %v", app.ErrBrokerUnavailable, err)
	}
	return fmt.Errorf("%w: %v", app.ErrPublishUnknown, err)
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
	reply, err := seedScript.Run(ctx, b.client, keys, micros, "", 0, b.opts.HistoryTTL.Milliseconds()).StringSlice()
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
	pubsub := b.pubsub
	defer pubsub.Close()
	// go-redis does not give up a blocked read when ctx ends; closing the
	// subscription does.
	stop := context.AfterFunc(ctx, func() { pubsub.Close() })
	defer stop()
	backoff := 100 * time.Millisecond
	for {
		received, err := pubsub.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			b.failed(err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
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
				backoff = 100 * time.Millisecond
				b.catchUp(ctx)
			}
		case *redis.Message:
			if v.Channel == b.presence.channel {
				b.presence.announced(v.Payload)
				continue
			}
			m, epoch, err := decodeAnnouncement(v.Payload)
			if err != nil {
				b.log.Error("ignored a message on the redis channel", "err", err)
				continue
			}
			b.accept(ctx, m, epoch)
		}
	}
}

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
			if err := b.client.Ping(ctx).Err(); err != nil {
				b.failed(err)
				continue
			}
			b.recovered(ctx)
		}
	}
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
// (0: all), from its stream, with the epoch they were numbered in, and
// reports whether Redis answered. What the stream no longer holds is a
// gap, which the hub reports. The caller holds b.mu.
func (b *Broker) fillLocked(ctx context.Context, topic string, last, upTo uint64) bool {
	end := "+"
	if upTo > 0 {
		end = strconv.FormatUint(upTo, 10) + "-1"
	}
	keys := b.keys(topic)
	pipe := b.client.TxPipeline() // the epoch and the entries of one moment
	epochRead := pipe.Get(ctx, keys[1])
	entriesRead := pipe.XRange(ctx, keys[2], strconv.FormatUint(last+1, 10)+"-0", end)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		b.failed(err)
		return false
	}
	epoch, err := strconv.ParseUint(epochRead.Val(), 10, 64)
	if err != nil {
		return true // Redis no longer has the topic: nothing to fill
	}
	for _, entry := range entriesRead.Val() {
		m, err := decodeEntry(topic, entry)
		if err != nil {
			b.log.Error("ignored a damaged stream entry", "topic", topic, "err", err)
			continue
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
	b.log.Info("redis is reachable again")
	b.events.SetBrokerUp(true)
}

// Ready pings Redis.
func (b *Broker) Ready(ctx context.Context) error {
	if err := b.events.Ready(); err != nil {
		return err
	}
	if err := b.client.Ping(ctx).Err(); err != nil {
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

// Close closes the connections.
func (b *Broker) Close() error {
	b.pubsub.Close() // closed already when Run has returned
	return errors.Join(b.publisher.Close(), b.client.Close())
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
