package history

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"herald/app"
	"herald/app/apptest"
)

func openStore(t *testing.T, path string) *BoltStore {
	t.Helper()
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBoltStoreKeepsHistoryAndIDsAcrossRestarts(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	clock := apptest.NewClock(time.Unix(1_800_000_000, 0))

	store := openStore(t, path)
	hub := apptest.NewHub(t, app.HubOptions{HistorySize: 3, Now: clock.Now, Store: store})
	sent := apptest.PublishN(t, hub, "news", 5)
	apptest.PublishN(t, hub, "other", 1)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Minute)
	store = openStore(t, path)
	defer store.Close()
	hub = apptest.NewHub(t, app.HubOptions{HistorySize: 3, Now: clock.Now, Store: store})

	s := resume(t, hub, "news", sent[0].ID)
	backlog := apptest.TakeAll(s)
	if got, want := apptest.IDs(backlog), apptest.IDs(sent[2:]); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after a restart the backlog is %v, want the newest three %v", got, want)
	}
	for i, m := range backlog {
		want := sent[2+i]
		if m.Text != want.Text || !m.Time.Equal(want.Time) || m.Topic != "news" {
			t.Errorf("restored %+v, want %+v", m, want)
		}
	}
	// The sequence went on unbroken, so the loss is counted exactly.
	if gap := s.Gap(); gap == nil || !gap.Known || gap.Missing != 1 {
		t.Errorf("gap %+v, want 1 known missing", gap)
	}
	next := apptest.PublishN(t, hub, "news", 1)[0]
	if next.ID != sent[4].ID+1 {
		t.Errorf("first id after the restart is %d, want %d", next.ID, sent[4].ID+1)
	}
	if n := hub.Stats().Topics; n != 2 {
		t.Errorf("restored %d topics, want 2", n)
	}
}

func TestBoltStoreDropsWhatExpiredOrWasForgotten(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "history.db")
	clock := apptest.NewClock(time.Unix(1_800_000_000, 0))
	store := openStore(t, path)
	hub := apptest.NewHub(t, app.HubOptions{HistorySize: 10, HistoryTTL: time.Minute, Now: clock.Now, Store: store})
	old := apptest.PublishN(t, hub, "news", 2)
	apptest.PublishN(t, hub, "gone", 1)
	clock.Advance(50 * time.Second)
	recent := apptest.PublishN(t, hub, "news", 1)
	clock.Advance(20 * time.Second)
	if err := hub.Sweep(); err != nil {
		t.Fatal(err)
	}
	store.Close()

	store = openStore(t, path)
	defer store.Close()
	topics, err := store.Load(10, time.Time{}) // no TTL filter: what is on disk
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) != 1 || topics[0].Name != "news" {
		t.Fatalf("stored topics %+v, want only news", topics)
	}
	if got := apptest.IDs(topics[0].Messages); fmt.Sprint(got) != fmt.Sprint(apptest.IDs(recent)) {
		t.Errorf("stored %v, want only %v: %v expired", got, apptest.IDs(recent), apptest.IDs(old))
	}
}

func TestBoltStoreRefusesFilesItCannotUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	locked := filepath.Join(dir, "locked.db")
	holder := openStore(t, locked)
	t.Cleanup(func() { holder.Close() }) // after the parallel subtests

	corrupt := filepath.Join(dir, "corrupt.db")
	if err := os.WriteFile(corrupt, []byte(strings.Repeat("not a database ", 2000)), 0o600); err != nil {
		t.Fatal(err)
	}
	notADir := filepath.Join(dir, "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name        string
		givenPath   string
		expectError string
	}{
		{"givenFileHeldByAnotherStore", locked, "is locked by another process"},
		{"givenGarbage", corrupt, "is corrupt or not a Herald history file"},
		{"givenDirectoryThatIsAFile", filepath.Join(notADir, "history.db"), "not a directory"},
		{"givenMissingDirectory", filepath.Join(dir, "missing", "history.db"), "no such file or directory"},
		{"givenADirectory", dir, "open history file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := OpenBolt(tc.givenPath)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tc.expectError) || !strings.Contains(err.Error(), tc.givenPath) {
				t.Errorf("error %q does not name the file and say %q", err, tc.expectError)
			}
		})
	}
}
