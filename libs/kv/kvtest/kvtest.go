// Package kvtest is the conformance suite and benchmark set every [kv.Store] backend runs;
// see docs/storage.md.
package kvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/guardyn/guardyn/libs/kv"
)

// Opener opens the store kept under dir. Opening the same dir again after Close must
// give back the same data; the suite closes every store it opens.
type Opener func(tb testing.TB, dir string) kv.Store

// Run runs the conformance suite against the backend open returns.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"CRUD", testCRUD},
		{"Copies", testCopies},
		{"ScanOrder", testScanOrder},
		{"ScanBounds", testScanBounds},
		{"ReadYourWrites", testReadYourWrites},
		{"Atomicity", testAtomicity},
		{"ConcurrentFailures", testConcurrentFailures},
		{"ReadOnly", testReadOnly},
		{"TxDone", testTxDone},
		{"ConcurrentIncrements", testConcurrentIncrements},
		{"ClaimOnce", testClaimOnce},
		{"ClaimSameItem", testClaimSameItem},
		{"SnapshotView", testSnapshotView},
		{"Reopen", testReopen},
		{"Closed", testClosed},
		{"ContextCanceled", testContextCanceled},
		{"BigValues", testBigValues},
		{"BadKeys", testBadKeys},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// openClosed opens a store in a fresh dir and closes it when the test ends.
func openClosed(tb testing.TB, open Opener) kv.Store {
	s := open(tb, tb.TempDir())
	tb.Cleanup(func() { s.Close() })
	return s
}

func put(tb testing.TB, s kv.Store, key, value string) {
	tb.Helper()
	if err := s.Update(context.Background(), func(tx kv.Tx) error {
		return tx.Put([]byte(key), []byte(value))
	}); err != nil {
		tb.Fatalf("put %q: %v", key, err)
	}
}

// get returns the value at key, or an error wrapping kv.ErrNotFound.
func get(tb testing.TB, s kv.Store, key string) ([]byte, error) {
	tb.Helper()
	var v []byte
	err := s.View(context.Background(), func(tx kv.Tx) error {
		var err error
		v, err = tx.Get([]byte(key))
		return err
	})
	return v, err
}

func mustGet(tb testing.TB, s kv.Store, key, want string) {
	tb.Helper()
	v, err := get(tb, s, key)
	if err != nil {
		tb.Fatalf("get %q: %v", key, err)
	}
	if string(v) != want {
		tb.Fatalf("get %q = %q, want %q", key, v, want)
	}
}

func mustMissing(tb testing.TB, s kv.Store, key string) {
	tb.Helper()
	v, err := get(tb, s, key)
	if !errors.Is(err, kv.ErrNotFound) {
		tb.Fatalf("get %q = %q, %v; want kv.ErrNotFound", key, v, err)
	}
}

func testCRUD(t *testing.T, open Opener) {
	s := openClosed(t, open)
	mustMissing(t, s, "t/a")
	put(t, s, "t/a", "1")
	mustGet(t, s, "t/a", "1")
	put(t, s, "t/a", "2")
	mustGet(t, s, "t/a", "2")

	put(t, s, "t/empty", "")
	v, err := get(t, s, "t/empty")
	if err != nil || len(v) != 0 {
		t.Fatalf("get of empty value = %q, %v; want empty, nil", v, err)
	}

	del := func(key string) error {
		return s.Update(context.Background(), func(tx kv.Tx) error { return tx.Delete([]byte(key)) })
	}
	if err := del("t/a"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	mustMissing(t, s, "t/a")
	if err := del("t/never"); err != nil {
		t.Fatalf("delete of missing key: %v", err)
	}
	mustGet(t, s, "t/empty", "")
}

func testCopies(t *testing.T, open Opener) {
	s := openClosed(t, open)
	key, value := []byte("t/k"), []byte("value")
	if err := s.Update(context.Background(), func(tx kv.Tx) error {
		err := tx.Put(key, value)
		// The Put must have copied both: the caller may reuse its buffers at once.
		key[0], value[0] = 'X', 'X'
		return err
	}); err != nil {
		t.Fatal(err)
	}
	v, err := get(t, s, "t/k")
	if err != nil || string(v) != "value" {
		t.Fatalf("get = %q, %v; want %q", v, err, "value")
	}
	v[0] = 'Y'
	mustGet(t, s, "t/k", "value")

	var scanned []kv.Pair
	if err := s.View(context.Background(), func(tx kv.Tx) error {
		var err error
		scanned, err = kv.ScanPrefix(tx, []byte("t/"), 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Results stay valid and unchanged after the transaction and later writes.
	put(t, s, "t/k", "other")
	if len(scanned) != 1 || string(scanned[0].Key) != "t/k" || string(scanned[0].Value) != "value" {
		t.Fatalf("scan result changed after the transaction: %q", scanned)
	}
}

func scan(tb testing.TB, s kv.Store, start, end []byte, limit int) []kv.Pair {
	tb.Helper()
	var out []kv.Pair
	if err := s.View(context.Background(), func(tx kv.Tx) error {
		var err error
		out, err = tx.Scan(start, end, limit)
		return err
	}); err != nil {
		tb.Fatalf("scan [%q, %q) limit %d: %v", start, end, limit, err)
	}
	return out
}

func keysOf(pairs []kv.Pair) []string {
	keys := make([]string, len(pairs))
	for i, p := range pairs {
		keys[i] = string(p.Key)
	}
	return keys
}

func testScanOrder(t *testing.T, open Opener) {
	s := openClosed(t, open)
	rng := rand.New(rand.NewPCG(1, 2))
	want := make([]string, 200)
	for i := range want {
		// Binary keys of different lengths exercise bytewise ordering.
		k := make([]byte, 1+rng.IntN(12))
		for j := range k {
			k[j] = byte(rng.IntN(256))
		}
		want[i] = "o/" + string(k)
	}
	slices.Sort(want)
	want = slices.Compact(want)
	shuffled := slices.Clone(want)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if err := s.Update(context.Background(), func(tx kv.Tx) error {
		for _, k := range shuffled {
			if err := tx.Put([]byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	put(t, s, "n/before", "x")
	put(t, s, "p/after", "x")

	var got []kv.Pair
	if err := s.View(context.Background(), func(tx kv.Tx) error {
		var err error
		got, err = kv.ScanPrefix(tx, []byte("o/"), 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keysOf(got), want) {
		t.Fatalf("prefix scan returned %d keys out of order or wrong, want %d sorted", len(got), len(want))
	}
	for _, p := range got {
		if string(p.Value) != "v"+string(p.Key) {
			t.Fatalf("value of %q = %q", p.Key, p.Value)
		}
	}
	all := scan(t, s, nil, nil, 0)
	if len(all) != len(want)+2 || string(all[0].Key) != "n/before" || string(all[len(all)-1].Key) != "p/after" {
		t.Fatalf("full scan = %d keys from %q to %q", len(all), all[0].Key, all[len(all)-1].Key)
	}
}

func testScanBounds(t *testing.T, open Opener) {
	s := openClosed(t, open)
	for _, k := range []string{"b/1", "b/2", "b/3", "b/4", "b/5"} {
		put(t, s, k, "x")
	}
	put(t, s, "\xff\xff", "x")
	cases := []struct {
		start, end string
		nilEnd     bool
		limit      int
		want       []string
	}{
		{start: "b/2", end: "b/4", want: []string{"b/2", "b/3"}},
		{start: "b/2", end: "b/4", limit: 1, want: []string{"b/2"}},
		{start: "b/0", end: "b/9", limit: 3, want: []string{"b/1", "b/2", "b/3"}},
		{start: "b/25", end: "b/3", want: nil},
		{start: "b/3", end: "b/3", want: nil},
		{start: "b/4", nilEnd: true, want: []string{"b/4", "b/5", "\xff\xff"}},
		{start: "c", nilEnd: true, limit: 10, want: []string{"\xff\xff"}},
	}
	for _, c := range cases {
		var end []byte
		if !c.nilEnd {
			end = []byte(c.end)
		}
		got := keysOf(scan(t, s, []byte(c.start), end, c.limit))
		if !slices.Equal(got, c.want) && (len(got) != 0 || len(c.want) != 0) {
			t.Errorf("scan [%q, %q) limit %d = %q, want %q", c.start, end, c.limit, got, c.want)
		}
	}
	var got []kv.Pair
	if err := s.View(context.Background(), func(tx kv.Tx) error {
		var err error
		got, err = kv.ScanPrefix(tx, []byte("\xff"), 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0].Key) != "\xff\xff" {
		t.Errorf("scan of prefix 0xff = %q", keysOf(got))
	}
}

func testReadYourWrites(t *testing.T, open Opener) {
	s := openClosed(t, open)
	put(t, s, "r/gone", "x")
	if err := s.Update(context.Background(), func(tx kv.Tx) error {
		if err := tx.Put([]byte("r/new"), []byte("1")); err != nil {
			return err
		}
		if err := tx.Delete([]byte("r/gone")); err != nil {
			return err
		}
		if v, err := tx.Get([]byte("r/new")); err != nil || string(v) != "1" {
			return fmt.Errorf("get own write = %q, %v", v, err)
		}
		if _, err := tx.Get([]byte("r/gone")); !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("get own delete: %v, want kv.ErrNotFound", err)
		}
		pairs, err := kv.ScanPrefix(tx, []byte("r/"), 0)
		if err != nil {
			return err
		}
		if got := keysOf(pairs); !slices.Equal(got, []string{"r/new"}) {
			return fmt.Errorf("scan inside transaction = %q", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

var errAbort = errors.New("kvtest: abort")

func testAtomicity(t *testing.T, open Opener) {
	s := openClosed(t, open)
	put(t, s, "a/keep", "old")
	err := s.Update(context.Background(), func(tx kv.Tx) error {
		if err := tx.Put([]byte("a/keep"), []byte("new")); err != nil {
			return err
		}
		if err := tx.Put([]byte("a/added"), []byte("x")); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errAbort)
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("Update = %v, want the function's error", err)
	}
	mustGet(t, s, "a/keep", "old")
	mustMissing(t, s, "a/added")

	// A rejected write fails the whole transaction when fn returns its error.
	err = s.Update(context.Background(), func(tx kv.Tx) error {
		if err := tx.Put([]byte("a/keep"), []byte("new")); err != nil {
			return err
		}
		return tx.Put(nil, []byte("x"))
	})
	if !errors.Is(err, kv.ErrEmptyKey) {
		t.Fatalf("Update with bad key = %v, want kv.ErrEmptyKey", err)
	}
	mustGet(t, s, "a/keep", "old")
}

// testConcurrentFailures mixes failing and succeeding transactions so that backends which
// commit concurrent transactions together must keep each one atomic.
func testConcurrentFailures(t *testing.T, open Opener) {
	s := openClosed(t, open)
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(context.Background(), func(tx kv.Tx) error {
				if err := tx.Put(fmt.Appendf(nil, "f/%02d", i), []byte("x")); err != nil {
					return err
				}
				if i%3 == 0 {
					return errAbort
				}
				return nil
			})
		})
	}
	wg.Wait()
	for i := range n {
		key := fmt.Sprintf("f/%02d", i)
		if i%3 == 0 {
			if !errors.Is(errs[i], errAbort) {
				t.Errorf("failing Update %d = %v", i, errs[i])
			}
			mustMissing(t, s, key)
		} else {
			if errs[i] != nil {
				t.Errorf("Update %d = %v", i, errs[i])
			}
			mustGet(t, s, key, "x")
		}
	}
}

func testReadOnly(t *testing.T, open Opener) {
	s := openClosed(t, open)
	put(t, s, "ro/k", "v")
	if err := s.View(context.Background(), func(tx kv.Tx) error {
		if err := tx.Put([]byte("ro/k"), []byte("w")); !errors.Is(err, kv.ErrReadOnly) {
			return fmt.Errorf("put in view = %v, want kv.ErrReadOnly", err)
		}
		if err := tx.Delete([]byte("ro/k")); !errors.Is(err, kv.ErrReadOnly) {
			return fmt.Errorf("delete in view = %v, want kv.ErrReadOnly", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "ro/k", "v")
	err := s.View(context.Background(), func(kv.Tx) error { return errAbort })
	if !errors.Is(err, errAbort) {
		t.Fatalf("View = %v, want the function's error", err)
	}
}

func testTxDone(t *testing.T, open Opener) {
	s := openClosed(t, open)
	var leaked kv.Tx
	if err := s.Update(context.Background(), func(tx kv.Tx) error {
		leaked = tx
		return tx.Put([]byte("d/k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := leaked.Get([]byte("d/k")); !errors.Is(err, kv.ErrTxDone) {
		t.Errorf("Get after Update returned: %v, want kv.ErrTxDone", err)
	}
	if err := leaked.Put([]byte("d/k"), nil); !errors.Is(err, kv.ErrTxDone) {
		t.Errorf("Put after Update returned: %v, want kv.ErrTxDone", err)
	}
	if _, err := leaked.Scan(nil, nil, 0); !errors.Is(err, kv.ErrTxDone) {
		t.Errorf("Scan after Update returned: %v, want kv.ErrTxDone", err)
	}
	if err := s.View(context.Background(), func(tx kv.Tx) error { leaked = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := leaked.Get([]byte("d/k")); !errors.Is(err, kv.ErrTxDone) {
		t.Errorf("Get after View returned: %v, want kv.ErrTxDone", err)
	}
}

func testConcurrentIncrements(t *testing.T, open Opener) {
	s := openClosed(t, open)
	const workers, each = 16, 25
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range workers {
		wg.Go(func() {
			for range each {
				if err := s.Update(context.Background(), increment("i/counter")); err != nil {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d increments failed", n)
	}
	mustGet(t, s, "i/counter", fmt.Sprint(workers*each))
}

func increment(key string) func(kv.Tx) error {
	return func(tx kv.Tx) error {
		var n int
		v, err := tx.Get([]byte(key))
		switch {
		case errors.Is(err, kv.ErrNotFound):
		case err != nil:
			return err
		default:
			if _, err := fmt.Sscan(string(v), &n); err != nil {
				return err
			}
		}
		return tx.Put([]byte(key), []byte(fmt.Sprint(n+1)))
	}
}

var errNoneLeft = errors.New("kvtest: nothing left to claim")

// claim removes and returns the first key under prefix, the way one-time prekeys are
// handed out.
func claim(s kv.Store, prefix string) (string, error) {
	var got string
	err := s.Update(context.Background(), func(tx kv.Tx) error {
		pairs, err := kv.ScanPrefix(tx, []byte(prefix), 1)
		if err != nil {
			return err
		}
		if len(pairs) == 0 {
			return errNoneLeft
		}
		got = string(pairs[0].Key)
		return tx.Delete(pairs[0].Key)
	})
	return got, err
}

func testClaimOnce(t *testing.T, open Opener) {
	s := openClosed(t, open)
	const items, claimers = 40, 100
	if err := s.Update(context.Background(), func(tx kv.Tx) error {
		for i := range items {
			if err := tx.Put(fmt.Appendf(nil, "c/%03d", i), []byte("key")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	claimed := map[string]int{}
	empty := 0
	var wg sync.WaitGroup
	for range claimers {
		wg.Go(func() {
			k, err := claim(s, "c/")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, errNoneLeft):
				empty++
			case err != nil:
				t.Errorf("claim: %v", err)
			default:
				claimed[k]++
			}
		})
	}
	wg.Wait()
	if len(claimed) != items || empty != claimers-items {
		t.Fatalf("%d distinct keys claimed and %d claimers found none; want %d and %d",
			len(claimed), empty, items, claimers-items)
	}
	for k, n := range claimed {
		if n != 1 {
			t.Errorf("key %q claimed %d times", k, n)
		}
	}
}

func testClaimSameItem(t *testing.T, open Opener) {
	s := openClosed(t, open)
	for round := range 20 {
		key := fmt.Sprintf("one/%d", round)
		put(t, s, key, "prekey")
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				err := s.Update(context.Background(), func(tx kv.Tx) error {
					if _, err := tx.Get([]byte(key)); err != nil {
						return err
					}
					return tx.Delete([]byte(key))
				})
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, kv.ErrNotFound):
					t.Errorf("claim of %q: %v", key, err)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d claimers succeeded, want exactly 1", round, n)
		}
	}
}

// testSnapshotView moves value between two keys while readers check that the total never
// changes, which fails if a View sees part of an Update.
func testSnapshotView(t *testing.T, open Opener) {
	s := openClosed(t, open)
	put(t, s, "s/a", "100")
	put(t, s, "s/b", "0")
	read := func(tx kv.Tx, key string) (int, error) {
		v, err := tx.Get([]byte(key))
		if err != nil {
			return 0, err
		}
		var n int
		_, err = fmt.Sscan(string(v), &n)
		return n, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cancel()
		for i := range 100 {
			if err := s.Update(context.Background(), func(tx kv.Tx) error {
				a, err := read(tx, "s/a")
				if err != nil {
					return err
				}
				b, err := read(tx, "s/b")
				if err != nil {
					return err
				}
				d := 1 - 2*(i%2)
				if err := tx.Put([]byte("s/a"), []byte(fmt.Sprint(a-d))); err != nil {
					return err
				}
				return tx.Put([]byte("s/b"), []byte(fmt.Sprint(b+d)))
			}); err != nil {
				t.Errorf("transfer: %v", err)
				return
			}
		}
	})
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := s.View(context.Background(), func(tx kv.Tx) error {
					a, err := read(tx, "s/a")
					if err != nil {
						return err
					}
					b, err := read(tx, "s/b")
					if err != nil {
						return err
					}
					if a+b != 100 {
						return fmt.Errorf("view saw a=%d b=%d, total %d", a, b, a+b)
					}
					return nil
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func testReopen(t *testing.T, open Opener) {
	dir := t.TempDir()
	s := open(t, dir)
	put(t, s, "p/1", "one")
	put(t, s, "p/2", "two")
	if err := s.Update(context.Background(), func(tx kv.Tx) error { return tx.Delete([]byte("p/2")) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s = open(t, dir)
	defer s.Close()
	mustGet(t, s, "p/1", "one")
	mustMissing(t, s, "p/2")
}

func testClosed(t *testing.T, open Opener) {
	s := open(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := s.Update(context.Background(), func(kv.Tx) error { return nil }); !errors.Is(err, kv.ErrClosed) {
		t.Errorf("Update after Close = %v, want kv.ErrClosed", err)
	}
	if err := s.View(context.Background(), func(kv.Tx) error { return nil }); !errors.Is(err, kv.ErrClosed) {
		t.Errorf("View after Close = %v, want kv.ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, kv.ErrClosed) {
		t.Errorf("second Close = %v, want kv.ErrClosed", err)
	}
}

func testContextCanceled(t *testing.T, open Opener) {
	s := openClosed(t, open)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	if err := s.Update(ctx, func(kv.Tx) error { called = true; return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Update with canceled context = %v", err)
	}
	if err := s.View(ctx, func(kv.Tx) error { called = true; return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("View with canceled context = %v", err)
	}
	if called {
		t.Error("function ran despite a canceled context")
	}

	ctx, cancel = context.WithCancel(context.Background())
	err := s.Update(ctx, func(tx kv.Tx) error {
		if err := tx.Put([]byte("x/1"), []byte("v")); err != nil {
			return err
		}
		cancel()
		return tx.Put([]byte("x/2"), []byte("v"))
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update canceled midway = %v", err)
	}
	mustMissing(t, s, "x/1")
	mustMissing(t, s, "x/2")
}

func testBigValues(t *testing.T, open Opener) {
	s := openClosed(t, open)
	big := make([]byte, kv.MaxValueSize)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := s.Update(context.Background(), func(tx kv.Tx) error { return tx.Put([]byte("big/max"), big) }); err != nil {
		t.Fatalf("put of MaxValueSize value: %v", err)
	}
	v, err := get(t, s, "big/max")
	if err != nil || !bytes.Equal(v, big) {
		t.Fatalf("get of big value: %d bytes, %v", len(v), err)
	}
	err = s.Update(context.Background(), func(tx kv.Tx) error {
		return tx.Put([]byte("big/over"), make([]byte, kv.MaxValueSize+1))
	})
	if !errors.Is(err, kv.ErrValueTooLarge) {
		t.Fatalf("put of oversize value = %v, want kv.ErrValueTooLarge", err)
	}
	mustMissing(t, s, "big/over")
}

func testBadKeys(t *testing.T, open Opener) {
	s := openClosed(t, open)
	long := bytes.Repeat([]byte("k"), kv.MaxKeySize)
	if err := s.Update(context.Background(), func(tx kv.Tx) error { return tx.Put(long, []byte("v")) }); err != nil {
		t.Fatalf("put with MaxKeySize key: %v", err)
	}
	tooLong := append(long, 'k')
	bad := []struct {
		name string
		key  []byte
		want error
	}{
		{"nil", nil, kv.ErrEmptyKey},
		{"empty", []byte{}, kv.ErrEmptyKey},
		{"oversize", tooLong, kv.ErrKeyTooLarge},
	}
	for _, b := range bad {
		if err := s.Update(context.Background(), func(tx kv.Tx) error {
			if err := tx.Put(b.key, []byte("v")); !errors.Is(err, b.want) {
				return fmt.Errorf("put: %v", err)
			}
			if _, err := tx.Get(b.key); !errors.Is(err, b.want) {
				return fmt.Errorf("get: %v", err)
			}
			if err := tx.Delete(b.key); !errors.Is(err, b.want) {
				return fmt.Errorf("delete: %v", err)
			}
			return nil
		}); err != nil {
			t.Errorf("%s key: %v, want %v", b.name, err, b.want)
		}
	}
}
