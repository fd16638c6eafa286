//go:build linux && amd64

package embedded_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/guardyn/guardyn/libs/internal/powerloss"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/kv/embedded"
)

// TestPowerLoss runs a traced child (libs/internal/powerloss) that commits from several
// goroutines, rebuilds the disk as a power cut at many points of the trace would have
// left it, with every kind of loss of unsynced writes, and opens the store on each.
// Unlike TestKill9, whose killed child leaves its writes in the page cache, it fails
// when a sync is missing: bbolt's two per commit and one when creating the file, and
// the directory sync that makes a new file's entry durable; see docs/storage.md.
const (
	powerlossRootEnv  = "GUARDYN_KV_POWERLOSS_ROOT"
	powerlossRoundEnv = "GUARDYN_KV_POWERLOSS_ROUND"
	powerlossAcks     = 300
)

func init() { powerlossChild = runPowerlossChild }

func runPowerlossChild() bool {
	root := os.Getenv(powerlossRootEnv)
	if root == "" {
		return false
	}
	round, _ := strconv.Atoi(os.Getenv(powerlossRoundEnv))
	err := powerloss.Child()
	if err == nil {
		err = powerlossChildRun(root, round)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return true
}

func powerlossValue(key string) []byte {
	return []byte(strings.Repeat("value of "+key+" ", 8))
}

// powerlossChildRun puts a new key in each Update from 8 goroutines and deletes the
// previous one every other time, so that bbolt frees and reuses pages; it prints "ack
// <key>" after an Update returned and "del <key>" before the Update that deletes it,
// and exits without closing the store after powerlossAcks Updates.
func powerlossChildRun(root string, round int) error {
	s, err := embedded.Open(filepath.Join(root, embedded.FileName), embedded.Options{})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	say := func(line string) {
		mu.Lock()
		os.Stdout.WriteString(line + "\n")
		mu.Unlock()
	}
	var acks atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("crash/%d/%d/%06d", round, w, i)
				prev := fmt.Sprintf("crash/%d/%d/%06d", round, w, i-1)
				drop := i%2 == 1
				if drop {
					say("del " + prev)
				}
				if err := s.Update(context.Background(), func(tx kv.Tx) error {
					if drop {
						if err := tx.Delete([]byte(prev)); err != nil {
							return err
						}
					}
					return tx.Put([]byte(key), powerlossValue(key))
				}); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				say("ack " + key)
				if acks.Add(1) >= powerlossAcks {
					os.Exit(0)
				}
			}
		})
	}
	wg.Wait()
	return nil
}

func newRNG(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("GUARDYN_POWERLOSS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("GUARDYN_POWERLOSS_SEED=%d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// TestPowerLoss runs the child in two rounds, the second on the disk a random power cut
// of the first left, and checks at cut points all through each round, with every kind of
// loss, that the store opens, that bbolt finds its pages consistent, and that every key
// whose Update returned, and whose delete had not begun, holds its value.
func TestPowerLoss(t *testing.T) {
	rng := newRNG(t)
	required := map[string]bool{}
	root := filepath.Join(t.TempDir(), "root0")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	checks := 0
	for round := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), powerlossRootEnv+"="+root, powerlossRoundEnv+"="+strconv.Itoa(round))
		tr, err := powerloss.Run(cmd, root, 3*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %s", round, tr.Summary())

		syncs := tr.Syncs()
		rng.Shuffle(len(syncs), func(i, j int) { syncs[i], syncs[j] = syncs[j], syncs[i] })
		// The first syncs create the file; cut before each of them too.
		points := append(syncs[:min(30, len(syncs))], tr.Syncs()[:min(6, len(syncs))]...)
		for _, k := range tr.DirSyncs() {
			points = append(points, k+1)
		}
		points = append(points, tr.Len())
		slices.Sort(points)
		points = slices.Compact(points)
		next := points[len(points)/2+rng.IntN(len(points)/2)]
		nextRoot := filepath.Join(t.TempDir(), "root1")
		var nextRequired map[string]bool

		lines, at := tr.LineEvents()
		want := map[string]bool{}
		for k := range required {
			want[k] = true
		}
		li := 1 // after the handshake
		d := tr.Replay()
		for _, k := range points {
			for ; li < len(lines) && at[li] < k; li++ {
				verb, key, ok := strings.Cut(lines[li], " ")
				switch {
				case ok && verb == "ack":
					want[key] = true
				case ok && verb == "del":
					delete(want, key)
				default:
					t.Fatalf("child printed %q", lines[li])
				}
			}
			if err := d.Advance(k); err != nil {
				t.Fatal(err)
			}
			for _, loss := range powerloss.Losses {
				dir := filepath.Join(t.TempDir(), "cut")
				if err := d.Restore(dir, loss, rng); err != nil {
					t.Fatal(err)
				}
				if err := checkImage(filepath.Join(dir, embedded.FileName), want); err != nil {
					t.Fatalf("round %d, power cut at event %d of %d with %v: %v", round, k, tr.Len(), loss, err)
				}
				checks++
				os.RemoveAll(dir)
			}
			if k == next && round == 0 {
				loss := powerloss.Losses[rng.IntN(len(powerloss.Losses))]
				if err := d.Restore(nextRoot, loss, rng); err != nil {
					t.Fatal(err)
				}
				nextRequired = maps(want)
				t.Logf("round 1 continues from a cut at event %d with %v, %d keys required", k, loss, len(want))
			}
		}
		root, required = nextRoot, nextRequired
	}
	t.Logf("%d power cuts checked", checks)
}

func maps(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// checkImage opens the store at path and checks it. bbolt reads a damaged file through
// its memory map and may panic or fault on it, which is turned into an error here.
func checkImage(path string, want map[string]bool) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	if err := checkPages(path); err != nil {
		return err
	}
	s, err := embedded.Open(path, embedded.Options{})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer s.Close()
	var missing []string
	err = s.View(context.Background(), func(tx kv.Tx) error {
		for key := range want {
			v, err := tx.Get([]byte(key))
			if errors.Is(err, kv.ErrNotFound) {
				missing = append(missing, key)
				continue
			}
			if err != nil {
				return err
			}
			if string(v) != string(powerlossValue(key)) {
				return fmt.Errorf("key %s holds %q", key, v)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("%d of %d acknowledged keys lost, first %s", len(missing), len(want), missing[0])
	}
	return nil
}

// checkPages runs bbolt's own consistency check on the file, if there is one.
func checkPages(path string) error {
	if fi, err := os.Stat(path); errors.Is(err, os.ErrNotExist) || (err == nil && fi.Size() == 0) {
		return nil // a power cut before the file was durable; Open initializes it
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := checkMeta(b); err != nil {
		return err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("bbolt open: %w", err)
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

// checkMeta finds the meta page bbolt will use and checks that every page it can reach
// lies inside the file, which bbolt does not before it reads them: a page past the end
// faults, and bbolt walks the pages of a store opened for writing in a goroutine of its
// own, where a fault kills the test binary instead of failing the check. The layout is
// bbolt's (internal/common.Meta after a 16-byte page header, native byte order, which is
// little-endian where this test runs, 4 KiB pages as this store creates them).
func checkMeta(b []byte) error {
	const pageSize, metaOff = 4096, 16
	var txid, pgid uint64
	found := false
	for i := range 2 {
		off := i*pageSize + metaOff
		if len(b) < off+64 {
			continue
		}
		m := b[off : off+64]
		h := fnv.New64a()
		h.Write(m[:56])
		if binary.LittleEndian.Uint32(m[0:]) != 0xED0CDAED || binary.LittleEndian.Uint32(m[4:]) != 2 ||
			binary.LittleEndian.Uint64(m[56:]) != h.Sum64() {
			continue
		}
		if t := binary.LittleEndian.Uint64(m[48:]); !found || t > txid {
			txid, pgid, found = t, binary.LittleEndian.Uint64(m[40:]), true
		}
	}
	if found && pgid*pageSize > uint64(len(b)) {
		return fmt.Errorf("meta page of transaction %d uses %d pages, the file holds %d bytes", txid, pgid, len(b))
	}
	return nil // no valid meta page: bbolt reports that itself
}
