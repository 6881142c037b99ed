package history

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"herald/app"

	bolt "go.etcd.io/bbolt"
)

// writeHistoryFile makes a store of about 2 MB, as a busy server leaves it.
func writeHistoryFile(t *testing.T, path string) []byte {
	t.Helper()
	s := openStore(t, path)
	s.db.NoSync = true // a test file need not survive a power cut
	text := strings.Repeat("x", 7000)
	for i := range 300 {
		topic := fmt.Sprint("topic-", i%7)
		m := &app.Message{ID: uint64(1000 + i), Topic: topic, Time: time.Unix(1_800_000_000, int64(i)), Text: text}
		if err := s.Append([]app.Commit{commit([]*app.Message{m}, 1000, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A history file cut short must give one clear error, not a memory fault
// inside bbolt, and must be left exactly as it was.
func TestTruncatedHistoryFileIsRefusedAndLeftUntouched(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	whole := writeHistoryFile(t, filepath.Join(dir, "whole.db"))
	if len(whole) < 1<<20 {
		t.Fatalf("the test file is %d bytes, want over 1 MiB", len(whole))
	}
	// bbolt grows its file ahead of use; the meta page says how much of it
	// is in use, and any cut below that loses pages.
	meta, ok := readBoltMeta(bytes.NewReader(whole), 0)
	if !ok {
		t.Fatal("the test file has no valid first meta page")
	}
	inUse := int(meta.pgid) * int(meta.pageSize)
	for _, cut := range []int{100, 4096, 4096 + 80, 8192, 100_000, inUse / 2, inUse - 1} {
		t.Run(fmt.Sprint("whenCutAt", cut), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, fmt.Sprintf("cut-%d.db", cut))
			if err := os.WriteFile(path, whole[:cut], 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := OpenBolt(path)
			if err == nil {
				_, err = s.Load(1000, time.Time{})
				s.Close()
			}
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("opening a file cut at %d of %d bytes: %v, want ErrDamaged", cut, len(whole), err)
			}
			for _, want := range []string{path, "damaged", "move it aside"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
			after, readErr := os.ReadFile(path)
			if readErr != nil || !bytes.Equal(after, whole[:cut]) {
				t.Errorf("the damaged file was changed (%v)", readErr)
			}
		})
	}
	// The whole file still opens and reads.
	s := openStore(t, filepath.Join(dir, "whole.db"))
	defer s.Close()
	topics, err := s.Load(1000, time.Time{})
	if err != nil || len(topics) != 7 {
		t.Fatalf("the whole file: %d topics, %v; want 7", len(topics), err)
	}
}

// bbolt finds the second header page of a file whose first one is damaged
// by trying every page size it accepts; the check before it must do the
// same, or it refuses a file bbolt opens, such as one made with 16 KiB
// pages on a machine with 4 KiB ones.
func TestHistoryFileWithLargerPagesAndADamagedFirstHeaderOpens(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	// Two transactions, so that each header page points at a tree that
	// holds the message.
	for range 2 {
		if err := db.Update(func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucketIfNotExists(sequenceStarts); err != nil {
				return err
			}
			return appendTx(tx, commit(journalMessages("news", 1, 1, "n"), 1, 1))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	flipByte(t, path, boltPageHeaderSize+20) // in the first header's root pointer, which its checksum covers

	s, err := OpenBolt(path)
	if err != nil {
		t.Fatalf("opening a 16 KiB-page file whose first header is damaged: %v, want it opened from the second header as bbolt does", err)
	}
	defer s.Close()
	assertStored(t, s, map[string]string{"news": "last 1: 1"})
}

// flipByte inverts the byte at offset in the file at path.
func flipByte(t *testing.T, path string, offset int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, offset); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, offset); err != nil {
		t.Fatal(err)
	}
}

// A file whose newest transaction left a bad page is refused before
// anything is written to it: it stays byte for byte as it was, so that
// bbolt's older header page, which points at the tree as it was before
// that transaction, still does. Invalidating the newest header then opens
// the file from the older one.
func TestDamagedHistoryFileIsRefusedBeforeAnyWriteAndKeepsBboltsFallback(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("news", 1, 3, "n"), 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openHistoryFile(t, path)
	appendOrFail(t, s, journalMessages("news", 4, 1, "damaged "), 1)
	if err := s.Close(); err != nil { // its checkpoint is the newest transaction
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	newest := newestBoltMeta(t, data)
	// One byte of the newest message's text is no longer UTF-8: neither
	// bbolt nor its own check can tell, only decoding it can.
	at := bytes.Index(data, []byte("damaged 4"))
	if at < 0 || bytes.Count(data, []byte("damaged 4")) != 1 {
		t.Fatal("the newest message is not in the file exactly once")
	}
	data[at] = 0xff
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	if _, err := Open(path); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "left it untouched") {
		t.Fatalf("opening a file with a damaged record returned %v, want ErrDamaged saying it was left untouched", err)
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, data) {
		t.Fatalf("the refused file was written to (%v)", err)
	}

	// What someone recovering the file would do: make bbolt ignore the
	// newest header page, so that it falls back to the other one.
	flipByte(t, path, int64(newest.txid%2)*int64(newest.pageSize)+boltPageHeaderSize+20)
	s = openHistoryFile(t, path)
	defer s.Close()
	// The older header's checkpoint had not carried the last message; the
	// journal still holds it.
	assertStored(t, s, map[string]string{"news": "last 4: 1,2,3,4"})
}
