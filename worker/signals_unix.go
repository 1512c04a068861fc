//go:build unix

package worker

import (
	"os"
	"syscall"
)

// QuietSignals are the OS signals that quiet a worker as Sidekiq's TSTP does
// (Server.Quiet): SIGTSTP on Unix, Sidekiq's own quiet signal. A process that
// catches them (signal.Notify) is no longer suspended by them.
func QuietSignals() []os.Signal { return []os.Signal{syscall.SIGTSTP} }
