package replay

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func mustNew(t *testing.T, size int) *Window {
	t.Helper()
	w, err := New(size)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestNewRejectsBadSizes(t *testing.T) {
	for _, size := range []int{-1, 0, MaxSize + 1} {
		if _, err := New(size); !errors.Is(err, ErrBadSize) {
			t.Errorf("New(%d) = %v, want ErrBadSize", size, err)
		}
	}
	for _, size := range []int{1, 64, 65, MaxSize} {
		if _, err := New(size); err != nil {
			t.Errorf("New(%d) = %v", size, err)
		}
	}
}

func TestInOrderThenReplay(t *testing.T) {
	w := mustNew(t, 128)
	for ctr := uint64(0); ctr < 1000; ctr++ {
		if err := w.Check(ctr); err != nil {
			t.Fatalf("Check(%d) = %v", ctr, err)
		}
		w.Accept(ctr)
	}
	if err := w.Check(999); !errors.Is(err, ErrReplayed) {
		t.Errorf("Check(999) = %v, want ErrReplayed", err)
	}
	if err := w.Check(999 - 127); !errors.Is(err, ErrReplayed) {
		t.Errorf("oldest slot: Check = %v, want ErrReplayed", err)
	}
	if err := w.Check(999 - 128); !errors.Is(err, ErrTooOld) {
		t.Errorf("just outside: Check = %v, want ErrTooOld", err)
	}
}

func TestReorderedWithinWindow(t *testing.T) {
	w := mustNew(t, 64)
	w.Accept(100)
	for _, ctr := range []uint64{99, 37, 50, 101, 98} {
		if err := w.Check(ctr); err != nil {
			t.Fatalf("Check(%d) = %v", ctr, err)
		}
		w.Accept(ctr)
	}
	for _, ctr := range []uint64{99, 50, 101, 100} {
		if err := w.Check(ctr); !errors.Is(err, ErrReplayed) {
			t.Errorf("Check(%d) = %v, want ErrReplayed", ctr, err)
		}
	}
	if err := w.Check(37); !errors.Is(err, ErrTooOld) {
		t.Errorf("Check(37) after top 101 = %v, want ErrTooOld", err)
	}
}

func TestCheckDoesNotRecord(t *testing.T) {
	w := mustNew(t, 64)
	if err := w.Check(5); err != nil {
		t.Fatal(err)
	}
	if err := w.Check(5); err != nil {
		t.Errorf("second Check without Accept = %v", err)
	}
}

func TestJumpClearsStaleSlots(t *testing.T) {
	w := mustNew(t, 256)
	for ctr := uint64(0); ctr < 256; ctr++ {
		w.Accept(ctr)
	}
	// Jump by less than the ring: the slots between the old and new top
	// stand for fresh counters and must read as unseen.
	w.Accept(255 + 200)
	for ctr := uint64(256); ctr < 455; ctr++ {
		if err := w.Check(ctr); err != nil {
			t.Fatalf("Check(%d) after jump = %v", ctr, err)
		}
	}
	for ctr := uint64(200); ctr < 256; ctr++ {
		if err := w.Check(ctr); !errors.Is(err, ErrReplayed) {
			t.Fatalf("Check(%d) = %v, want ErrReplayed", ctr, err)
		}
	}
}

func TestCounterRangeEdges(t *testing.T) {
	w := mustNew(t, 64)
	w.Accept(math.MaxUint64 - 70)
	w.Accept(math.MaxUint64)
	if err := w.Check(math.MaxUint64); !errors.Is(err, ErrReplayed) {
		t.Errorf("Check(max) = %v, want ErrReplayed", err)
	}
	if err := w.Check(math.MaxUint64 - 1); err != nil {
		t.Errorf("Check(max-1) = %v", err)
	}
	if err := w.Check(0); !errors.Is(err, ErrTooOld) {
		t.Errorf("Check(0) = %v, want ErrTooOld", err)
	}
}

// TestAgainstModel compares the window with a map of every accepted counter
// on random traffic with reordering, duplicates and jumps.
func TestAgainstModel(t *testing.T) {
	for _, size := range []int{1, 63, 64, 100, 1024} {
		w := mustNew(t, size)
		seen := map[uint64]bool{}
		var top uint64
		started := false
		rng := rand.New(rand.NewPCG(uint64(size), 7))
		next := uint64(0)
		for range 20000 {
			var ctr uint64
			switch r := rng.IntN(10); {
			case r < 5:
				ctr = next
				next++
			case r < 8 && next > 0:
				ctr = next - 1 - rng.Uint64N(min(next, uint64(2*size+2)))
			default:
				next += rng.Uint64N(3 * uint64(size))
				ctr = next
			}
			err := w.Check(ctr)
			var want error
			switch {
			case started && ctr <= top && top-ctr >= uint64(size):
				want = ErrTooOld
			case seen[ctr]:
				want = ErrReplayed
			}
			if !errors.Is(err, want) { // errors.Is(err, nil) holds only for a nil err
				t.Fatalf("size %d: Check(%d) with top %d = %v, want %v", size, ctr, top, err, want)
			}
			if err == nil {
				w.Accept(ctr)
				seen[ctr] = true
				if !started || ctr > top {
					top = ctr
				}
				started = true
			}
		}
	}
}

func BenchmarkInOrder(b *testing.B) {
	w, _ := New(1024)
	var ctr uint64
	for b.Loop() {
		if w.Check(ctr) == nil {
			w.Accept(ctr)
		}
		ctr++
	}
}
