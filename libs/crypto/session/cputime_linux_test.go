//go:build linux

package session_test

import (
	"syscall"
	"time"
)

// cpuClock returns the calling OS thread's CPU time (user + system). On this shared 2-core
// machine wall-clock time swings several-fold with other people's load; a thread's own CPU time
// does not. Callers lock their goroutine to its thread (runtime.LockOSThread).
func cpuClock() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const cpuClockName = "thread-cpu"
