package mlskeys

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/sframe"
	"github.com/guardyn/guardyn/libs/crypto/sframe/mlskeys/mlskeystest"
)

// fileStore is a CounterStore in a file, as an application keeps one: each
// Reserve rewrites the file and syncs it before returning. Opening the same
// path again is what a restarted application sees.
type fileStore struct {
	path string
}

func (s fileStore) Reserve(epoch, kid, n uint64) (uint64, error) {
	floors := map[string]uint64{}
	if b, err := os.ReadFile(s.path); err == nil {
		if err := json.Unmarshal(b, &floors); err != nil {
			return 0, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	key := fmt.Sprintf("%d/%d", epoch, kid)
	floor := floors[key]
	floors[key] = floor + n
	b, err := json.Marshal(floors)
	if err != nil {
		return 0, err
	}
	tmp := s.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return floor, os.Rename(tmp, s.path)
}

// TestRestartNeverReusesCounters runs the member at leaf 0 through an
// application restart (a new keyring over the same stored counters) and
// with a second keyring alive at once, all in the same epoch: no (KID,
// counter) pair repeats under the epoch's key, and the other member reads
// every frame. Before, each new keyring restarted its sender at counter 0.
func TestRestartNeverReusesCounters(t *testing.T) {
	group := mlskeystest.NewGroup(crypto.SHA256, bytes.Repeat([]byte{0x42}, 32), 1, 0, 2)
	store := fileStore{filepath.Join(t.TempDir(), "counters.json")}
	open := func() *Keyring {
		t.Helper()
		k, err := NewKeyring(sframe.AES_128_GCM_SHA256_128, 4, time.Second, 64, nil, store)
		if err != nil {
			t.Fatal(err)
		}
		if err := k.SetEpoch(group.As(0)); err != nil {
			t.Fatal(err)
		}
		return k
	}
	reader, err := NewKeyring(sframe.AES_128_GCM_SHA256_128, 4, time.Second, 64, nil, mlskeystest.NewCounterStore())
	if err != nil {
		t.Fatal(err)
	}
	if err := reader.SetEpoch(group.As(1)); err != nil {
		t.Fatal(err)
	}
	seen := map[sframe.Header]bool{}
	send := func(k *Keyring, n int) {
		t.Helper()
		for range n {
			f, err := k.Protect(0, nil, nil, []byte("frame"))
			if err != nil {
				t.Fatal(err)
			}
			h, _, err := sframe.ParseHeader(f)
			if err != nil {
				t.Fatal(err)
			}
			if seen[h] {
				t.Fatalf("KID %d counter %d used twice under one key", h.KeyID, h.Counter)
			}
			seen[h] = true
			if _, err := reader.Unprotect(nil, nil, f); err != nil {
				t.Fatalf("KID %d counter %d: %v", h.KeyID, h.Counter, err)
			}
		}
	}
	first := open()
	send(first, 3)
	restarted := open() // the application restarted in the same epoch
	send(restarted, 3)
	second := open() // one more keyring of the same member, alive at once
	send(second, 3)
	if len(seen) != 9 {
		t.Fatalf("%d distinct frames, want 9", len(seen))
	}
}

// TestCounterBlocks checks that a sender reserves a new block before it
// runs out, and starts after a block another keyring took meanwhile.
func TestCounterBlocks(t *testing.T) {
	group := mlskeystest.NewGroup(crypto.SHA256, bytes.Repeat([]byte{0x42}, 32), 1, 0, 2)
	store := &countingStore{CounterStore: mlskeystest.NewCounterStore()}
	k, err := NewKeyring(sframe.AES_128_GCM_SHA256_128, 4, time.Second, 64, nil, store)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.SetEpoch(group.As(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Protect(0, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	kid, _ := k.KeyID(0)
	// Skip to the last counter of the first block; a second keyring takes
	// the next block in between.
	if err := k.streams[0].sender.SetNextCounter(CounterBlock - 1); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Reserve(1, kid, CounterBlock); err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{CounterBlock - 1, 2 * CounterBlock, 2*CounterBlock + 1} {
		f, err := k.Protect(0, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, _, _ := sframe.ParseHeader(f)
		if h.Counter != want {
			t.Fatalf("counter %d, want %d", h.Counter, want)
		}
	}
	if store.calls != 3 {
		t.Errorf("%d reservations, want 3", store.calls)
	}
}

type countingStore struct {
	CounterStore
	calls int
	err   error
	floor *uint64 // if set, returned instead of the store's answer
}

func (s *countingStore) Reserve(epoch, kid, n uint64) (uint64, error) {
	s.calls++
	if s.err != nil {
		return 0, s.err
	}
	floor, err := s.CounterStore.Reserve(epoch, kid, n)
	if s.floor != nil {
		return *s.floor, err
	}
	return floor, err
}

// TestCounterStoreFailures: a store that fails, or hands out counters it
// already handed out, stops the sender without a frame.
func TestCounterStoreFailures(t *testing.T) {
	group := mlskeystest.NewGroup(crypto.SHA256, bytes.Repeat([]byte{0x42}, 32), 1, 0, 2)
	diskFull := errors.New("disk full")
	store := &countingStore{CounterStore: mlskeystest.NewCounterStore(), err: diskFull}
	k, err := NewKeyring(sframe.AES_128_GCM_SHA256_128, 4, time.Second, 64, nil, store)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.SetEpoch(group.As(0)); err != nil {
		t.Fatal(err)
	}
	if f, err := k.Protect(0, nil, nil, []byte("x")); !errors.Is(err, ErrCounterStore) || !errors.Is(err, diskFull) || f != nil {
		t.Fatalf("failing store: %x, %v; want ErrCounterStore wrapping the cause", f, err)
	}
	store.err = nil
	if _, err := k.Protect(0, nil, nil, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := k.streams[0].sender.SetNextCounter(CounterBlock); err != nil {
		t.Fatal(err)
	}
	zero := uint64(0)
	store.floor = &zero // the store lost its writes
	if f, err := k.Protect(0, nil, nil, []byte("x")); !errors.Is(err, ErrCounterStore) || f != nil {
		t.Fatalf("store going backwards: %x, %v; want ErrCounterStore", f, err)
	}
}

// TestStreamsUseContexts sends two streams of one member under two
// contexts: each has its own KID (RFC 9605, Section 5.2) and counters, and
// the other member reads both.
func TestStreamsUseContexts(t *testing.T) {
	c := newCall(t, 2, 4, time.Second)
	kids := map[uint64]bool{}
	for ctx := range uint64(3) {
		kid, err := c.members[0].KeyID(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := KeyID(ctx, 0, c.group.Epoch(), 4, IndexBits(2))
		if kid != want {
			t.Errorf("context %d: KID %d, want %d", ctx, kid, want)
		}
		kids[kid] = true
		for i := range 2 {
			f, err := c.members[0].Protect(ctx, nil, []byte("md"), []byte("stream"))
			if err != nil {
				t.Fatal(err)
			}
			h, _, _ := sframe.ParseHeader(f)
			if h.KeyID != kid || h.Counter != uint64(i) {
				t.Errorf("context %d frame %d: header %+v, want KID %d counter %d", ctx, i, h, kid, i)
			}
			c.mustRead(1, f, "stream")
		}
	}
	if len(kids) != 3 {
		t.Errorf("contexts share KIDs: %v", kids)
	}
	if _, err := c.members[0].KeyID(1 << 58); !errors.Is(err, ErrBadLayout) {
		t.Errorf("context too wide: %v, want ErrBadLayout", err)
	}
}

// TestOwnFramesRefused reflects a member's own frames back to it, under
// every context: they are refused without deriving a key. Before, a
// keyring accepted its own frames.
func TestOwnFramesRefused(t *testing.T) {
	c := newCall(t, 2, 4, time.Second)
	for ctx := range uint64(2) {
		f, err := c.members[0].Protect(ctx, nil, []byte("md"), []byte("mine"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.members[0].Unprotect(nil, []byte("md"), f); !errors.Is(err, ErrOwnFrame) {
			t.Errorf("context %d: own frame: %v, want ErrOwnFrame", ctx, err)
		}
		c.mustRead(1, f, "mine")
	}
	if len(c.members[0].current.kids) != 0 {
		t.Error("own frames left receiving keys behind")
	}
	// Also in the previous epoch's grace period.
	f := c.send(0, "old")
	c.advance()
	if _, err := c.members[0].Unprotect(nil, []byte("md"), f); !errors.Is(err, ErrOwnFrame) {
		t.Errorf("own frame of the previous epoch: %v, want ErrOwnFrame", err)
	}
}
