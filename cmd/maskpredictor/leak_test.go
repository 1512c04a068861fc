package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// command a test starts (serve, worker, run, in process) must stop all it
// started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
