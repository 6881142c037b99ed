package redisbroker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"herald/app"
	"herald/app/apptest"
)

// A Redis call that ends because its own context ended (the server
// stopping, a publisher that went away mid-request) says nothing about
// Redis: it must not mark the broker down, refuse publishes with 503 and
// tell every subscriber that the broker went. A real failure must.
func TestOnlyRealRedisFailuresMarkTheBrokerDown(t *testing.T) {
	var logs bytes.Buffer
	b := &Broker{events: apptest.NewHub(t, app.HubOptions{}), log: slog.New(slog.NewTextHandler(&logs, nil))}
	b.up.Store(true)

	b.failed(fmt.Errorf("publish: %w", context.Canceled))
	if stats := b.Stats(); !stats.Up || stats.Errors != 0 {
		t.Fatalf("after a canceled call: %+v, want up with no errors", stats)
	}
	if logs.Len() != 0 {
		t.Fatalf("a canceled call was logged: %s", logs.String())
	}

	b.failed(errors.New("dial tcp 127.0.0.1:6379: connect: connection refused"))
	if stats := b.Stats(); stats.Up || stats.Errors != 1 {
		t.Fatalf("after a refused connection: %+v, want down with one error", stats)
	}
	if !strings.Contains(logs.String(), "redis is unreachable") {
		t.Fatalf("the outage was not logged: %q", logs.String())
	}
}
