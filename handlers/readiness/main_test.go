package readiness

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a Poller's goroutine outlives its last watch.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
