package app

import (
	"errors"
	"time"
)

// ErrStore wraps every failure to read or write the history store. A
// publish that fails with it was not acknowledged and reached no one.
var ErrStore = errors.New("history store failed")

// Store keeps topics' history on disk, so that acknowledged messages
// survive a restart. Calls to Append for one topic never overlap, and land
// in publish order.
type Store interface {
	// Load returns every stored topic with its newest messages: at most
	// limit of them, none published before notBefore.
	Load(limit int, notBefore time.Time) ([]StoredTopic, error)
	// Append stores the commits, each of its own topic, durably and all
	// at once: it returns once all of them are safe on disk, or none is
	// stored.
	Append(commits []Commit) error
	// Trim forgets, for each topic in keepFrom, its messages with ids below
	// the one given.
	Trim(keepFrom map[string]uint64) error
	// Forget removes topics and everything stored about them.
	Forget(topics []string) error
	// Close releases the store.
	Close() error
}

// StoredTopic is what a Store holds for one topic.
type StoredTopic struct {
	Name string
	// SequenceStart is the first id of the unbroken sequence LastID ends.
	SequenceStart uint64
	// LastID is the last id given out in the topic.
	LastID uint64
	// Messages are the kept messages, oldest first.
	Messages []*Message
}

// Commit is what one topic's publishes add to a Store: the messages, in id
// order, with the start of the id sequence they belong to; the topic's
// messages with ids below KeepFrom are forgotten.
type Commit struct {
	Messages      []*Message
	SequenceStart uint64
	KeepFrom      uint64
}
