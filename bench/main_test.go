package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every poll
// group, reader and fake server must have stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
