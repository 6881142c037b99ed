package push

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func newKeys(t *testing.T) KeyPair {
	t.Helper()
	keys, err := NewKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// However a key pair is printed or logged, its private key is not shown.
func TestKeyPairNeverShowsItsPrivateKey(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("keys", "keys", keys)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("keys", "keys", keys)
	shown := fmt.Sprintf("%v %+v %#v %s %q %x", keys, keys, keys, keys, keys, keys) + logged.String()
	if strings.Contains(shown, keys.private) || !strings.Contains(shown, keys.Public()) {
		t.Errorf("the key pair shows as %s", shown)
	}
}

func TestDecodeKeyPairRefusesAPairThatDoesNotMatch(t *testing.T) {
	t.Parallel()
	keys, other := newKeys(t), newKeys(t)
	if decoded, err := DecodeKeyPair(keys.Encode()); err != nil || decoded != keys {
		t.Fatalf("decoded %v, %v", decoded, err)
	}
	mismatched := keyPairFile{Public: other.public, Private: keys.private}
	for _, data := range [][]byte{
		[]byte(fmt.Sprintf(`{"public":%q,"private":%q}`, mismatched.Public, mismatched.Private)),
		[]byte(`{"public":"AAAA","private":"AAAA"}`),
		[]byte(`not json`),
		keys.Encode()[:20],
	} {
		if _, err := DecodeKeyPair(data); !errors.Is(err, errBadKeyPair) {
			t.Errorf("%q: %v, want errBadKeyPair", data, err)
		}
	}
}

// The key file is made, readable by its owner alone, by the first store
// that needs it, and read by every later one: stores that start at once
// agree on one pair.
func TestMemoryStoreKeepsTheKeyPairInItsFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "vapid.json")
	const stores = 8
	got := make([]KeyPair, stores)
	errs := make([]error, stores)
	var wg sync.WaitGroup
	for i := range stores {
		fresh := newKeys(t)
		wg.Go(func() { got[i], errs[i] = NewMemoryStore(path, Limits{1, 1}).Keys(ctx, fresh) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != got[0] {
			t.Errorf("store %d keeps %v, store 0 %v", i, got[i], got[0])
		}
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v; want mode 0600", info, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("the directory holds %d files, want the key file alone", len(entries))
	}
	if again, err := NewMemoryStore(path, Limits{1, 1}).Keys(ctx, newKeys(t)); err != nil || again != got[0] {
		t.Errorf("a later store keeps %v (%v), want %v", again, err, got[0])
	}

	if err := os.WriteFile(path, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = NewMemoryStore(path, Limits{1, 1}).Keys(ctx, newKeys(t))
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "remove it to make a new pair") {
		t.Errorf("a damaged key file: %v, want an error that names it and says what to do", err)
	}
}

func TestMemoryStoreWithoutAKeyFileKeepsThePairWhileItLives(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := NewMemoryStore("", Limits{1, 1})
	first := newKeys(t)
	if keys, err := store.Keys(ctx, first); err != nil || keys != first {
		t.Fatalf("the first call kept %v (%v), want the fresh pair", keys, err)
	}
	if keys, err := store.Keys(ctx, newKeys(t)); err != nil || keys != first {
		t.Errorf("a later call kept %v (%v), want the first pair", keys, err)
	}
}
