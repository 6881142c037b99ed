// The journal file: where File's commits land first.

package history

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"herald/app"
)

// journalFileSize is the size of a journal file. Between two checkpoints
// the journal holds every commit, so this bounds both what a start-up
// replays and how much memory the not yet checkpointed messages take.
const journalFileSize = 8 << 20

// A journal file starts with a block that names it, then records, from
// journalRecordsStart on:
//
//	magic    [8]byte  "herald-j"
//	version  uint32   2
//	id       [16]byte random, made with the file; the checkpoint names it
//	crc32c   uint32   over the fields before it
//
// A record is a 16-byte header, then the commits it holds:
//
//	crc32c  uint32  over everything after it: the rest of the header and the body
//	length  uint32  of the body
//	number  uint64  the record's number: one more than the record before it
//	body:   commit count uint32, then each commit: topic length uint16,
//	        topic, sequence start uint64, keep-from uint64, message count
//	        uint32, then each message: id uint64, length uint32, and what
//	        the bbolt file keeps as its value: Unix time in nanoseconds
//	        uint64, then the text
//
// All integers are big-endian. A record is written with one write and one
// fdatasync, so a crash can tear only the newest one: replay ends at the
// first record that is torn, was never written, or is left from an earlier
// pass over the file, which its number tells, since records are numbered
// without a gap. A bad record that a valid one numbered after it follows
// is damage, not a tear.
//
// The first Heralds with a journal wrote format 1: no file header, records
// from the start of the file, and a body that was one commit without its
// count. Their checkpoint says so (see journalCheckpoint); start-up replays
// such a journal once and replaces it.
const (
	journalRecordsStart = 4096
	journalHeaderSize   = 16 // a record's
	journalVersion      = 2
)

var journalMagic = [8]byte{'h', 'e', 'r', 'a', 'l', 'd', '-', 'j'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalPosition is where in the journal the next record goes, and the
// number it will have.
type journalPosition struct {
	offset int64
	number uint64
}

// journalID names one journal file, so that a checkpoint can tell its own
// journal from a replaced, zeroed or foreign one.
type journalID [16]byte

func newJournalID() journalID {
	var id journalID
	rand.Read(id[:])
	return id
}

// appendJournalRecord appends the record of commits, numbered number, to
// buf.
func appendJournalRecord(buf []byte, number uint64, commits []app.Commit) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, journalHeaderSize)...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(commits)))
	for _, c := range commits {
		buf = appendJournalCommit(buf, c)
	}
	header := buf[start : start+journalHeaderSize]
	binary.BigEndian.PutUint32(header[4:], uint32(len(buf)-start-journalHeaderSize))
	binary.BigEndian.PutUint64(header[8:], number)
	binary.BigEndian.PutUint32(header[0:], crc32.Checksum(buf[start+4:], castagnoli))
	return buf
}

func appendJournalCommit(buf []byte, c app.Commit) []byte {
	topic := c.Messages[0].Topic
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(topic)))
	buf = append(buf, topic...)
	buf = binary.BigEndian.AppendUint64(buf, c.SequenceStart)
	buf = binary.BigEndian.AppendUint64(buf, c.KeepFrom)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(c.Messages)))
	for _, m := range c.Messages {
		buf = binary.BigEndian.AppendUint64(buf, m.ID)
		buf = binary.BigEndian.AppendUint32(buf, uint32(8+len(m.Text)))
		buf = appendMessageValue(buf, m)
	}
	return buf
}

// decodeJournalBody reads a record's body, whose checksum has matched. It
// fails only on a record no Herald wrote.
func decodeJournalBody(body []byte, version int) ([]app.Commit, error) {
	r := journalReader{b: body}
	count := uint32(1)
	if version >= 2 {
		count = r.uint32()
	}
	var commits []app.Commit
	for range count {
		c, err := r.commit()
		if err != nil {
			return nil, err
		}
		commits = append(commits, c)
	}
	switch {
	case r.err != nil:
		return nil, r.err
	case len(r.b) > 0:
		return nil, fmt.Errorf("%d bytes after the last message", len(r.b))
	case len(commits) == 0:
		return nil, errors.New("no commits")
	}
	return commits, nil
}

// journalReader takes big-endian fields off a record's body; the first
// field that runs past the end sets err, and later ones read as zero.
type journalReader struct {
	b   []byte
	err error
}

// commit reads one commit.
func (r *journalReader) commit() (app.Commit, error) {
	topic := string(r.bytes(int(r.uint16())))
	c := app.Commit{SequenceStart: r.uint64(), KeepFrom: r.uint64()}
	count := r.uint32()
	for range count {
		id := r.bytes(8)
		value := r.bytes(int(r.uint32()))
		if r.err != nil {
			return c, r.err
		}
		m, err := decodeMessage(topic, id, value)
		if err != nil {
			return c, err
		}
		c.Messages = append(c.Messages, m)
	}
	if r.err != nil {
		return c, r.err
	}
	if count == 0 {
		return c, errors.New("a commit of no messages")
	}
	return c, app.CheckTopic(topic)
}

func (r *journalReader) bytes(n int) []byte {
	if r.err != nil || n > len(r.b) {
		if r.err == nil {
			r.err = io.ErrUnexpectedEOF
		}
		return nil
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

func (r *journalReader) uint16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *journalReader) uint32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *journalReader) uint64() uint64 {
	if b := r.bytes(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// recordAt returns the body of the record at offset in data if it is a
// whole, valid record numbered number.
func recordAt(data []byte, offset int64, number uint64) ([]byte, bool) {
	if offset < 0 || offset+journalHeaderSize > int64(len(data)) {
		return nil, false
	}
	header := data[offset : offset+journalHeaderSize]
	length := int64(binary.BigEndian.Uint32(header[4:]))
	end := offset + journalHeaderSize + length
	if binary.BigEndian.Uint64(header[8:]) != number || end > int64(len(data)) {
		return nil, false
	}
	if crc32.Checksum(data[offset+4:end], castagnoli) != binary.BigEndian.Uint32(header) {
		return nil, false
	}
	return data[offset+journalHeaderSize : end], true
}

// readJournal calls apply with the commits of each record of data from at
// on, in order, and returns the position after the last one. A record that
// is not there (torn, never written, or from an earlier pass) ends the
// journal; a record whose checksum matches but that does not decode is
// damage, and an error.
func readJournal(data []byte, at journalPosition, version int, apply func([]app.Commit)) (journalPosition, error) {
	for {
		body, ok := recordAt(data, at.offset, at.number)
		if !ok {
			return at, nil
		}
		commits, err := decodeJournalBody(body, version)
		if err != nil {
			return at, fmt.Errorf("has a record at offset %d that no Herald wrote (%w)", at.offset, err)
		}
		apply(commits)
		at = journalPosition{offset: at.offset + journalHeaderSize + int64(len(body)), number: at.number + 1}
	}
}

// findRecordAfter looks, at every offset past the end of a replay, for a
// valid record numbered after it. None can be there after a crash, which
// tears only the newest record: one that is there means the record at end
// was damaged, not torn, and that replay would drop what follows it. The
// search goes byte by byte, since the damage may be in the length that
// would lead to the next record.
func findRecordAfter(data []byte, end journalPosition) (journalPosition, bool) {
	// No more records than this fit in what follows.
	limit := end.number + uint64(len(data))/journalHeaderSize
	for offset := end.offset + 1; offset+journalHeaderSize <= int64(len(data)); offset++ {
		number := binary.BigEndian.Uint64(data[offset+8:])
		if number <= end.number || number > limit {
			continue
		}
		if _, ok := recordAt(data, offset, number); ok {
			return journalPosition{offset: offset, number: number}, true
		}
	}
	return journalPosition{}, false
}

// appendJournalFileHeader appends the block a journal file starts with.
func appendJournalFileHeader(buf []byte, id journalID) []byte {
	start := len(buf)
	buf = append(buf, journalMagic[:]...)
	buf = binary.BigEndian.AppendUint32(buf, journalVersion)
	buf = append(buf, id[:]...)
	buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
	return append(buf, make([]byte, journalRecordsStart-(len(buf)-start))...)
}

// journalFileID reads the id in a journal file's header, if the header is
// whole.
func journalFileID(data []byte) (journalID, bool) {
	var id journalID
	const size = len(journalMagic) + 4 + len(id)
	if len(data) < size+4 || !bytes.Equal(data[:len(journalMagic)], journalMagic[:]) ||
		binary.BigEndian.Uint32(data[len(journalMagic):]) != journalVersion ||
		crc32.Checksum(data[:size], castagnoli) != binary.BigEndian.Uint32(data[size:]) {
		return id, false
	}
	copy(id[:], data[len(journalMagic)+4:])
	return id, true
}

// createJournalFile writes a journal file named id, of zeros after its
// header, and puts it at path, replacing what was there. The zeros are
// written and synced once, so that the file system has allocated every
// block: a record written later only overwrites data, and its fdatasync
// has no metadata to flush with it, which made it measurably cheaper than
// appending.
func createJournalFile(path string, id journalID) (*os.File, error) {
	temporary := path + ".new"
	f, err := os.OpenFile(temporary, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create journal %s: %w", path, err)
	}
	block := appendJournalFileHeader(make([]byte, 0, 1<<20), id)
	block = block[:cap(block)]
	for written := 0; written < journalFileSize && err == nil; written += len(block) {
		_, err = f.Write(block)
		clear(block)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(temporary, path)
	}
	if err == nil {
		err = syncDirectory(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		os.Remove(temporary)
		return nil, fmt.Errorf("create journal %s: %w", path, err)
	}
	return f, nil
}

// syncDirectory makes a rename in dir durable.
func syncDirectory(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
