package history

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"herald/app"

	bolt "go.etcd.io/bbolt"
)

// File is the history file as Herald uses it: a BoltStore with a
// journal in front of it.
//
// A bbolt commit syncs the disk twice (its pages, then its meta page) and
// rewrites the pages of the B+tree it touched, which made durable
// publishing cost much more than one sync does (bench/PERFORMANCE.md has
// the figures). So Append writes one record to the
// journal and syncs it once, and the commits are carried into bbolt later,
// many in one transaction: a checkpoint. The checkpoint also records where
// in the journal replay must start, so what it carried is never replayed
// again, and which journal file that is, so that start-up can tell a
// journal that lost records from one that has none to replay.
//
// A checkpoint runs in the background each time an eighth of the journal
// has been written since the last one, without holding up Append. One also
// runs, in the caller's time, with every Trim and Forget (which must land
// after the commits before them), when the journal wraps to its start (by
// then only what was written since the background one is left to carry),
// after a journal write fails, and at Close. Start-up replays what the last
// checkpoint did not carry, and refuses a journal that lost some of it.
//
// Lock order: checkpointMu, then mu. Append takes only mu unless it must
// checkpoint, and then lets go of mu before it takes checkpointMu.
type File struct {
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
	// onWriteFailed, if set, is called under mu when a journal write has
	// failed, before anything is done about it; tests make the disk land
	// the record all the same, or answer again.
	onWriteFailed func()

	mu           sync.Mutex
	journal      *os.File
	journalID    journalID       // the journal file's, which every checkpoint names
	sinceCarried int64           // journal bytes written since the last checkpoint took what it carries
	next         journalPosition // where the next record goes
	record       []byte          // the encoding buffer, reused
	// unapplied holds, per topic and in order, the commits that are in the
	// journal but not yet in bbolt. Consecutive commits of one sequence are
	// merged, dropping what a later one trims, so that it stays within the
	// topic's history window however long the journal is.
	unapplied map[string][]app.Commit
	// dropped is what start-up dropped of the journal, or nil.
	dropped *DroppedRecord
	// skipped is set when a journal write failed and so did the checkpoint
	// after it. That record's number is never used again, but records are
	// numbered without gaps: a checkpoint must move the start of replay
	// past the gap before the next record is written.
	skipped bool
}

var _ app.Store = (*File)(nil)

// Open opens the history file at path, and its journal beside
// it (path + "-journal"), replaying into the file what the journal holds
// beyond the last checkpoint. Both files are read and checked before
// either is written: a damaged one is refused, and both are left as they
// were.
func Open(path string) (*File, error) {
	b, err := OpenBolt(path)
	if err != nil {
		return nil, err
	}
	s := &File{bolt: b, journalPath: path + "-journal", unapplied: map[string][]app.Commit{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	if err := s.recover(); err != nil {
		if s.journal != nil {
			s.journal.Close()
		}
		b.Close()
		return nil, err
	}
	go s.checkpointInBackground()
	return s, nil
}

// DroppedRecord is the journal's newest record that start-up found begun
// but not whole and dropped, or nil: see DroppedRecord.
func (s *File) DroppedRecord() *DroppedRecord { return s.dropped }

// recover replays the journal and checkpoints what it replayed, leaving
// the journal ready for its next record; when the journal cannot be used
// as it is (the file never had one, had one of the first format, or
// stopped cleanly beside a journal that is not its own), it carries
// everything and makes a new one. It runs before anyone else has the
// store, so it calls the Locked methods without the lock.
func (s *File) recover() error {
	checkpoint, err := readJournalCheckpoint(s.bolt)
	if err != nil {
		return err
	}
	found, err := inspectJournal(s.journalPath, checkpoint)
	if err != nil {
		return err
	}
	s.dropped = found.dropped
	// Nothing was written up to here.
	for _, commits := range found.replay {
		for _, c := range commits {
			s.merge(c)
		}
	}
	if found.reuse {
		if s.journal, err = os.OpenFile(s.journalPath, os.O_RDWR, 0); err != nil {
			return fmt.Errorf("%w: open journal: %w", app.ErrStore, err)
		}
		s.journalID, s.next = checkpoint.journal, found.end
		return s.checkpointLocked(s.next, nil)
	}
	// The checkpoint that carries everything says so, so that a crash
	// before the new journal is in place needs nothing from either.
	s.journalID, s.next = newJournalID(), journalPosition{offset: journalRecordsStart, number: found.end.number}
	if err := s.carry(s.unapplied, s.next, true, nil); err != nil {
		return err
	}
	clear(s.unapplied)
	if s.journal, err = createJournalFile(s.journalPath, s.journalID); err != nil {
		return fmt.Errorf("%w: %w", app.ErrStore, err)
	}
	return s.checkpointLocked(s.next, nil)
}

// Append writes the commits to the journal as one record and syncs it
// once. Commits larger than the whole journal go straight to bbolt.
func (s *File) Append(commits []app.Commit) error {
	if len(commits) == 0 {
		return nil
	}
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
		s.record = appendJournalRecord(s.record[:0], s.next.number, commits)
		size := int64(len(s.record))
		tooLarge, wraps := size > journalFileSize-journalRecordsStart, s.next.offset+size > journalFileSize
		if !s.skipped && !tooLarge && !wraps {
			break
		}
		if !checkpointing { // nothing is claimed yet
			holdCheckpointLock()
			continue
		}
		switch {
		case tooLarge:
			return s.checkpointLocked(s.next, func(tx *bolt.Tx) error { return appendTx(tx, commits...) })
		case s.skipped:
			if err := s.checkpointLocked(s.next, nil); err != nil {
				return err
			}
			s.skipped = false
		default:
			// The start of the journal may only be written over once what
			// is there is in bbolt.
			top := journalPosition{offset: journalRecordsStart, number: s.next.number}
			if err := s.checkpointLocked(top, nil); err != nil {
				return err
			}
			s.next = top
		}
	}
	if err := s.writeLocked(s.record); err != nil {
		if s.onWriteFailed != nil {
			s.onWriteFailed()
		}
		err = fmt.Errorf("%w: journal %s: %w", app.ErrStore, s.journalPath, err)
		// The record may be on disk all the same: a failed sync says
		// nothing of what landed. A refused publish must never come back
		// after a crash, so the record is made unreadable, or else replay
		// is moved past it (and its number is never used again).
		if s.invalidateLocked() == nil {
			return err
		}
		s.next.number++
		s.skipped = true
		holdCheckpointLock() // another Append may checkpoint past the gap meanwhile
		if s.skipped && s.checkpointLocked(s.next, nil) == nil {
			s.skipped = false
		}
		if s.skipped {
			return fmt.Errorf("%w: %w", app.ErrPublishUnknown, err)
		}
		return err
	}
	size := int64(len(s.record))
	s.next = journalPosition{offset: s.next.offset + size, number: s.next.number + 1}
	for _, c := range commits {
		s.merge(c)
	}
	if s.sinceCarried += size; s.sinceCarried >= journalFileSize/8 {
		select {
		case s.wake <- struct{}{}:
		default: // already asked
		}
	}
	return nil
}

// writeLocked writes a record at the journal's end and waits for the disk.
func (s *File) writeLocked(record []byte) error {
	if _, err := s.journal.WriteAt(record, s.next.offset); err != nil {
		return err
	}
	return syncData(s.journal)
}

// invalidateLocked overwrites the header of the record at the journal's
// end, which a failed write may have left whole, and waits for the disk:
// once that succeeds, replay cannot read the record.
func (s *File) invalidateLocked() error {
	if _, err := s.journal.WriteAt(make([]byte, journalHeaderSize), s.next.offset); err != nil {
		return err
	}
	return syncData(s.journal)
}

// merge adds c to what awaits the next checkpoint.
func (s *File) merge(c app.Commit) {
	topic := c.Messages[0].Topic
	held := s.unapplied[topic]
	if n := len(held); n > 0 && absorb(&held[n-1], c) {
		return
	}
	c.Messages = append([]*app.Message(nil), c.Messages...) // the caller's slice stays the caller's
	s.unapplied[topic] = append(held, c)
}

// absorb folds the next commit of the same topic into c, if the two belong
// to one sequence and c's trim point does not go back.
func absorb(c *app.Commit, next app.Commit) bool {
	if next.SequenceStart != c.SequenceStart || next.KeepFrom < c.KeepFrom {
		return false
	}
	kept := 0
	for kept < len(c.Messages) && c.Messages[kept].ID < next.KeepFrom {
		kept++
	}
	c.Messages = append(c.Messages[kept:], next.Messages...)
	c.KeepFrom = next.KeepFrom
	return true
}

// checkpointLocked carries every unapplied commit into bbolt, runs also (if
// given) in the same transaction, and records that replay starts at
// replayFrom. Until it succeeds, nothing changes. The caller holds
// checkpointMu and mu.
func (s *File) checkpointLocked(replayFrom journalPosition, also func(*bolt.Tx) error) error {
	if err := s.carry(s.unapplied, replayFrom, false, also); err != nil {
		return err
	}
	clear(s.unapplied)
	s.sinceCarried = 0
	s.checkpointErr = nil // bbolt takes writes again
	return nil
}

// carry is one checkpoint's transaction. clean says that the journal
// holds nothing the bbolt file lacks from now on: only a stop, and a
// start-up that replaces the journal, may say so.
func (s *File) carry(commits map[string][]app.Commit, replayFrom journalPosition, clean bool, also func(*bolt.Tx) error) error {
	return s.bolt.update("checkpoint the journal", func(tx *bolt.Tx) error {
		for _, topicCommits := range commits {
			if err := appendTx(tx, topicCommits...); err != nil {
				return err
			}
		}
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		return writeJournalCheckpoint(tx, journalCheckpoint{version: journalVersion, replayFrom: replayFrom, journal: s.journalID, clean: clean})
	})
}

// checkpointInBackground runs a checkpoint each time Append asks, until
// Close.
func (s *File) checkpointInBackground() {
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
func (s *File) checkpointBehind() error {
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	s.mu.Lock()
	if s.skipped || len(s.unapplied) == 0 {
		s.mu.Unlock()
		return nil // Append must checkpoint past the gap itself; or there is nothing to do
	}
	carried, replayFrom := s.unapplied, s.next
	s.unapplied, s.sinceCarried = map[string][]app.Commit{}, 0
	s.mu.Unlock()

	err := s.carry(carried, replayFrom, false, nil)

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
func (s *File) Load(limit int, notBefore time.Time) ([]app.StoredTopic, error) {
	return s.bolt.Load(limit, notBefore)
}

// Trim forgets old messages, in one checkpoint, so that it lands after the
// commits before it.
func (s *File) Trim(keepFrom map[string]uint64) error {
	if len(keepFrom) == 0 {
		return nil
	}
	return s.checkpointNow(func(tx *bolt.Tx) error { return trimTx(tx, keepFrom) })
}

// Forget removes topics, in one checkpoint, so that no later replay brings
// them back.
func (s *File) Forget(topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	return s.checkpointNow(func(tx *bolt.Tx) error { return forgetTx(tx, topics) })
}

// checkpointNow runs a checkpoint, with also in its transaction, in the
// caller's time.
func (s *File) checkpointNow(also func(*bolt.Tx) error) error {
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkpointLocked(s.next, also)
}

var _ app.Pinger = (*File)(nil)

// Ping checks that the bbolt file can still be read, and that the last
// background checkpoint could write it.
func (s *File) Ping() error {
	s.mu.Lock()
	err := s.checkpointErr
	s.mu.Unlock()
	return errors.Join(err, s.bolt.Ping())
}

// Close checkpoints, so that the bbolt file alone holds all history and
// says so (a clean stop), and closes both files.
func (s *File) Close() error {
	close(s.stop)
	<-s.stopped
	s.checkpointMu.Lock()
	defer s.checkpointMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.carry(s.unapplied, s.next, true, nil)
	if closeErr := s.journal.Close(); closeErr != nil {
		err = errors.Join(err, fmt.Errorf("%w: close journal %s: %w", app.ErrStore, s.journalPath, closeErr))
	}
	return errors.Join(err, s.bolt.Close())
}
