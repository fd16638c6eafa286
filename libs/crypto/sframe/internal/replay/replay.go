// Package replay is the sliding-window replay check SFrame receivers keep
// per key id, in the manner of [RFC 3711, Section 3.3.2] with the SFrame
// counter as the index.
//
// [RFC 3711, Section 3.3.2]: https://www.rfc-editor.org/rfc/rfc3711#section-3.3.2
package replay

import (
	"errors"
	"fmt"
)

// MaxSize bounds the window so that its bitmap stays small (8 KiB).
const MaxSize = 1 << 16

var (
	// ErrReplayed means the counter was already accepted.
	ErrReplayed = errors.New("replayed counter")
	// ErrTooOld means the counter is behind the window.
	ErrTooOld = errors.New("counter behind replay window")
	// ErrBadSize means a window size is outside 1..MaxSize.
	ErrBadSize = errors.New("replay window size out of range")
)

// Window remembers which of the last size counters below the highest
// accepted one were seen. The zero value is not usable; call New.
type Window struct {
	size    uint64
	mask    uint64 // ring size - 1; the ring is a power of two >= size
	top     uint64
	started bool
	bits    []uint64
}

// New returns an empty window accepting counters up to size-1 behind the
// highest accepted counter.
func New(size int) (*Window, error) {
	if size < 1 || size > MaxSize {
		return nil, fmt.Errorf("replay window of %d counters, want 1..%d: %w", size, MaxSize, ErrBadSize)
	}
	ring := uint64(64)
	for ring < uint64(size) {
		ring <<= 1
	}
	return &Window{size: uint64(size), mask: ring - 1, bits: make([]uint64, ring/64)}, nil
}

// Check reports whether ctr may be accepted, without recording it. Callers
// Check before authenticating a frame and Accept after, so that forged
// frames cannot move the window.
func (w *Window) Check(ctr uint64) error {
	if !w.started || ctr > w.top {
		return nil
	}
	if w.top-ctr >= w.size {
		return fmt.Errorf("counter %d, window starts after %d: %w", ctr, w.top-w.size, ErrTooOld)
	}
	if w.bits[(ctr&w.mask)/64]&(1<<(ctr%64)) != 0 {
		return fmt.Errorf("counter %d: %w", ctr, ErrReplayed)
	}
	return nil
}

// Accept records ctr, which must have passed Check, sliding the window
// forward when ctr is the new highest counter.
func (w *Window) Accept(ctr uint64) {
	switch {
	case !w.started:
		w.started = true
		w.top = ctr
	case ctr > w.top:
		w.clearAfterTop(ctr - w.top)
		w.top = ctr
	}
	w.bits[(ctr&w.mask)/64] |= 1 << (ctr % 64)
}

// clearAfterTop forgets the n ring slots after top, which now stand for
// counters not yet seen. Whole words are cleared at once so that a big jump
// costs at most one pass over the bitmap.
func (w *Window) clearAfterTop(n uint64) {
	if n > w.mask {
		clear(w.bits)
		return
	}
	// idx walks the ring; it never needs the counter itself, so it cannot
	// overflow near the top of the counter range.
	idx := (w.top + 1) & w.mask
	for n > 0 {
		if idx%64 == 0 && n >= 64 {
			w.bits[idx/64] = 0
			idx = (idx + 64) & w.mask
			n -= 64
			continue
		}
		w.bits[idx/64] &^= 1 << (idx % 64)
		idx = (idx + 1) & w.mask
		n--
	}
}
