package app

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// JournalStore is the history file as Herald uses it: a BoltStore with a
// journal in front of it.
//
// A bbolt commit syncs the disk twice (its pages, then its meta page) and
// rewrites the pages of the B+tree it touched. On the disks measured that
// made a commit cost about 290 µs of waiting and 113 µs of CPU, and a
// burst of publishers got 0.40 of the in-memory rate. So Append writes one
// record to the journal and syncs it once, and the commits are carried
// into bbolt later, many in one transaction: a checkpoint. The checkpoint
// also records where in the journal replay must start, so what it carried
// is never replayed again.
//
// A checkpoint runs in the background each time an eighth of the journal
// has been written since the last one, without holding up Append. One also
// runs, in the caller's time, with every Trim and Forget (which must land
// after the commits before them), when the journal wraps to its start (by
// then only what was written since the background one is left to carry),
// after a journal write fails, and at Close. Start-up replays what the last
// checkpoint did not carry.
//
// Lock order: checkpointMu, then mu. Append takes only mu unless it must
// checkpoint, and then lets go of mu before it takes checkpointMu.
type JournalStore struct {
	bolt        *BoltStore
	journalPath string

	// checkpointMu is held through every checkpoint, so that checkpoints
	// land in bbolt in the order they took what they carry.
	checkpointMu sync.Mutex
	// checkpointErr is the last background checkpoint's failure, until
	// one succeeds; Ping reports it.
	checkpointErr error
	wake          chan struct{} // asks the background checkpointer to run; holds one request
	stop, stopped chan struct{}
	// onBackgroundCheckpoint, if set, is called after each background
	// checkpoint; tests await it.
	onBackgroundCheckpoint func(error)

	mu           sync.Mutex
	journal      *os.File
	ring         *journalRing    // nil without io_uring
	ringRefused  error           // why io_uring was asked for but is not used
	sinceCarried int64           // journal bytes written since the last checkpoint took what it carries
	next         journalPosition // where the next record goes
	record       []byte          // the encoding buffer, reused
	// unapplied holds, per topic and in order, the commits that are in the
	// journal but not yet in bbolt. Consecutive commits of one sequence are
	// merged, dropping what a later one trims, so that it stays within the
	// topic's history window however long the journal is.
	unapplied map[string][]journalCommit
	// skipped is set when a journal write failed and so did the checkpoint
	// after it. That record's number is never used again, but records are
	// numbered without gaps: a checkpoint must move the start of replay
	// past the gap before the next record is written.
	skipped bool
}

var _ Store = (*JournalStore)(nil)

// journalBucket holds where replay starts. Its name begins with '#', which
// no topic can.
var (
	journalBucket   = []byte("#journal")
	journalStartKey = []byte("replay-from")
)

// HistoryFileOptions are the choices OpenHistoryFile leaves to its caller.
type HistoryFileOptions struct {
	// IOURing writes and syncs the journal through io_uring where the
	// kernel allows it (see journalRing); IOURingRefused says why not.
	IOURing bool
}

// OpenHistoryFile opens the history file at path, and its journal beside
// it (path + "-journal"), replaying into the file what the journal holds
// beyond the last checkpoint.
func OpenHistoryFile(path string, options HistoryFileOptions) (*JournalStore, error) {
	b, err := OpenBoltStore(path)
	if err != nil {
		return nil, err
	}
	s := &JournalStore{bolt: b, journalPath: path + "-journal", unapplied: map[string][]journalCommit{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	if err := s.recover(); err != nil {
		b.Close()
		return nil, err
	}
	if options.IOURing {
		s.ring, s.ringRefused = openJournalRing()
	}
	go s.checkpointInBackground()
	return s, nil
}

// IOURingRefused is why the journal is not written through io_uring,
// though it was asked to be: the kernel refused it.
func (s *JournalStore) IOURingRefused() error { return s.ringRefused }

// recover replays the journal, checkpoints what it replayed, and leaves
// the journal ready for its next record, creating it when it is missing or
// not the size it should be. It runs before anyone else has the store, so
// it calls the Locked methods without the lock.
func (s *JournalStore) recover() error {
	start, found, err := s.replayStart()
	if err != nil {
		return err
	}
	if !found {
		// A file that never had a journal starts numbering records at a
		// random point: a journal left beside it by an earlier file (one a
		// user moved aside) then never matches, and is overwritten.
		start = journalPosition{number: rand.Uint64N(1<<62) + 1}
	}
	f, err := os.OpenFile(s.journalPath, os.O_RDWR, 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: open journal: %w", ErrStore, err)
	}
	end := start
	if f != nil {
		if end, err = readJournal(f, start, s.merge); err != nil {
			f.Close()
			return fmt.Errorf("%w: journal %s: %w. Herald left it untouched: move it aside to start from the last checkpoint of %s (the newest messages are lost), or restore both from a backup",
				ErrDamagedStore, s.journalPath, err, s.bolt.path)
		}
		if info, err := f.Stat(); err != nil || info.Size() != journalFileSize {
			f.Close()
			f = nil
		}
	}
	if f == nil {
		// Carry everything into bbolt and start replay at the top of the
		// new file, before the old one is replaced.
		end = journalPosition{number: end.number}
		if err := s.checkpointLocked(end, nil); err != nil {
			return err
		}
		if f, err = createJournalFile(s.journalPath); err != nil {
			return fmt.Errorf("%w: %w", ErrStore, err)
		}
	} else if !found || end != start {
		if err := s.checkpointLocked(end, nil); err != nil {
			f.Close()
			return err
		}
	}
	s.journal, s.next = f, end
	return nil
}

// replayStart reads where the last checkpoint says replay starts.
func (s *JournalStore) replayStart() (start journalPosition, found bool, err error) {
	err = s.bolt.view("read the journal's start", func(tx *bolt.Tx) error {
		b := tx.Bucket(journalBucket)
		if b == nil {
			return nil
		}
		v := b.Get(journalStartKey)
		if len(v) != 16 {
			return fmt.Errorf("malformed journal start %x", v)
		}
		start = journalPosition{offset: int64(binary.BigEndian.Uint64(v)), number: binary.BigEndian.Uint64(v[8:])}
		found = start.offset >= 0 && start.offset < journalFileSize
		if !found {
			return fmt.Errorf("journal start %d is outside the journal", start.offset)
		}
		return nil
	})
	return start, found, err
}

// Append writes the commit to the journal and syncs it. A commit larger
// than the whole journal goes straight to bbolt.
func (s *JournalStore) Append(messages []*Message, sequenceStart, keepFrom uint64) error {
	if len(messages) == 0 {
		return nil
	}
	c := journalCommit{messages: messages, sequenceStart: sequenceStart, keepFrom: keepFrom}
	s.mu.Lock()
	defer s.mu.Unlock()
	checkpointing := false // whether this call holds checkpointMu
	// holdCheckpointLock takes checkpointMu in lock order, letting go of
	// mu for a moment: what was decided under mu must be decided again.
	holdCheckpointLock := func() {
		if !checkpointing {
			s.mu.Unlock()
			s.checkpointMu.Lock()
			s.mu.Lock()
			checkpointing = true
		}
	}
	defer func() {
		if checkpointing {
			s.checkpointMu.Unlock()
		}
	}()
	for {
		s.record = appendJournalRecord(s.record[:0], s.next.number, c)
		size := int64(len(s.record))
		tooLarge, wraps := size > journalFileSize, s.next.offset+size > journalFileSize
		if !s.skipped && !tooLarge && !wraps {
			break
		}
		if !checkpointing { // nothing is claimed yet
			holdCheckpointLock()
			continue
		}
		switch {
		case tooLarge:
			return s.checkpointLocked(s.next, func(tx *bolt.Tx) error { return appendTx(tx, c) })
		case s.skipped:
			if err := s.checkpointLocked(s.next, nil); err != nil {
				return err
			}
			s.skipped = false
		default:
			// The start of the journal may only be written over once what
			// is there is in bbolt.
			top := journalPosition{number: s.next.number}
			if err := s.checkpointLocked(top, nil); err != nil {
				return err
			}
			s.next = top
		}
	}
	if err := s.writeLocked(s.record); err != nil {
		// The record may be on disk all the same. Its number is never used
		// again, and replay is moved past it as soon as can be, so that a
		// crash cannot bring back a publish that was refused.
		s.next.number++
		s.skipped = true
		holdCheckpointLock() // another Append may checkpoint past the gap meanwhile
		if s.skipped && s.checkpointLocked(s.next, nil) == nil {
			s.skipped = false
		}
		return fmt.Errorf("%w: journal %s: %w", ErrStore, s.journalPath, err)
	}
	size := int64(len(s.record))
	s.next = journalPosition{offset: s.next.offset + size, number: s.next.number + 1}
	s.merge(c)
	if s.sinceCarried += size; s.sinceCarried >= journalFileSize/8 {
		select {
		case s.wake <- struct{}{}:
		default: // already asked
		}
	}
	return nil
}

// writeLocked writes a record at the journal's end and waits for the disk.
func (s *JournalStore) writeLocked(record []byte) error {
	if s.ring != nil && !s.ring.broken {
		err := s.ring.writeAndSync(s.journal, record, s.next.offset)
		if s.ring.broken {
			s.record = nil // the kernel may not be done with it
			err = fmt.Errorf("%w (io_uring is now closed: the journal writes without it)", err)
		}
		return err
	}
	if _, err := s.journal.WriteAt(record, s.next.offset); err != nil {
		return err
	}
	return syncData(s.journal)
}

// merge adds c to what awaits the next checkpoint.
func (s *JournalStore) merge(c journalCommit) {
	topic := c.messages[0].Topic
	held := s.unapplied[topic]
	if n := len(held); n > 0 && held[n-1].absorb(c) {
		return
	}
	c.messages = append([]*Message(nil), c.messages...) // the caller's slice stays the caller's
	s.unapplied[topic] = append(held, c)
}

// absorb folds the next commit of the same topic into c, if the two belong
// to one sequence and c's trim point does not go back.
func (c *journalCommit) absorb(next journalCommit) bool {
	if next.sequenceStart != c.sequenceStart || next.keepFrom < c.keepFrom {
		return false
	}
	kept := 0
	for kept < len(c.messages) && c.messages[kept].ID < next.keepFrom {
		kept++
	}
	c.messages = append(c.messages[kept:], next.messages...)
	c.keepFrom = next.keepFrom
	return true
}

// checkpointLocked carries every unapplied commit into bbolt, runs also (if
// given) in the same transaction, and records that replay starts at
// replayFrom. Until it succeeds, nothing changes. The caller holds
// checkpointMu and mu.
func (s *JournalStore) checkpointLocked(replayFrom journalPosition, also func(*bolt.Tx) error) error {
	if err := s.carry(s.unapplied, replayFrom, also); err != nil {
		return err
	}
	clear(s.unapplied)
	s.sinceCarried = 0
	s.checkpointErr = nil // bbolt takes writes again
	return nil
}

// carry is one checkpoint's transaction.
func (s *JournalStore) carry(commits map[string][]journalCommit, replayFrom journalPosition, also func(*bolt.Tx) error) error {
	return s.bolt.update("checkpoint the journal", func(tx *bolt.Tx) error {
		for _, topicCommits := range commits {
			for _, c := range topicCommits {
				if err := appendTx(tx, c); err != nil {
					return err
				}
			}
		}
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		b, err := tx.CreateBucketIfNotExists(journalBucket)
		if err != nil {
			return err
		}
		v := binary.BigEndian.AppendUint64(nil, uint64(replayFrom.offset))
		return b.Put(journalStartKey, binary.BigEndian.AppendUint64(v, replayFrom.number))
	})
}

// checkpointInBackground runs a checkpoint each time Append asks, until
// Close.
func (s *JournalStore) checkpointInBackground() {
	defer close(s.stopped)
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
		err := s.checkpointBehind()
		if s.onBackgroundCheckpoint != nil {
			s.onBackgroundCheckpoint(err)
		}
	}
}

// checkpointBehind carries what is unapplied into bbolt while Append goes
// on: it takes the commits and the journal position under mu, and lets go
// of mu for the transaction. If the transaction fails, the commits go back
// in front of those that came meanwhile, for the next checkpoint.
func (s *JournalStore) checkpointBehind() error {
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	s.mu.Lock()
	if s.skipped || len(s.unapplied) == 0 {
		s.mu.Unlock()
		return nil // Append must checkpoint past the gap itself; or there is nothing to do
	}
	carried, replayFrom := s.unapplied, s.next
	s.unapplied, s.sinceCarried = map[string][]journalCommit{}, 0
	s.mu.Unlock()

	err := s.carry(carried, replayFrom, nil)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkpointErr = err
	if err != nil {
		for topic, later := range s.unapplied {
			carried[topic] = append(carried[topic], later...)
		}
		s.unapplied = carried
	}
	return err
}

// Load reads every topic from bbolt, which holds everything once the
// journal was replayed at open.
func (s *JournalStore) Load(limit int, notBefore time.Time) ([]StoredTopic, error) {
	return s.bolt.Load(limit, notBefore)
}

// Trim forgets old messages, in one checkpoint, so that it lands after the
// commits before it.
func (s *JournalStore) Trim(keepFrom map[string]uint64) error {
	if len(keepFrom) == 0 {
		return nil
	}
	return s.checkpointNow(func(tx *bolt.Tx) error { return trimTx(tx, keepFrom) })
}

// Forget removes topics, in one checkpoint, so that no later replay brings
// them back.
func (s *JournalStore) Forget(topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	return s.checkpointNow(func(tx *bolt.Tx) error { return forgetTx(tx, topics) })
}

// checkpointNow runs a checkpoint, with also in its transaction, in the
// caller's time.
func (s *JournalStore) checkpointNow(also func(*bolt.Tx) error) error {
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkpointLocked(s.next, also)
}

var _ Pinger = (*JournalStore)(nil)

// Ping checks that the bbolt file can still be read, and that the last
// background checkpoint could write it.
func (s *JournalStore) Ping() error {
	s.mu.Lock()
	err := s.checkpointErr
	s.mu.Unlock()
	return errors.Join(err, s.bolt.Ping())
}

// Close checkpoints, so that the bbolt file alone holds all history, and
// closes both files.
func (s *JournalStore) Close() error {
	close(s.stop)
	<-s.stopped
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.checkpointLocked(s.next, nil)
	if s.ring != nil && !s.ring.broken {
		s.ring.close()
	}
	if closeErr := s.journal.Close(); closeErr != nil {
		err = errors.Join(err, fmt.Errorf("%w: close journal %s: %w", ErrStore, s.journalPath, closeErr))
	}
	return errors.Join(err, s.bolt.Close())
}
