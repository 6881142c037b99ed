// Web Push's records in Redis: the VAPID key pair and the browsers'
// subscriptions, shared by every instance.

package redisbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"herald/app/push"
)

// PushStore keeps push's key pair and subscriptions in Redis, where every
// instance finds them. Its keys, under the prefix, all carry the hash tag
// {push}, so that on a Redis Cluster they share one slot and one script
// can keep the limits exact over all of them: "{push}:keys" holds the key
// pair, "{push}:count" the number of subscriptions, and
// "{push}:topic:NAME" a hash of each topic's subscriptions, endpoint to
// keys. Like history, they need Redis's persistence (appendonly yes): a
// lost key pair breaks every browser's subscription.
type PushStore struct {
	client redis.UniversalClient
	prefix string
	limits push.Limits
}

var _ push.Store = (*PushStore)(nil)

// PushStore returns the push store in the broker's Redis, bounded by
// limits. It uses the broker's connections: it is usable until the
// broker is closed.
func (b *Broker) PushStore(limits push.Limits) *PushStore {
	return &PushStore{client: b.client, prefix: b.opts.Prefix + "{push}:", limits: limits}
}

// Keys returns the key pair in Redis. When there is none, fresh is set
// only if no other instance set one meanwhile, and the one set is
// returned: instances that start at once agree.
func (p *PushStore) Keys(ctx context.Context, fresh push.KeyPair) (push.KeyPair, error) {
	key := p.prefix + "keys"
	if err := p.client.SetNX(ctx, key, fresh.Encode(), 0).Err(); err != nil {
		return push.KeyPair{}, fmt.Errorf("redis: keep the push key pair: %w", err)
	}
	stored, err := p.client.Get(ctx, key).Bytes()
	if err != nil {
		return push.KeyPair{}, fmt.Errorf("redis: read the push key pair: %w", err)
	}
	keys, err := push.DecodeKeyPair(stored)
	if err != nil {
		return push.KeyPair{}, fmt.Errorf("redis key %s: %w", key, err)
	}
	return keys, nil
}

// storedPushKeys is what a topic's hash holds for one endpoint.
type storedPushKeys struct {
	P256dh string `json:"p256dh"`
	Auth   string `json:"auth"`
}

// addPushScript stores a subscription within the limits. KEYS: the
// topic's hash, the count. ARGV: the endpoint, its keys, the limit per
// topic and in all. It returns 1 for a new one, 0 for one replaced, -1
// when the topic is full, -2 when the store is.
var addPushScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 0
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[4]) then return -2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
`)

// removePushScript forgets a subscription, and counts it out. KEYS: the
// topic's hash, the count. ARGV: the endpoint.
var removePushScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then redis.call('DECR', KEYS[2]) end
return 0
`)

func (p *PushStore) topicKey(topic string) string { return p.prefix + "topic:" + topic }

// Add stores sub, within the limits.
func (p *PushStore) Add(ctx context.Context, sub push.Subscription) error {
	keys, _ := json.Marshal(storedPushKeys{P256dh: sub.P256dh, Auth: sub.Auth}) // strings only: Marshal cannot fail
	result, err := addPushScript.Run(ctx, p.client, []string{p.topicKey(sub.Topic), p.prefix + "count"},
		sub.Endpoint, keys, p.limits.PerTopic, p.limits.Total).Int()
	switch {
	case err != nil:
		return fmt.Errorf("redis: add a push subscription: %w", err)
	case result == -1:
		return fmt.Errorf("%w: %s has %d", push.ErrTopicFull, sub.Topic, p.limits.PerTopic)
	case result == -2:
		return fmt.Errorf("%w: there are %d", push.ErrFull, p.limits.Total)
	}
	return nil
}

// Remove forgets one subscription.
func (p *PushStore) Remove(ctx context.Context, topic, endpoint string) error {
	if err := removePushScript.Run(ctx, p.client, []string{p.topicKey(topic), p.prefix + "count"}, endpoint).Err(); err != nil {
		return fmt.Errorf("redis: remove a push subscription: %w", err)
	}
	return nil
}

// List returns topic's subscriptions.
func (p *PushStore) List(ctx context.Context, topic string) ([]push.Subscription, error) {
	key := p.topicKey(topic)
	fields, err := p.client.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("redis: read push subscriptions: %w", err)
	}
	subs := make([]push.Subscription, 0, len(fields))
	for endpoint, value := range fields {
		var keys storedPushKeys
		if err := json.Unmarshal([]byte(value), &keys); err != nil {
			return nil, fmt.Errorf("redis key %s: a malformed push subscription: %w", key, err)
		}
		subs = append(subs, push.Subscription{Topic: topic, Endpoint: endpoint, P256dh: keys.P256dh, Auth: keys.Auth})
	}
	return subs, nil
}

// Count is how many subscriptions Redis holds.
func (p *PushStore) Count(ctx context.Context) (int, error) {
	n, err := p.client.Get(ctx, p.prefix+"count").Int()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redis: count push subscriptions: %w", err)
	}
	return n, nil
}
