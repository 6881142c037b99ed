package push

import (
	"context"
	"errors"
)

// Reasons a store refuses a new subscription.
var (
	// ErrTopicFull wraps a new subscription to a topic that has
	// Limits.PerTopic already.
	ErrTopicFull = errors.New("too many push subscriptions to this topic")
	// ErrFull wraps a new subscription when the store holds Limits.Total
	// already.
	ErrFull = errors.New("too many push subscriptions")
)

// ErrStore wraps every failure of a Store to read or write.
var ErrStore = errors.New("push subscription store failed")

// Limits bound the subscriptions a store holds, so that made-up
// registrations cannot grow it without end.
type Limits struct {
	PerTopic int
	Total    int
}

// Store keeps the VAPID key pair and the subscriptions where every
// instance that publishes finds them: in memory for one instance, in the
// history file, or in Redis for several.
type Store interface {
	// Keys returns the stored key pair. When there is none yet, it stores
	// fresh and returns it: every caller gets the same pair, on every
	// instance, even when several start at once.
	Keys(ctx context.Context, fresh KeyPair) (KeyPair, error)
	// Add stores sub, or replaces the keys of the subscription with its
	// topic and endpoint. A new one past the store's Limits is refused
	// with ErrTopicFull or ErrFull.
	Add(ctx context.Context, sub Subscription) error
	// Remove forgets the subscription to topic with endpoint, if there is
	// one.
	Remove(ctx context.Context, topic, endpoint string) error
	// List returns topic's subscriptions.
	List(ctx context.Context, topic string) ([]Subscription, error)
	// Count is how many subscriptions there are, to every topic.
	Count(ctx context.Context) (int, error)
}
