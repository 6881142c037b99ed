// Web Push's records in the history file: the VAPID key pair and the
// browsers' subscriptions, in a bucket of their own beside the topics.

package history

import (
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"

	"herald/app"
	"herald/app/push"

	bolt "go.etcd.io/bbolt"
)

// pushBucket holds push's records: the key pair at pushKeysKey, the
// number of subscriptions at pushCountKey (8 bytes, big-endian), and under
// pushSubscriptionsKey a bucket per topic, whose keys are endpoints and
// whose values are the browser's keys: its P-256 point (65 bytes), then
// its auth secret (16 bytes). '#' cannot start a topic name.
var (
	pushBucket           = []byte("#push")
	pushKeysKey          = []byte("keys")
	pushCountKey         = []byte("count")
	pushSubscriptionsKey = []byte("subscriptions")
)

// Sizes of a stored subscription's keys.
const (
	pushPointBytes = 65
	pushAuthBytes  = 16
)

// PushStore keeps push's key pair and subscriptions in the history file,
// so that they survive a restart, clean or not, as history does. Each
// change is one fsynced bbolt transaction, apart from the journal: a
// registration is never part of a publish, and is rare. The
// transactions, which bbolt runs one at a time, keep the limits exact.
type PushStore struct {
	bolt   *BoltStore
	limits push.Limits
}

var _ push.Store = (*PushStore)(nil)

// PushStore returns the push store in this file, bounded by limits.
func (s *File) PushStore(limits push.Limits) *PushStore {
	return &PushStore{bolt: s.bolt, limits: limits}
}

// Keys returns the key pair in the file, storing fresh when it has none.
func (p *PushStore) Keys(_ context.Context, fresh push.KeyPair) (push.KeyPair, error) {
	var keys push.KeyPair
	err := p.bolt.update("keep the push key pair", func(tx *bolt.Tx) error {
		root, err := pushRoot(tx)
		if err != nil {
			return err
		}
		if stored := root.Get(pushKeysKey); stored != nil {
			keys, err = push.DecodeKeyPair(stored)
			return err
		}
		keys = fresh
		return root.Put(pushKeysKey, fresh.Encode())
	})
	return keys, err
}

// Add stores sub, within the limits.
func (p *PushStore) Add(_ context.Context, sub push.Subscription) error {
	value, err := encodePushKeys(sub)
	if err != nil {
		return err
	}
	return p.bolt.update("add a push subscription", func(tx *bolt.Tx) error {
		root, err := pushRoot(tx)
		if err != nil {
			return err
		}
		topic := root.Bucket(pushSubscriptionsKey).Bucket([]byte(sub.Topic))
		if topic != nil && topic.Get([]byte(sub.Endpoint)) != nil {
			return topic.Put([]byte(sub.Endpoint), value)
		}
		if n := countKeys(topic); n >= p.limits.PerTopic {
			return fmt.Errorf("%w: %s has %d", push.ErrTopicFull, sub.Topic, n)
		}
		total := pushCount(root)
		if total >= uint64(p.limits.Total) {
			return fmt.Errorf("%w: there are %d", push.ErrFull, total)
		}
		if topic == nil {
			if topic, err = root.Bucket(pushSubscriptionsKey).CreateBucket([]byte(sub.Topic)); err != nil {
				return err
			}
		}
		if err := topic.Put([]byte(sub.Endpoint), value); err != nil {
			return err
		}
		return root.Put(pushCountKey, binary.BigEndian.AppendUint64(nil, total+1))
	})
}

// Remove forgets one subscription, and its topic's bucket with its last.
func (p *PushStore) Remove(_ context.Context, topic, endpoint string) error {
	return p.bolt.update("remove a push subscription", func(tx *bolt.Tx) error {
		root := tx.Bucket(pushBucket)
		if root == nil {
			return nil
		}
		subs := root.Bucket(pushSubscriptionsKey)
		b := subs.Bucket([]byte(topic))
		if b == nil || b.Get([]byte(endpoint)) == nil {
			return nil
		}
		if err := b.Delete([]byte(endpoint)); err != nil {
			return err
		}
		if countKeys(b) == 0 {
			if err := subs.DeleteBucket([]byte(topic)); err != nil {
				return err
			}
		}
		return root.Put(pushCountKey, binary.BigEndian.AppendUint64(nil, pushCount(root)-1))
	})
}

// List returns topic's subscriptions.
func (p *PushStore) List(_ context.Context, topic string) ([]push.Subscription, error) {
	var subs []push.Subscription
	err := p.bolt.view("read push subscriptions", func(tx *bolt.Tx) error {
		root := tx.Bucket(pushBucket)
		if root == nil {
			return nil
		}
		b := root.Bucket(pushSubscriptionsKey).Bucket([]byte(topic))
		if b == nil {
			return nil
		}
		return b.ForEach(func(endpoint, value []byte) error {
			sub, err := decodePushSubscription(topic, endpoint, value)
			subs = append(subs, sub)
			return err
		})
	})
	return subs, err
}

// Count is how many subscriptions the file holds.
func (p *PushStore) Count(context.Context) (int, error) {
	var n uint64
	err := p.bolt.view("count push subscriptions", func(tx *bolt.Tx) error {
		if root := tx.Bucket(pushBucket); root != nil {
			n = pushCount(root)
		}
		return nil
	})
	return int(n), err
}

// pushRoot is the push bucket, made with its subscriptions bucket if the
// file has none yet.
func pushRoot(tx *bolt.Tx) (*bolt.Bucket, error) {
	root, err := tx.CreateBucketIfNotExists(pushBucket)
	if err != nil {
		return nil, err
	}
	if _, err := root.CreateBucketIfNotExists(pushSubscriptionsKey); err != nil {
		return nil, err
	}
	return root, nil
}

func pushCount(root *bolt.Bucket) uint64 {
	if v := root.Get(pushCountKey); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// countKeys counts a topic's subscriptions, which the limit per topic
// bounds.
func countKeys(b *bolt.Bucket) int {
	n := 0
	if b != nil {
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
	}
	return n
}

// encodePushKeys is what the file keeps of sub's keys.
func encodePushKeys(sub push.Subscription) ([]byte, error) {
	point, errPoint := base64.RawURLEncoding.DecodeString(sub.P256dh)
	auth, errAuth := base64.RawURLEncoding.DecodeString(sub.Auth)
	if err := errors.Join(errPoint, errAuth); err != nil || len(point) != pushPointBytes || len(auth) != pushAuthBytes {
		return nil, fmt.Errorf("%w: malformed keys", push.ErrInvalidSubscription)
	}
	return append(point, auth...), nil
}

func decodePushSubscription(topic string, endpoint, value []byte) (push.Subscription, error) {
	if len(value) != pushPointBytes+pushAuthBytes {
		return push.Subscription{}, fmt.Errorf("push subscription to %q: malformed record %x", topic, value)
	}
	if _, err := ecdh.P256().NewPublicKey(value[:pushPointBytes]); err != nil {
		return push.Subscription{}, fmt.Errorf("push subscription to %q: its key is no P-256 point", topic)
	}
	return push.Subscription{
		Topic:    topic,
		Endpoint: string(endpoint),
		P256dh:   base64.RawURLEncoding.EncodeToString(value[:pushPointBytes]),
		Auth:     base64.RawURLEncoding.EncodeToString(value[pushPointBytes:]),
	}, nil
}

// checkPushBucket reads every push record as the store would, and checks
// that the count is what the file holds.
func checkPushBucket(root *bolt.Bucket) error {
	if stored := root.Get(pushKeysKey); stored != nil {
		if _, err := push.DecodeKeyPair(stored); err != nil {
			return fmt.Errorf("push key pair: %w", err)
		}
	}
	subs := root.Bucket(pushSubscriptionsKey)
	if subs == nil {
		return errors.New("push records without their subscriptions bucket")
	}
	var total uint64
	err := subs.ForEach(func(name, value []byte) error {
		topic := subs.Bucket(name)
		if value != nil || topic == nil {
			return fmt.Errorf("push subscriptions: a record %q where a topic's bucket belongs", name)
		}
		if err := app.CheckTopic(string(name)); err != nil {
			return fmt.Errorf("push subscriptions: bucket %q: %w", name, err)
		}
		return topic.ForEach(func(endpoint, value []byte) error {
			total++
			if err := push.CheckEndpoint(string(endpoint)); err != nil {
				return fmt.Errorf("push subscription to %q: %w", name, err)
			}
			_, err := decodePushSubscription(string(name), endpoint, value)
			return err
		})
	})
	if err != nil {
		return err
	}
	if count := pushCount(root); count != total {
		return fmt.Errorf("push records count %d subscriptions, but hold %d", count, total)
	}
	return nil
}
