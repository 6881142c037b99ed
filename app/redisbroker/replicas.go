// Publishes that replicas must hold before they are acknowledged
// (Sentinel with MinReplicas). Redis replicates asynchronously: a master
// that dies right after a write takes the write with it, and the replica
// that Sentinel promotes gives its id to the next message. So a publish
// is announced, and acknowledged, only once MinReplicas replicas have it:
//   - The publish script writes the message, and WAIT follows it on the
//     same connection, which waits until that many replicas hold every
//     write the connection made, or half of Timeout has passed.
//   - A WAIT that counts fewer replicas leaves the outcome unknown (504):
//     the message is on the master, not announced. If the master lives,
//     the next announced message of the topic brings it to everyone, as a
//     missed message would be; if it dies, the message dies with it and
//     no one saw it.
//   - Once confirmed, the announce script moves the topic's last id
//     announced up to the message and announces it, and WAIT follows it
//     too, so that after a failover the new master's last id announced
//     covers every acknowledged message. Seeds and catch-ups read no
//     further than the last id announced, so nothing that replicas may
//     lack reaches a subscriber.
//   - A publish cut off between the two is safe on the replicas but not
//     announced (504): it comes with the topic's next message, and a
//     retry with the publish's key announces it at once.

package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"herald/app"
)

// replicaWait is how long a publish waits for replicas at each step:
// half of Timeout, which bounds a script and its wait together, read as
// one reply.
func (b *Broker) replicaWait() time.Duration { return b.opts.Timeout / 2 }

// runReplicated runs script with keys and args on one connection of the
// publisher, with WAIT after it, and returns the script's command and
// how many replicas hold its writes, or why that is unknown.
func (b *Broker) runReplicated(ctx context.Context, script *redis.Script, keys []string, args ...any) (*redis.Cmd, int64, error) {
	run := func(eval func(redis.Scripter) *redis.Cmd) (*redis.Cmd, *redis.IntCmd) {
		pipe := b.publisher.Pipeline()
		ran := eval(pipe)
		wait := redis.NewIntCmd(ctx, "wait", b.opts.MinReplicas, b.replicaWait().Milliseconds())
		pipe.Process(ctx, wait)
		pipe.Exec(ctx) // each command holds its own outcome
		return ran, wait
	}
	ran, wait := run(func(s redis.Scripter) *redis.Cmd { return script.EvalSha(ctx, s, keys, args...) })
	if redis.HasErrorPrefix(ran.Err(), "NOSCRIPT") {
		// The master does not have the script (a new master after a
		// failover): it ran nothing, so sending the script itself is safe.
		ran, wait = run(func(s redis.Scripter) *redis.Cmd { return script.Eval(ctx, s, keys, args...) })
	}
	replicas, err := wait.Result()
	return ran, replicas, err
}

// confirmed is nil when replicas hold what the master took, else the
// unknown outcome that a publish answers with.
func (b *Broker) confirmed(what string, replicas int64, err error) error {
	if err != nil {
		b.failed(err)
		return fmt.Errorf("%w: %s, but waiting for its replicas failed: %v", app.ErrPublishUnknown, what, err)
	}
	if replicas < int64(b.opts.MinReplicas) {
		return fmt.Errorf("%w: %s, but %d of the %d replicas needed confirmed it within %s",
			app.ErrPublishUnknown, what, replicas, b.opts.MinReplicas, b.replicaWait())
	}
	return nil
}

// runPublishReplicated runs the publish script, and returns its reply
// once enough replicas hold the message, or the error the publish answers
// with.
func (b *Broker) runPublishReplicated(ctx context.Context, keys []string, args ...any) ([]any, error) {
	ran, replicas, err := b.runReplicated(ctx, publishScript, keys, args...)
	reply, scriptErr := ran.Slice()
	if scriptErr != nil {
		return nil, b.publishFailed(scriptErr)
	}
	if err := b.confirmed("the master took the message", replicas, err); err != nil {
		return nil, err
	}
	return reply, nil
}

// announce tells the other instances of m, of the topic's run epoch, once
// replicas hold it, and returns once they hold the announcement too.
func (b *Broker) announce(ctx context.Context, m *app.Message, epoch string) error {
	id := strconv.FormatUint(m.ID, 10)
	announcement := m.Topic + "\n" + epoch + "\n" + id + "\n" + strconv.FormatInt(m.Time.UnixMicro(), 10) + "\n" + m.Text
	ran, replicas, err := b.runReplicated(ctx, announceScript, []string{b.topicKey(m.Topic, "announced")},
		id, b.opts.HistoryTTL.Milliseconds(), b.channel, announcement)
	if scriptErr := ran.Err(); scriptErr != nil && !errors.Is(scriptErr, redis.Nil) {
		b.failed(scriptErr)
		return fmt.Errorf("%w: replicas hold the message, but announcing it failed: %v", app.ErrPublishUnknown, scriptErr)
	}
	return b.confirmed("the message was announced", replicas, err)
}
