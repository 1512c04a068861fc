//go:build !unix

package worker

import "os"

// QuietSignals are the OS signals that quiet a worker as Sidekiq's TSTP does:
// none where there is no SIGTSTP (Sidekiq's Quiet button still works there).
func QuietSignals() []os.Signal { return nil }
