//go:build !linux

package session_test

import "time"

var clockStart = time.Now()

// cpuClock falls back to wall-clock time where per-thread CPU time is not available.
func cpuClock() time.Duration { return time.Since(clockStart) }

const cpuClockName = "wall"
