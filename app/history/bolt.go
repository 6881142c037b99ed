package history

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"herald/app"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// BoltStore keeps history in one bbolt file. Each topic is a bucket whose
// keys are big-endian message ids, so a cursor walks them in publish order,
// and whose bucket sequence is the topic's last id. A commit is fsynced
// before Append returns.
type BoltStore struct {
	db   *bolt.DB
	path string
}

var _ app.Store = (*BoltStore)(nil)

// sequenceStarts maps each topic to the first id of its current sequence.
// '#' cannot occur in a topic name, so it never clashes with a topic.
var sequenceStarts = []byte("#sequence-starts")

// lockWait is how long OpenBolt waits for another process to let go
// of the file before it says so.
const lockWait = time.Second

// OpenBolt opens or creates the store at path. A file that another
// process holds, that cannot be written or that is not a valid store is an
// error that says which.
func OpenBolt(path string) (*BoltStore, error) {
	return openBolt(path, false)
}

// openBolt opens the store at path, read-only if asked: then it must
// exist, and other read-only openers may share it, but not Herald.
func openBolt(path string, readOnly bool) (*BoltStore, error) {
	if err := checkBoltFile(path); err != nil {
		return nil, err
	}
	var db *bolt.DB
	err := faultsAsErrors(path, func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: lockWait, ReadOnly: readOnly})
		return err
	})
	switch {
	case errors.Is(err, ErrDamaged):
		return nil, fmt.Errorf("%w. %s", err, untouchedAdvice)
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("history file %s is locked by another process (is another Herald using it?)", path)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum),
		errors.Is(err, bolterrors.ErrVersionMismatch), errors.Is(err, bolterrors.ErrInvalidMapping):
		return nil, fmt.Errorf("%w: %s is corrupt or not a Herald history file (%w). %s", ErrDamaged, path, err, untouchedAdvice)
	case err != nil:
		return nil, fmt.Errorf("open history file: %w", err)
	}
	s := &BoltStore{db: db, path: path}
	// Nothing is written before the whole file has been read: a write to a
	// damaged file would replace one of its two header pages, and with it
	// bbolt's way back to the tree before the damage.
	prepared := false
	if err := faultsAsErrors(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			prepared = tx.Bucket(sequenceStarts) != nil
			return checkTx(tx)
		})
	}); err != nil {
		db.Close()
		if !errors.Is(err, ErrDamaged) {
			err = fmt.Errorf("%w: %s: %w", ErrDamaged, path, err)
		}
		return nil, fmt.Errorf("%w. %s", err, untouchedAdvice)
	}
	if !prepared && !readOnly {
		if err := s.update("prepare", func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(sequenceStarts)
			return err
		}); err != nil {
			db.Close()
			return nil, err
		}
	}
	return s, nil
}

// checkTx reads the whole file: every record as Load decodes it, then
// bbolt's own consistency check of every page. Herald's walk goes first,
// in the caller's goroutine, where a memory fault is an error; bbolt's
// check runs in a goroutine of its own, where a fault would end the
// process, and by then every page it reads has been read once already.
func checkTx(tx *bolt.Tx) error {
	starts := tx.Bucket(sequenceStarts)
	err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		if bytes.Equal(name, pushBucket) {
			return checkPushBucket(b)
		}
		if name[0] == '#' {
			return nil // one of Herald's own buckets, which their readers check
		}
		if starts == nil {
			return fmt.Errorf("topic %q but no sequence bucket", name)
		}
		topic, err := readTopicHeader(starts, name, b)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return fmt.Errorf("topic %q: a bucket inside it", topic.Name)
			}
			_, err := decodeMessage(topic.Name, k, v)
			return err
		})
	})
	if err != nil {
		return err
	}
	var found []error
	for err := range tx.Check() { // read to the end: the check's goroutine ends with it
		found = append(found, err)
	}
	if len(found) > 0 {
		return fmt.Errorf("bbolt's check found %d problems, the first: %w", len(found), found[0])
	}
	return nil
}

// Load reads every topic. bbolt panics on some damaged pages instead of
// returning an error, so a panic here is reported as a damaged file.
func (s *BoltStore) Load(limit int, notBefore time.Time) (topics []app.StoredTopic, err error) {
	err = faultsAsErrors(s.path, func() error { return s.load(limit, notBefore, &topics) })
	if errors.Is(err, ErrDamaged) {
		return nil, fmt.Errorf("%w. %s", err, untouchedAdvice)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w: %s: %w. %s", app.ErrStore, ErrDamaged, s.path, err, untouchedAdvice)
	}
	return topics, nil
}

func (s *BoltStore) load(limit int, notBefore time.Time, out *[]app.StoredTopic) error {
	return s.db.View(func(tx *bolt.Tx) error {
		starts := tx.Bucket(sequenceStarts)
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if name[0] == '#' { // one of Herald's own buckets, never a topic
				return nil
			}
			topic, err := readTopicHeader(starts, name, b)
			if err != nil {
				return err
			}
			c := b.Cursor()
			for k, v := c.Last(); k != nil && len(topic.Messages) < limit; k, v = c.Prev() {
				m, err := decodeMessage(topic.Name, k, v)
				if err != nil {
					return err
				}
				if m.Time.Before(notBefore) {
					break
				}
				topic.Messages = append(topic.Messages, m)
			}
			slices.Reverse(topic.Messages)
			*out = append(*out, topic)
			return nil
		})
	})
}

// readTopicHeader reads what a topic's bucket says of its ids.
func readTopicHeader(starts *bolt.Bucket, name []byte, b *bolt.Bucket) (app.StoredTopic, error) {
	topic := app.StoredTopic{Name: string(name), LastID: b.Sequence()}
	if err := app.CheckTopic(topic.Name); err != nil {
		return topic, fmt.Errorf("bucket %q: %w", name, err)
	}
	if v := starts.Get(name); len(v) == 8 {
		topic.SequenceStart = binary.BigEndian.Uint64(v)
	}
	if topic.SequenceStart == 0 || topic.SequenceStart > topic.LastID+1 {
		return topic, fmt.Errorf("topic %q: sequence start %d does not fit last id %d", name, topic.SequenceStart, topic.LastID)
	}
	return topic, nil
}

// Append stores the commits, and trims each topic below its KeepFrom, in
// one fsynced transaction.
func (s *BoltStore) Append(commits []app.Commit) error {
	if len(commits) == 0 {
		return nil
	}
	return s.update("append", func(tx *bolt.Tx) error { return appendTx(tx, commits...) })
}

// appendTx stores the commits, in order.
func appendTx(tx *bolt.Tx, commits ...app.Commit) error {
	for _, c := range commits {
		if err := appendCommitTx(tx, c); err != nil {
			return err
		}
	}
	return nil
}

// appendCommitTx stores one commit's messages, at and above its KeepFrom,
// and trims its topic below KeepFrom.
func appendCommitTx(tx *bolt.Tx, c app.Commit) error {
	topic := []byte(c.Messages[0].Topic)
	b, err := tx.CreateBucketIfNotExists(topic)
	if err != nil {
		return err
	}
	for _, m := range c.Messages {
		if m.ID >= c.KeepFrom {
			if err := b.Put(idKey(m.ID), appendMessageValue(make([]byte, 0, 8+len(m.Text)), m)); err != nil {
				return err
			}
		}
	}
	if err := b.SetSequence(c.Messages[len(c.Messages)-1].ID); err != nil {
		return err
	}
	starts := tx.Bucket(sequenceStarts)
	if v := starts.Get(topic); len(v) != 8 || binary.BigEndian.Uint64(v) != c.SequenceStart {
		if err := starts.Put(topic, idKey(c.SequenceStart)); err != nil {
			return err
		}
	}
	return trimBucket(b, c.KeepFrom)
}

// Trim forgets old messages of several topics in one transaction.
func (s *BoltStore) Trim(keepFrom map[string]uint64) error {
	if len(keepFrom) == 0 {
		return nil
	}
	return s.update("trim", func(tx *bolt.Tx) error { return trimTx(tx, keepFrom) })
}

func trimTx(tx *bolt.Tx, keepFrom map[string]uint64) error {
	for topic, id := range keepFrom {
		if b := tx.Bucket([]byte(topic)); b != nil {
			if err := trimBucket(b, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// Forget deletes topics and their sequence starts.
func (s *BoltStore) Forget(topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	return s.update("forget topics", func(tx *bolt.Tx) error { return forgetTx(tx, topics) })
}

func forgetTx(tx *bolt.Tx, topics []string) error {
	starts := tx.Bucket(sequenceStarts)
	for _, topic := range topics {
		if err := tx.DeleteBucket([]byte(topic)); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
		if err := starts.Delete([]byte(topic)); err != nil {
			return err
		}
	}
	return nil
}

// view runs f in a read-only transaction.
func (s *BoltStore) view(what string, f func(*bolt.Tx) error) error {
	return s.wrap(what, faultsAsErrors(s.path, func() error { return s.db.View(f) }))
}

// update runs f in one fsynced transaction; what names the work in the
// error. A page that went bad under the running server is an error, not
// the end of the process: bbolt rolls the transaction back as the panic
// passes through it.
func (s *BoltStore) update(what string, f func(*bolt.Tx) error) error {
	return s.wrap(what, faultsAsErrors(s.path, func() error { return s.db.Update(f) }))
}

var _ app.Pinger = (*BoltStore)(nil)

// Ping checks that the file can still be read.
func (s *BoltStore) Ping() error {
	return s.view("ping", func(tx *bolt.Tx) error {
		if tx.Bucket(sequenceStarts) == nil {
			return errors.New("the file lost its sequence bucket")
		}
		return nil
	})
}

// Close closes the file.
func (s *BoltStore) Close() error { return s.wrap("close", s.db.Close()) }

func (s *BoltStore) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %s: %s: %w", app.ErrStore, s.path, what, err)
}

// trimBucket deletes keys below keepFrom. It looks up the first key afresh
// after each delete, since deleting under a moving cursor can skip keys.
func trimBucket(b *bolt.Bucket, keepFrom uint64) error {
	c := b.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) < keepFrom; k, _ = c.First() {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func idKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// appendMessageValue appends m as it is stored under its id, in the bbolt
// file and in journal records alike: its time in Unix nanoseconds, 8 bytes
// big-endian, then its text.
func appendMessageValue(buf []byte, m *app.Message) []byte {
	buf = binary.BigEndian.AppendUint64(buf, uint64(m.Time.UnixNano()))
	return append(buf, m.Text...)
}

func decodeMessage(topic string, key, value []byte) (*app.Message, error) {
	if len(key) != 8 || len(value) < 9 || !utf8.Valid(value[8:]) {
		return nil, fmt.Errorf("topic %q: malformed record %x", topic, key)
	}
	return &app.Message{
		ID:    binary.BigEndian.Uint64(key),
		Topic: topic,
		Time:  time.Unix(0, int64(binary.BigEndian.Uint64(value))),
		Text:  string(value[8:]),
	}, nil
}
