//go:build race

package ratchet

// raceEnabled: the race detector's instrumentation moves the SHA-256 digests, which otherwise
// stay on the stack, to the heap.
const raceEnabled = true
