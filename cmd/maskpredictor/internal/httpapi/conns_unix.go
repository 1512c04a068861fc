//go:build unix

package httpapi

import "syscall"

// fdLimit is the process' soft limit on open files (0: unknown).
func fdLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}
