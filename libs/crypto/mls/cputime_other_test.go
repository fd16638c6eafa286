//go:build !unix

package mls_test

// processCPU is unavailable here; cpu-ns/op then reads 0.
func processCPU() int64 { return 0 }
