package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"herald/app"
	"herald/app/config"
)

// closeOrderStore records, when the instance closes it, whether the node
// had already ended every subscription.
type closeOrderStore struct {
	app.Store
	node           *app.Node
	closedAfterHub atomic.Bool
	closed         atomic.Bool
}

func (s *closeOrderStore) Close() error {
	s.closed.Store(true)
	shutDown := errors.Is(s.node.Ready(context.Background()), app.ErrHubClosed)
	s.closedAfterHub.Store(shutDown && s.node.Stats().Subscribers == 0)
	return s.Store.Close()
}

// TestFailedServeStopsEveryPartAndClosesTheStoreLast: when Serve fails,
// the instance still ends its subscriptions with a close, and closes the
// history file only after that.
func TestFailedServeStopsEveryPartAndClosesTheStoreLast(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.History.File = filepath.Join(t.TempDir(), "history.db")
	secrets, err := cfg.ReadSecrets(config.Source{Name: "test"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	herald, err := newInstance(cfg, secrets, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	store := &closeOrderStore{Store: herald.store, node: herald.node}
	herald.store = store
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- herald.serve(context.Background(), listener) }()

	conn := dial(t, "ws://"+listener.Addr().String()+"/ws")
	listener.Close() // Serve's Accept fails: the way out that used to skip shutdown

	conn.SetReadDeadline(time.Now().Add(hangGuard))
	_, _, err = conn.ReadMessage()
	var closed *gorilla.CloseError
	if !errors.As(err, &closed) || closed.Code != gorilla.CloseGoingAway {
		t.Errorf("the subscriber got %v, want a 1001 close", err)
	}
	select {
	case err := <-served:
		if err == nil || !strings.HasPrefix(err.Error(), "serve: ") {
			t.Errorf("serve returned %v, want the Serve error", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("serve did not return after Serve failed")
	}
	if !store.closed.Load() || !store.closedAfterHub.Load() {
		t.Errorf("store closed: %v, after the hub had ended every subscription: %v", store.closed.Load(), store.closedAfterHub.Load())
	}
}
