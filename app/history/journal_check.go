// What the bbolt file's checkpoint expects of its journal, and the check
// of a journal against it at start-up.

package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"

	"herald/app"

	bolt "go.etcd.io/bbolt"
)

// journalBucket holds the checkpoint. Its name begins with '#', which no
// topic can.
var (
	journalBucket = []byte("#journal")
	// checkpointKey holds a journalCheckpoint of version 2:
	//
	//	version uint8, flags uint8 (1: clean), replay offset uint64,
	//	replay number uint64, journal id [16]byte
	checkpointKey = []byte("checkpoint")
	// formerCheckpointKey is where version 1 kept its replay offset and
	// number, two uint64s; the first version 2 checkpoint deletes it.
	formerCheckpointKey = []byte("replay-from")
)

// journalCheckpoint is what the bbolt file says of its journal.
type journalCheckpoint struct {
	// version is 0 for a file that never had a journal, 1 for one whose
	// journal had the first format, which could not be checked, and 2.
	version int
	// replayFrom is where replay starts: every record before it has been
	// carried into the bbolt file.
	replayFrom journalPosition
	// journal names the journal file the checkpoint was taken with.
	journal journalID
	// clean says that the journal holds nothing the bbolt file lacks: the
	// last stop carried everything.
	clean bool
}

const checkpointSize = 2 + 8 + 8 + len(journalID{})

func readJournalCheckpoint(b *BoltStore) (journalCheckpoint, error) {
	var c journalCheckpoint
	err := b.view("read the journal checkpoint", func(tx *bolt.Tx) error {
		bucket := tx.Bucket(journalBucket)
		if bucket == nil {
			return nil
		}
		if v := bucket.Get(checkpointKey); v != nil {
			if len(v) != checkpointSize || v[0] != journalVersion || v[1]&^1 != 0 {
				return fmt.Errorf("malformed journal checkpoint %x", v)
			}
			c = journalCheckpoint{version: journalVersion, clean: v[1] == 1,
				replayFrom: journalPosition{offset: int64(binary.BigEndian.Uint64(v[2:])), number: binary.BigEndian.Uint64(v[10:])}}
			copy(c.journal[:], v[18:])
			if c.replayFrom.offset < journalRecordsStart || c.replayFrom.offset >= journalFileSize {
				return fmt.Errorf("journal checkpoint: replay start %d is outside the journal", c.replayFrom.offset)
			}
			return nil
		}
		v := bucket.Get(formerCheckpointKey)
		if len(v) != 16 {
			return fmt.Errorf("malformed journal start %x", v)
		}
		c = journalCheckpoint{version: 1, replayFrom: journalPosition{offset: int64(binary.BigEndian.Uint64(v)), number: binary.BigEndian.Uint64(v[8:])}}
		if c.replayFrom.offset < 0 || c.replayFrom.offset >= journalFileSize {
			return fmt.Errorf("journal start %d is outside the journal", c.replayFrom.offset)
		}
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("%w: %w. %s", ErrDamaged, err, untouchedAdvice)
	}
	return c, nil
}

func writeJournalCheckpoint(tx *bolt.Tx, c journalCheckpoint) error {
	b, err := tx.CreateBucketIfNotExists(journalBucket)
	if err != nil {
		return err
	}
	v := make([]byte, 2, checkpointSize)
	v[0] = journalVersion
	if c.clean {
		v[1] = 1
	}
	v = binary.BigEndian.AppendUint64(v, uint64(c.replayFrom.offset))
	v = binary.BigEndian.AppendUint64(v, c.replayFrom.number)
	v = append(v, c.journal[:]...)
	if err := b.Put(checkpointKey, v); err != nil {
		return err
	}
	return b.Delete(formerCheckpointKey)
}

// journalFound is what inspectJournal found.
type journalFound struct {
	// replay holds the records to replay, in order.
	replay [][]app.Commit
	// end is where the next record goes. Its number is the one to go on
	// from in a new journal.
	end journalPosition
	// reuse says that the journal can be written on from end; otherwise
	// a new one must be made.
	reuse bool
	// dropped is the record begun at end that did not read whole, or nil.
	dropped *DroppedRecord
}

// DroppedRecord is the journal's newest record, begun (its header numbers
// it as the next) but not whole, which start-up dropped. A crash while it
// was being written leaves it so, and then none of its publishes was
// acknowledged: replay must go on without it. But a disk that damaged a
// whole record leaves the same bytes, and then acknowledged publishes are
// lost; nothing tells the two apart, so it is reported, never hidden.
type DroppedRecord struct {
	// Offset is where the record starts in the journal.
	Offset int64
	// Number is the record's number.
	Number uint64
}

// droppedRecordAt is the record begun at end that did not read whole, or
// nil when none was begun there.
func droppedRecordAt(data []byte, end journalPosition) *DroppedRecord {
	if end.offset+journalHeaderSize > int64(len(data)) || binary.BigEndian.Uint64(data[end.offset+8:]) != end.number {
		return nil
	}
	return &DroppedRecord{Offset: end.offset, Number: end.number}
}

// JournalDamage is a journal that lost what its history file's checkpoint
// says it holds: records written since the last checkpoint, which
// acknowledged publishes. It is not a crash's torn write, which can only
// be the newest record and is never acknowledged.
type JournalDamage struct {
	// Path is the journal's.
	Path string
	// What says what is wrong, after the journal's path.
	What string
	// Counted is set when the damage is a record among valid ones: then
	// ReadableRecords counts the valid records written since the last
	// checkpoint, before and after the damaged one, and ReadableMessages
	// their messages per topic. What else was lost cannot be counted.
	Counted          bool
	ReadableRecords  int
	ReadableMessages map[string]int
}

// Error says what is wrong, in words that follow "history file is
// damaged: ".
func (d *JournalDamage) Error() string { return "journal " + d.Path + " " + d.What }

// count adds the records of commits to what can still be read.
func (d *JournalDamage) count(commits []app.Commit) {
	d.ReadableRecords++
	for _, c := range commits {
		d.ReadableMessages[c.Messages[0].Topic] += len(c.Messages)
	}
}

// inspectJournal reads the journal at path and checks it against the
// checkpoint, writing nothing. It returns the records to replay, or an
// error wrapping a *JournalDamage when the journal has lost records the
// checkpoint says it holds.
func inspectJournal(path string, checkpoint journalCheckpoint) (found journalFound, err error) {
	data, err := os.ReadFile(path)
	missing := errors.Is(err, fs.ErrNotExist)
	if err != nil && !missing {
		return found, fmt.Errorf("%w: read journal: %w", app.ErrStore, err)
	}
	id, whole := journalFileID(data)
	whole = whole && len(data) == journalFileSize
	damaged := func(d *JournalDamage) error {
		d.Path = path
		return fmt.Errorf("%w: %w. Herald left both files untouched: restore both from a backup, or see what is lost and start afresh with herald reset-history",
			ErrDamaged, d)
	}
	switch {
	case checkpoint.version == 0:
		// A file that never had a journal starts numbering records at a
		// random point, and in a new journal.
		found.end.number = rand.Uint64N(1<<62) + 1
		return found, nil
	case checkpoint.version == 1:
		found.end, err = readJournal(data, checkpoint.replayFrom, 1, func(c []app.Commit) { found.replay = append(found.replay, c) })
		if err != nil {
			return found, damaged(&JournalDamage{What: err.Error()})
		}
		return found, nil // the format changed: a new journal
	case checkpoint.clean:
		// The journal holds nothing that is not in the bbolt file. It can
		// be written on if it is the one the checkpoint names and holds no
		// record numbered from the checkpoint on, which a later run wrote
		// (the bbolt file came back from a backup).
		found.end = checkpoint.replayFrom
		before := journalPosition{offset: journalRecordsStart - 1, number: checkpoint.replayFrom.number - 1}
		_, later := findRecordAfter(data, before)
		found.reuse = whole && id == checkpoint.journal && !later
		return found, nil
	case missing:
		return found, damaged(&JournalDamage{What: "is missing, though the last checkpoint of the history file expects it to hold what was published since"})
	case len(data) != journalFileSize:
		return found, damaged(&JournalDamage{What: fmt.Sprintf("is %d bytes long, not %d: it was cut short or replaced", len(data), journalFileSize)})
	case !whole || id != checkpoint.journal:
		return found, damaged(&JournalDamage{What: "is not the journal the last checkpoint of the history file names: its header is zeroed, damaged or another file's"})
	}
	found.end, err = readJournal(data, checkpoint.replayFrom, journalVersion, func(c []app.Commit) { found.replay = append(found.replay, c) })
	if err != nil {
		return found, damaged(&JournalDamage{What: err.Error()})
	}
	if later, ok := findRecordAfter(data, found.end); ok {
		d := &JournalDamage{Counted: true, ReadableMessages: map[string]int{}}
		for _, commits := range found.replay {
			d.count(commits)
		}
		before := d.ReadableRecords
		readJournal(data, later, journalVersion, d.count)
		d.What = fmt.Sprintf("has a damaged record at offset %d, and %d valid records follow it (from offset %d): damage, not a torn write",
			found.end.offset, d.ReadableRecords-before, later.offset)
		return found, damaged(d)
	}
	found.reuse = true
	found.dropped = droppedRecordAt(data, found.end)
	return found, nil
}

// Report is what Inspect found in a history file and
// its journal.
type Report struct {
	// Damage is why Herald refuses to start from the two files, or nil.
	Damage error
	// JournalDamage is the journal's part of Damage, if it is the journal
	// that is damaged.
	JournalDamage *JournalDamage
	// Topics and Messages count what the bbolt file holds for resuming
	// clients; both are 0 when the file itself is damaged.
	Topics, Messages int
}

// Inspect reads the history file at path and its journal as
// Open does, opening the bbolt file read-only and writing
// neither, and reports what it found. An error is a file it could not
// look at: one that is missing, or that a running Herald holds.
func Inspect(path string) (Report, error) {
	var report Report
	b, err := openBolt(path, true)
	if errors.Is(err, ErrDamaged) {
		report.Damage = err
		return report, nil
	}
	if err != nil {
		return report, err
	}
	defer b.Close()
	if err := b.view("count the history", func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bucket *bolt.Bucket) error {
			if name[0] != '#' {
				report.Topics++
				report.Messages += bucket.Stats().KeyN
			}
			return nil
		})
	}); err != nil {
		return report, err
	}
	checkpoint, err := readJournalCheckpoint(b)
	if err == nil {
		_, err = inspectJournal(path+"-journal", checkpoint)
	}
	if errors.Is(err, ErrDamaged) {
		report.Damage = err
		errors.As(err, &report.JournalDamage)
		return report, nil
	}
	return report, err
}

// SetAside renames the history file at path, and its journal
// if there is one, adding suffix to their names, and returns the names
// they now have.
func SetAside(path, suffix string) ([]string, error) {
	var moved []string
	for _, name := range []string{path, path + "-journal"} {
		err := os.Rename(name, name+suffix)
		if errors.Is(err, fs.ErrNotExist) && name != path {
			break // the journal may be what was lost
		}
		if err != nil {
			return moved, err
		}
		moved = append(moved, name+suffix)
	}
	return moved, syncDirectory(filepath.Dir(path))
}
