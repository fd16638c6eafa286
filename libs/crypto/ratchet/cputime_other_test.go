//go:build !unix

package ratchet

import "testing"

func reportCPUTime(*testing.B, int64) {}

func processCPU() int64 { return 0 }
