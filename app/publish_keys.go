// Publish keys: a publisher names a publish with a key, so that retrying
// one whose answer it never got (the connection dropped) does not publish
// it twice. The shared broker keeps keys in Redis; this is the hub's own,
// for one instance.

package app

import (
	"crypto/sha256"
	"sync"
	"time"
)

// PublishKeyTTL is how long a publish's key is remembered: a retry with
// the key after that publishes again.
const PublishKeyTTL = 10 * time.Minute

// maxPublishKeys bounds the keys remembered at once, so that publishers
// naming every publish cannot grow memory without end; past it the oldest
// are forgotten first, which to a late retry is as if its key had expired.
const maxPublishKeys = 1 << 14

// publishKeys remembers, for PublishKeyTTL, each key a publish was named
// with and what it published. A publish with a key that another one is
// still using waits for that one: the first to finish decides.
type publishKeys struct {
	mu    sync.Mutex
	byKey map[[sha256.Size]byte]*keyedPublish
	order [][sha256.Size]byte // oldest first, for expiry and the bound
}

// keyedPublish is one key's publish: in progress until done closes, then
// published (m set) or not (m nil: the key is free again).
type keyedPublish struct {
	text [sha256.Size]byte // the message's digest: a key reused with other text is refused
	done chan struct{}
	m    *Message
	at   time.Time
}

func keyOf(topic, key string) [sha256.Size]byte {
	return sha256.Sum256([]byte(topic + "\x00" + key))
}

// claim returns the publish that key names on topic. With first set, the
// caller is the first to use the key and must settle it; otherwise it is
// an earlier publish, maybe still in progress.
func (k *publishKeys) claim(topic, key, text string, now time.Time) (p *keyedPublish, first bool) {
	id := keyOf(topic, key)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.byKey == nil {
		k.byKey = map[[sha256.Size]byte]*keyedPublish{}
	}
	k.expireLocked(now)
	if p, ok := k.byKey[id]; ok {
		return p, false
	}
	p = &keyedPublish{text: sha256.Sum256([]byte(text)), done: make(chan struct{}), at: now}
	k.byKey[id] = p
	k.order = append(k.order, id)
	return p, true
}

// settle records how the first publish with key on topic ended: m is what
// it published, or nil if it published nothing, which frees the key.
func (k *publishKeys) settle(topic, key string, p *keyedPublish, m *Message) {
	k.mu.Lock()
	p.m = m
	if m == nil {
		delete(k.byKey, keyOf(topic, key))
	}
	k.mu.Unlock()
	close(p.done)
}

// expireLocked forgets, oldest first, the keys older than PublishKeyTTL
// and those beyond maxPublishKeys. A publish still in progress is never
// forgotten: it is among the newest. The caller holds k.mu.
func (k *publishKeys) expireLocked(now time.Time) {
	for len(k.order) > 0 {
		id := k.order[0]
		if p, ok := k.byKey[id]; ok {
			settled := isClosed(p.done)
			if !settled || (now.Sub(p.at) < PublishKeyTTL && len(k.order) < maxPublishKeys) {
				return
			}
			delete(k.byKey, id)
		}
		k.order = k.order[1:]
	}
	k.order = nil // give back what a burst grew
}

// isClosed reports whether ch is closed, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// PublishKeyed is Publish with a key that names the publish on topic for
// PublishKeyTTL: a publish whose key the hub remembers is not published
// again, but answered with the first one's message. A key that came with
// another text is refused with ErrKeyReused. A publish that failed leaves
// its key free, so that a retry publishes. replayed says that the key
// named an earlier publish: nothing was published now.
func (h *Hub) PublishKeyed(topic, text, key string) (m *Message, subscribers int, replayed bool, err error) {
	if err := h.CheckMessage(topic, text); err != nil {
		return nil, 0, false, err
	}
	for {
		p, first := h.keys.claim(topic, key, text, h.now())
		if first {
			m, delivered, err := h.Publish(topic, text)
			h.keys.settle(topic, key, p, m)
			return m, delivered, false, err
		}
		<-p.done
		if p.m == nil {
			continue // the first one published nothing: the key is free
		}
		if p.text != sha256.Sum256([]byte(text)) {
			return nil, 0, false, ErrKeyReused
		}
		return p.m, h.LocalSubscribers(topic), true, nil
	}
}

// toldKeys remembers, for PublishKeyTTL and at most maxPublishKeys of them,
// the keyed publishes a node told its listeners of, so that a retry that
// only replays one is not told again.
type toldKeys struct {
	mu    sync.Mutex
	at    map[[sha256.Size]byte]time.Time
	order [][sha256.Size]byte // oldest first
}

// add remembers that the publish key names on topic was told at now.
func (k *toldKeys) add(topic, key string, now time.Time) {
	id := keyOf(topic, key)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.at == nil {
		k.at = map[[sha256.Size]byte]time.Time{}
	}
	for len(k.order) > 0 && (len(k.order) >= maxPublishKeys || now.Sub(k.at[k.order[0]]) >= PublishKeyTTL) {
		delete(k.at, k.order[0])
		k.order = k.order[1:]
	}
	if _, ok := k.at[id]; !ok {
		k.order = append(k.order, id)
	}
	k.at[id] = now
}

// seen reports whether the publish key names on topic was told lately.
func (k *toldKeys) seen(topic, key string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	at, ok := k.at[keyOf(topic, key)]
	return ok && now.Sub(at) < PublishKeyTTL
}
