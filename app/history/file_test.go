package history

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"herald/app"

	bolt "go.etcd.io/bbolt"
)

func openHistoryFile(t *testing.T, path string) *File {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// crash lets go of both files the way kill -9 would: no checkpoint, so the
// bbolt file lacks whatever only the journal holds.
func (s *File) crash(t *testing.T) {
	t.Helper()
	close(s.stop)
	<-s.stopped
	if err := errors.Join(s.journal.Close(), s.bolt.Close()); err != nil {
		t.Fatal(err)
	}
}

// crashAndRestart crashes s and opens its file again, as Herald does when
// it is started after a kill -9.
func crashAndRestart(t *testing.T, s *File, path string) *File {
	t.Helper()
	s.crash(t)
	return openHistoryFile(t, path)
}

// assertStoredAfterCrash crashes s, opens its file again, checks that the
// store holds want, and closes it.
func assertStoredAfterCrash(t *testing.T, s *File, path string, want map[string]string) {
	t.Helper()
	s = crashAndRestart(t, s, path)
	defer s.Close()
	assertStored(t, s, want)
}

// journalMessages makes count messages of topic with ids from first on.
func journalMessages(topic string, first uint64, count int, text string) []*app.Message {
	var ms []*app.Message
	for i := range count {
		id := first + uint64(i)
		ms = append(ms, &app.Message{ID: id, Topic: topic, Time: time.Unix(1_800_000_000, int64(id)), Text: fmt.Sprint(text, id)})
	}
	return ms
}

func appendOrFail(t *testing.T, s app.Store, messages []*app.Message, keepFrom uint64) {
	t.Helper()
	if err := s.Append([]app.Commit{commit(messages, 1, keepFrom)}); err != nil {
		t.Fatal(err)
	}
}

// storedIDs is what the store holds, per topic: its last id and the ids
// of its kept messages, checking each text against what journalMessages
// makes.
func storedIDs(t *testing.T, s app.Store) map[string]string {
	t.Helper()
	topics, err := s.Load(1<<20, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, topic := range topics {
		var ids []string
		for _, m := range topic.Messages {
			if !strings.HasSuffix(m.Text, fmt.Sprint(m.ID)) || !m.Time.Equal(time.Unix(1_800_000_000, int64(m.ID))) {
				t.Errorf("topic %s: message %d came back as %q at %s", topic.Name, m.ID, m.Text, m.Time)
			}
			ids = append(ids, fmt.Sprint(m.ID))
		}
		got[topic.Name] = fmt.Sprintf("last %d: %s", topic.LastID, strings.Join(ids, ","))
	}
	return got
}

func assertStored(t *testing.T, s app.Store, want map[string]string) {
	t.Helper()
	if got := storedIDs(t, s); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the store holds %v, want %v", got, want)
	}
}

func TestHistoryFileReplaysWhatNoCheckpointCarried(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("news", 1, 3, "n"), 1)
	appendOrFail(t, s, journalMessages("sport", 1, 1, "s"), 1)
	appendOrFail(t, s, journalMessages("news", 4, 2, "n"), 3) // trims 1 and 2
	s.crash(t)

	want := map[string]string{"news": "last 5: 3,4,5", "sport": "last 1: 1"}
	s = openHistoryFile(t, path)
	assertStored(t, s, want)
	s.crash(t)
	// The replay was checkpointed: a second start replays nothing twice,
	// and the bbolt file alone now holds it all.
	s = openHistoryFile(t, path)
	assertStored(t, s, want)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	boltAlone := openStore(t, path)
	defer boltAlone.Close()
	assertStored(t, boltAlone, want)
}

func TestHistoryFileForgetsAndTrimsInOrderWithTheJournal(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("gone", 1, 2, "g"), 1)
	appendOrFail(t, s, journalMessages("kept", 1, 4, "k"), 1)
	if err := s.Forget([]string{"gone"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Trim(map[string]uint64{"kept": 3}); err != nil {
		t.Fatal(err)
	}
	appendOrFail(t, s, journalMessages("kept", 5, 1, "k"), 3)

	s = crashAndRestart(t, s, path)
	defer s.Close()
	assertStored(t, s, map[string]string{"kept": "last 5: 3,4,5"})
	if dropped := s.DroppedRecord(); dropped != nil {
		t.Errorf("a whole journal reports a dropped record: %+v", dropped)
	}
}

func TestHistoryFileReplayStopsAtATornRecordAndGoesOnFromThere(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("news", 1, 2, "n"), 1)
	torn := s.next.offset
	appendOrFail(t, s, journalMessages("news", 3, 1, "n"), 1)
	s.crash(t)
	// A crash in the middle of the write: the record's last byte never
	// made it. That publish was never acknowledged.
	flipByte(t, path+"-journal", torn+journalHeaderSize+30)

	s = openHistoryFile(t, path)
	assertStored(t, s, map[string]string{"news": "last 2: 1,2"})
	// Dropped, but said: the same bytes are what a disk that damaged an
	// acknowledged record leaves, and that loss must not go unheard.
	if dropped := s.DroppedRecord(); dropped == nil || dropped.Offset != torn {
		t.Errorf("the torn record at offset %d was dropped without a word: %+v", torn, dropped)
	}
	appendOrFail(t, s, journalMessages("news", 3, 1, "again "), 1)
	assertStoredAfterCrash(t, s, path, map[string]string{"news": "last 3: 1,2,3"})
}

func TestHistoryFileWrapsOnlyOnceBoltHoldsWhatItOverwrites(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	text := strings.Repeat("x", 100<<10)
	const kept = 3
	wrapped := false
	var id uint64
	for id = 1; !wrapped || id < 150; id++ {
		before := s.next.offset
		appendOrFail(t, s, journalMessages("big", id, 1, text), max(id, kept)-kept+1)
		wrapped = wrapped || s.next.offset < before
	}

	s = crashAndRestart(t, s, path)
	defer s.Close()
	last := id - 1
	assertStored(t, s, map[string]string{"big": fmt.Sprintf("last %d: %d,%d,%d", last, last-2, last-1, last)})
}

func TestHistoryFileNeverReplaysAWriteItRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("news", 1, 1, "n"), 1)

	// The journal becomes unwritable, as on a failing disk.
	writable := s.journal
	readOnly, err := os.Open(s.journalPath)
	if err != nil {
		t.Fatal(err)
	}
	s.journal = readOnly
	refused := journalMessages("news", 2, 1, "refused ")
	failedAt, failedNumber := s.next.offset, s.next.number
	if err := s.Append([]app.Commit{commit(refused, 1, 1)}); !errors.Is(err, app.ErrStore) {
		t.Fatalf("a failed journal write returned %v, want ErrStore", err)
	}
	s.journal = writable
	readOnly.Close()
	// Disks can fail the sync of a write that lands all the same.
	landed := appendJournalRecord(nil, failedNumber, []app.Commit{commit(refused, 1, 1)})
	if _, err := writable.WriteAt(landed, failedAt); err != nil {
		t.Fatal(err)
	}

	s = crashAndRestart(t, s, path)
	assertStored(t, s, map[string]string{"news": "last 1: 1"})
	appendOrFail(t, s, journalMessages("news", 2, 1, "n"), 1)
	assertStoredAfterCrash(t, s, path, map[string]string{"news": "last 2: 1,2"})
}

func TestJournalLeftBesideAnotherHistoryFileIsNotReplayed(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("old", 1, 2, "o"), 1)
	s.crash(t)
	// What the README says to do with a damaged file: move it aside.
	if err := os.Rename(path, path+".damaged"); err != nil {
		t.Fatal(err)
	}

	s = openHistoryFile(t, path)
	defer s.Close()
	assertStored(t, s, map[string]string{})
}

func TestDamagedJournalStopsStartUpAndSaysWhatToDo(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	at := s.next
	s.crash(t)
	// A record whose checksum matches but that no Herald could have
	// written: its topic is not a valid name.
	bad := appendJournalRecord(nil, at.number, []app.Commit{commit([]*app.Message{{ID: 1, Topic: "no spaces", Time: time.Now(), Text: "x"}}, 1, 1)})
	f, err := os.OpenFile(path+"-journal", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bad, at.offset); err != nil {
		t.Fatal(err)
	}
	f.Close()

	before := readBoth(t, path)
	_, err = Open(path)
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "journal "+path+"-journal") ||
		!strings.Contains(err.Error(), "herald reset-history") {
		t.Fatalf("opening with a damaged journal returned %v, want a damaged-store error naming the journal and what to do", err)
	}
	assertBothUnchanged(t, path, before)
	// Moving the journal aside is no way out: the checkpoint expects it.
	if err := os.Rename(path+"-journal", path+"-journal.damaged"); err != nil {
		t.Fatal(err)
	}
	if _, err = Open(path); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "is missing") {
		t.Fatalf("opening without the journal returned %v, want a damaged-store error saying it is missing", err)
	}
}

// readBoth reads the history file at path and its journal.
func readBoth(t *testing.T, path string) [2][]byte {
	t.Helper()
	var both [2][]byte
	for i, p := range []string{path, path + "-journal"} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		both[i] = data
	}
	return both
}

func assertBothUnchanged(t *testing.T, path string, before [2][]byte) {
	t.Helper()
	if after := readBoth(t, path); !bytes.Equal(after[0], before[0]) || !bytes.Equal(after[1], before[1]) {
		t.Errorf("refused files were written to: the history file is unchanged: %t, the journal: %t",
			bytes.Equal(after[0], before[0]), bytes.Equal(after[1], before[1]))
	}
}

func TestHistoryFileSendsACommitLargerThanTheJournalStraightToBolt(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("news", 1, 1, "small "), 1)
	appendOrFail(t, s, journalMessages("news", 2, 1, strings.Repeat("x", journalFileSize)), 1)
	if len(s.unapplied) != 0 {
		t.Errorf("after the large commit %d topics still wait for a checkpoint, want none: it took the small one with it", len(s.unapplied))
	}
	appendOrFail(t, s, journalMessages("news", 3, 1, "small "), 1)

	assertStoredAfterCrash(t, s, path, map[string]string{"news": "last 3: 1,2,3"})
}

func TestHistoryFileCheckpointsInTheBackgroundAsTheJournalFills(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	checkpoints := make(chan error, 1)
	s.onBackgroundCheckpoint = func(err error) { checkpoints <- err }
	text := strings.Repeat("x", 100<<10)
	// An eighth of the journal is 1 MiB: the eleventh commit of 100 KiB
	// asks for a checkpoint.
	for id := uint64(1); id <= 11; id++ {
		appendOrFail(t, s, journalMessages("big", id, 1, text), 1)
	}
	if err := <-checkpoints; err != nil {
		t.Fatal(err)
	}
	s.crash(t)

	// Without the journal, the bbolt file holds all eleven.
	boltAlone := openStore(t, path)
	defer boltAlone.Close()
	assertStored(t, boltAlone, map[string]string{"big": "last 11: 1,2,3,4,5,6,7,8,9,10,11"})
}

func TestHistoryFileLosesNothingWhileCheckpointsAndWrapsRunBesideAppends(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	const publishers, commits, kept = 4, 300, 5
	text := strings.Repeat("x", 8<<10) // 4 x 300 x 8 KiB: more than the journal holds
	errs := make(chan error, publishers)
	for p := range publishers {
		go func() {
			topic := fmt.Sprint("topic", p)
			for id := uint64(1); id <= commits; id++ {
				if err := s.Append([]app.Commit{commit(journalMessages(topic, id, 1, text), 1, max(id, kept)-kept+1)}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range publishers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s = crashAndRestart(t, s, path)
	defer s.Close()
	want := map[string]string{}
	for p := range publishers {
		want[fmt.Sprint("topic", p)] = "last 300: 296,297,298,299,300"
	}
	assertStored(t, s, want)
}

func TestHistoryFileKeepsWhatAFailedBackgroundCheckpointTookAndSaysSo(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("news", 1, 2, "n"), 1)

	// bbolt refuses to write, as on a disk gone read-only.
	writable := s.bolt
	if err := writable.Close(); err != nil {
		t.Fatal(err)
	}
	readOnly, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	s.bolt = &BoltStore{db: readOnly, path: path}
	if err := s.checkpointBehind(); err == nil {
		t.Fatal("a checkpoint into a read-only file succeeded")
	}
	if err := s.Ping(); err == nil {
		t.Error("Ping is fine while checkpoints fail")
	}
	appendOrFail(t, s, journalMessages("news", 3, 1, "n"), 1)

	readOnly.Close()
	s.bolt = openStore(t, path)
	if err := s.checkpointBehind(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(); err != nil {
		t.Errorf("Ping still fails after a checkpoint succeeded: %v", err)
	}
	s.crash(t)
	boltAlone := openStore(t, path) // the journal aside: what the checkpoint carried
	defer boltAlone.Close()
	assertStored(t, boltAlone, map[string]string{"news": "last 3: 1,2,3"})
}

// A page of the bbolt file that goes bad under a running server makes
// bbolt read wild memory in the next checkpoint. In the background
// checkpointer that must be an error that Ping reports, not the end of the
// process.
func TestHistoryFileSurvivesAMemoryFaultInABackgroundCheckpoint(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	checkpoints := make(chan error, 1)
	s.onBackgroundCheckpoint = func(err error) { checkpoints <- err }
	appendOrFail(t, s, journalMessages("news", 1, 1, "n"), 1)
	// The root bucket's page, which every checkpoint reads, goes bad under
	// the running server: its id and type stay, so that bbolt's own checks
	// pass, but it now holds one key that lies past the end of the file.
	// The file loses the space bbolt had grown it by but not used yet,
	// which bbolt still maps: reading there faults (SIGBUS).
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	meta := newestBoltMeta(t, data)
	inUse := int64(meta.pgid) * int64(meta.pageSize)
	if inUse+int64(meta.pageSize) >= int64(len(data)) {
		t.Fatalf("bbolt uses %d bytes of the %d-byte file: no page past its end would be left in the map", inUse, len(data))
	}
	if err := os.Truncate(path, inUse); err != nil {
		t.Fatal(err)
	}
	page := int64(meta.root) * int64(meta.pageSize)
	element := page + boltPageHeaderSize
	bad := make([]byte, 2+4+16) // count, overflow, then the element: flags, pos, key size, value size
	binary.NativeEndian.PutUint16(bad[0:], 1)
	binary.NativeEndian.PutUint32(bad[10:], uint32(inUse+100-element))
	binary.NativeEndian.PutUint32(bad[14:], 4)
	binary.NativeEndian.PutUint32(bad[18:], 4)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bad, page+10); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s.wake <- struct{}{}
	if err := <-checkpoints; !errors.Is(err, ErrDamaged) {
		t.Fatalf("a checkpoint into a damaged file returned %v, want ErrDamaged", err)
	}
	if err := s.Ping(); !errors.Is(err, ErrDamaged) {
		t.Errorf("Ping = %v after the checkpoint failed, want ErrDamaged", err)
	}
	if err := s.Close(); !errors.Is(err, ErrDamaged) {
		t.Errorf("Close = %v, want its checkpoint's ErrDamaged", err)
	}
}

// newestBoltMeta is the header page bbolt uses in the file data.
func newestBoltMeta(t *testing.T, data []byte) boltMeta {
	t.Helper()
	first, ok := readBoltMeta(bytes.NewReader(data), 0)
	if !ok {
		t.Fatal("the file has no valid first header page")
	}
	second, ok := readBoltMeta(bytes.NewReader(data), int64(first.pageSize))
	if ok && second.txid > first.txid {
		return second
	}
	return first
}

// After a clean stop the bbolt file holds everything and says so: the
// journal may then go, and start-up makes a new one instead of refusing.
func TestHistoryFileAfterACleanStopNeedsNoJournal(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("news", 1, 2, "n"), 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path + "-journal"); err != nil {
		t.Fatal(err)
	}
	s = openHistoryFile(t, path)
	assertStored(t, s, map[string]string{"news": "last 2: 1,2"})
	appendOrFail(t, s, journalMessages("news", 3, 1, "n"), 1)
	assertStoredAfterCrash(t, s, path, map[string]string{"news": "last 3: 1,2,3"})
}

// A bbolt file restored from a backup taken after a clean stop, beside the
// journal of the run after it, starts from the backup: the journal's
// records from that run are not replayed, and are not taken for damage
// once new records are written over some of them.
func TestHistoryFileRestoredFromACleanBackupLeavesTheLaterJournalAlone(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("news", 1, 2, "n"), 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	backup, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s = openHistoryFile(t, path)
	for id := uint64(3); id <= 5; id++ {
		appendOrFail(t, s, journalMessages("news", id, 1, strings.Repeat("a later run ", 20)), 1)
	}
	s.crash(t)
	if err := os.WriteFile(path, backup, 0o600); err != nil {
		t.Fatal(err)
	}

	s = openHistoryFile(t, path)
	assertStored(t, s, map[string]string{"news": "last 2: 1,2"})
	appendOrFail(t, s, journalMessages("news", 3, 1, "n"), 1) // shorter than what the later run wrote there
	assertStoredAfterCrash(t, s, path, map[string]string{"news": "last 3: 1,2,3"})
}

// A history file whose journal has the first format, which had no header
// and one commit per record, is replayed once and given a journal of the
// present format.
func TestHistoryFileReplaysAJournalOfTheFirstFormat(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	b := openStore(t, path)
	if err := b.update("write a checkpoint of the first format", func(tx *bolt.Tx) error {
		j, err := tx.CreateBucketIfNotExists(journalBucket)
		if err != nil {
			return err
		}
		return j.Put(formerCheckpointKey, binary.BigEndian.AppendUint64(make([]byte, 8), 7)) // offset 0, record 7
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	var journal []byte
	for i, c := range []app.Commit{commit(journalMessages("news", 1, 2, "n"), 1, 1), commit(journalMessages("news", 3, 1, "n"), 1, 1)} {
		record := appendJournalCommit(make([]byte, journalHeaderSize), c)
		binary.BigEndian.PutUint32(record[4:], uint32(len(record)-journalHeaderSize))
		binary.BigEndian.PutUint64(record[8:], 7+uint64(i))
		binary.BigEndian.PutUint32(record, crc32.Checksum(record[4:], castagnoli))
		journal = append(journal, record...)
	}
	if err := os.WriteFile(path+"-journal", append(journal, make([]byte, journalFileSize-len(journal))...), 0o600); err != nil {
		t.Fatal(err)
	}

	s := openHistoryFile(t, path)
	assertStored(t, s, map[string]string{"news": "last 3: 1,2,3"})
	appendOrFail(t, s, journalMessages("news", 4, 1, "n"), 1)
	assertStoredAfterCrash(t, s, path, map[string]string{"news": "last 4: 1,2,3,4"})
	if _, ok := journalFileID(readBoth(t, path)[1]); !ok {
		t.Error("the journal was not replaced by one of the present format")
	}
}

// failJournalWrites makes the next journal write fail, as on a failing
// disk, and land all the same, as a failed fdatasync allows; answer then
// says whether the disk answers the writes after it. It returns the
// record that landed.
func failJournalWrites(t *testing.T, s *File, messages []*app.Message, answer bool) {
	t.Helper()
	writable := s.journal
	readOnly, err := os.Open(s.journalPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { readOnly.Close() })
	s.journal = readOnly
	at := s.next
	s.onWriteFailed = func() {
		s.onWriteFailed = nil
		landed := appendJournalRecord(nil, at.number, []app.Commit{commit(messages, 1, 1)})
		if _, err := writable.WriteAt(landed, at.offset); err != nil {
			t.Error(err)
		}
		if answer {
			s.journal = writable
		} else {
			t.Cleanup(func() { writable.Close() })
		}
	}
}

// makeBoltReadOnly makes every checkpoint fail, as on a disk gone
// read-only.
func makeBoltReadOnly(t *testing.T, s *File) {
	t.Helper()
	if err := s.bolt.Close(); err != nil {
		t.Fatal(err)
	}
	readOnly, err := bolt.Open(s.bolt.path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	s.bolt = &BoltStore{db: readOnly, path: s.bolt.path}
}

// A write that failed and landed all the same, followed by a checkpoint
// that failed too: the record is made unreadable on disk, so that the
// publish, which was refused, never comes back after a crash.
func TestHistoryFileNeverReplaysARefusedWriteWhoseCheckpointFailedToo(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("news", 1, 1, "n"), 1)
	makeBoltReadOnly(t, s)
	refused := journalMessages("news", 2, 1, "refused ")
	failJournalWrites(t, s, refused, true)
	if err := s.Append([]app.Commit{commit(refused, 1, 1)}); !errors.Is(err, app.ErrStore) || errors.Is(err, app.ErrPublishUnknown) {
		t.Fatalf("a failed journal write returned %v, want ErrStore: it was refused", err)
	}

	assertStoredAfterCrash(t, s, path, map[string]string{"news": "last 1: 1"})
}

// When neither the record can be made unreadable nor a checkpoint moved
// past it, the record may come back after a crash: the publish is not
// refused but told that its outcome is unknown.
func TestHistoryFileSaysTheOutcomeIsUnknownWhenNoRefusalCanBeMadeCertain(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("news", 1, 1, "n"), 1)
	makeBoltReadOnly(t, s)
	unknown := journalMessages("news", 2, 1, "unknown ")
	failJournalWrites(t, s, unknown, false)
	if err := s.Append([]app.Commit{commit(unknown, 1, 1)}); !errors.Is(err, app.ErrPublishUnknown) || !errors.Is(err, app.ErrStore) {
		t.Fatalf("a write that could not be undone returned %v, want ErrPublishUnknown", err)
	}
	// Until a checkpoint moves past it, nothing more is written: refused.
	if err := s.Append([]app.Commit{commit(journalMessages("news", 3, 1, "n"), 1, 1)}); !errors.Is(err, app.ErrStore) || errors.Is(err, app.ErrPublishUnknown) {
		t.Fatalf("the next append returned %v, want a plain refusal", err)
	}

	assertStoredAfterCrash(t, s, path, map[string]string{"news": "last 2: 1,2"})
}

// One record carries the commits of several topics, and replays them all.
func TestHistoryFileReplaysARecordOfSeveralTopics(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	at := s.next
	if err := s.Append([]app.Commit{commit(journalMessages("news", 1, 2, "n"), 1, 1), commit(journalMessages("sport", 7, 1, "s"), 7, 7)}); err != nil {
		t.Fatal(err)
	}
	if s.next.number != at.number+1 {
		t.Fatalf("the append took %d records, want one", s.next.number-at.number)
	}
	assertStoredAfterCrash(t, s, path, map[string]string{"news": "last 2: 1,2", "sport": "last 7: 7"})
}
