package push

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// MemoryStore keeps subscriptions in memory, for one instance without a
// history file: they are gone at a restart, as history is. The key pair
// is kept in a file of its own, so that a browser's subscription stays
// valid across restarts, and its page need only register it again; or,
// without a file, in memory too.
type MemoryStore struct {
	keyFile string
	limits  Limits

	mu     sync.Mutex
	keys   KeyPair
	topics map[string]map[string]Subscription // topic, endpoint
	total  int
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns a store of subscriptions in memory, bounded by
// limits, whose key pair is kept in keyFile, or in memory when keyFile is
// "".
func NewMemoryStore(keyFile string, limits Limits) *MemoryStore {
	return &MemoryStore{keyFile: keyFile, limits: limits, topics: map[string]map[string]Subscription{}}
}

// Keys reads the key pair from the key file, or creates the file, readable
// by its owner alone, with fresh. Without a key file, fresh lives as long
// as the store.
func (s *MemoryStore) Keys(_ context.Context, fresh KeyPair) (KeyPair, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.keys.isZero() {
		return s.keys, nil
	}
	if s.keyFile == "" {
		s.keys = fresh
		return fresh, nil
	}
	keys, err := readKeyFile(s.keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		if err = createKeyFile(s.keyFile, fresh); errors.Is(err, fs.ErrExist) {
			keys, err = readKeyFile(s.keyFile) // made meanwhile by another process
		} else {
			keys = fresh
		}
	}
	if err != nil {
		return KeyPair{}, err
	}
	s.keys = keys
	return keys, nil
}

func readKeyFile(path string) (KeyPair, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return KeyPair{}, fmt.Errorf("read VAPID key file: %w", err)
	}
	keys, err := DecodeKeyPair(data)
	if err != nil {
		return KeyPair{}, fmt.Errorf("VAPID key file %s: %w: restore it from a backup, or remove it to make a new pair, which every browser must then subscribe with again", path, err)
	}
	return keys, nil
}

// createKeyFile writes keys to a file of its own beside path, and links it
// into place only if path does not exist: so the file is whole or absent,
// and two processes that start at once keep the same pair.
func createKeyFile(path string, keys KeyPair) error {
	temp, err := os.CreateTemp(filepath.Dir(path), ".herald-vapid-*") // mode 0600
	if err != nil {
		return fmt.Errorf("create VAPID key file: %w", err)
	}
	defer os.Remove(temp.Name())
	_, err = temp.Write(keys.Encode())
	if err == nil {
		err = temp.Sync()
	}
	if closeErr := temp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Link(temp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("create VAPID key file: %w", err)
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		dir.Sync() // so that the new name survives a power cut
		dir.Close()
	}
	return nil
}

// Add stores sub within the limits.
func (s *MemoryStore) Add(_ context.Context, sub Subscription) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	subs := s.topics[sub.Topic]
	if _, ok := subs[sub.Endpoint]; !ok {
		switch {
		case len(subs) >= s.limits.PerTopic:
			return fmt.Errorf("%w: %s has %d", ErrTopicFull, sub.Topic, len(subs))
		case s.total >= s.limits.Total:
			return fmt.Errorf("%w: there are %d", ErrFull, s.total)
		}
		if subs == nil {
			subs = map[string]Subscription{}
			s.topics[sub.Topic] = subs
		}
		s.total++
	}
	subs[sub.Endpoint] = sub
	return nil
}

// Remove forgets one subscription.
func (s *MemoryStore) Remove(_ context.Context, topic, endpoint string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	subs := s.topics[topic]
	if _, ok := subs[endpoint]; ok {
		delete(subs, endpoint)
		s.total--
		if len(subs) == 0 {
			delete(s.topics, topic)
		}
	}
	return nil
}

// List returns topic's subscriptions.
func (s *MemoryStore) List(_ context.Context, topic string) ([]Subscription, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]Subscription, 0, len(s.topics[topic]))
	for _, sub := range s.topics[topic] {
		list = append(list, sub)
	}
	return list, nil
}

// Count is how many subscriptions there are.
func (s *MemoryStore) Count(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, nil
}
