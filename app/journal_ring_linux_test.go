package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A ring that fails fails its publish, closes, and leaves the journal
// writing with system calls; nothing the failed publish wrote is replayed.
func TestJournalStoreWhoseRingFailsGoesOnWithoutIt(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	s := openHistoryFile(t, path)
	if s.ring == nil {
		t.Skipf("this kernel does not allow io_uring: %v", s.IOURingRefused())
	}
	appendOrFail(t, s, journalMessages("news", 1, 1, "n"), 1)
	// The ring's descriptor now names /dev/null, so io_uring_enter fails.
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if err := syscall.Dup2(int(null.Fd()), s.ring.ring.FD()); err != nil {
		t.Fatal(err)
	}
	if err := s.Append([]Commit{{journalMessages("news", 2, 1, "refused "), 1, 1}}); !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), "io_uring is now closed") {
		t.Fatalf("an append whose ring failed returned %v, want ErrStore saying the ring is closed", err)
	}
	if !s.ring.broken || !s.ring.ring.Closed() {
		t.Fatal("the failed ring is still in use")
	}
	appendOrFail(t, s, journalMessages("news", 2, 1, "n"), 1)
	s = crashAndRestart(t, s, path)
	defer s.Close()
	assertStored(t, s, map[string]string{"news": "last 2: 1,2"})
}
