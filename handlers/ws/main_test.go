package ws

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: the writer
// pool's, the Poller's, a reader's or a blocked write's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
