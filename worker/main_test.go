package worker

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// Server that was shut down, and every handler test, must leave nothing
// running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
