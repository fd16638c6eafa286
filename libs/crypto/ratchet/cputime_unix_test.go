//go:build unix

package ratchet

import (
	"syscall"
	"testing"
)

// reportCPUTime adds a cpu-ns/op metric: process CPU time (user+system) per op. On this shared
// 2-core machine wall-clock ns/op swings several-fold with other people's load; CPU time does not.
// Call it after b.Loop has finished; start is the value of processCPU taken before the loop.
func reportCPUTime(b *testing.B, start int64) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
	}
}

func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
