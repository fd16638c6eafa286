// Package vaulttest is the conformance suite every [vault.Storage] runs, and [Memory], a
// Storage in memory for tests of the code above the vault (package client's among them).
package vaulttest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/guardyn/guardyn/libs/client/vault"
)

// Params are cheap scrypt parameters, so the suite stays fast.
var Params = vault.Params{LogN: vault.MinLogN, R: 8, P: 1}

var pass = []byte("vaulttest passphrase")

// Opener returns the storage of a new, empty profile. The suite uses the one value from
// several goroutines at once, as several processes share one profile directory.
type Opener func(tb testing.TB) vault.Storage

// Run runs the conformance suite against the storage open returns.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"Empty", testEmpty},
		{"RoundTrip", testRoundTrip},
		{"CreateRefusesExisting", testCreateRefusesExisting},
		{"History", testHistory},
		{"ReplaceHistory", testReplaceHistory},
		{"ReturnsCopies", testReturnsCopies},
		{"ConcurrentUpdatesSerialize", testConcurrentUpdatesSerialize},
		{"OneReceiver", testOneReceiver},
		{"Remove", testRemove},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

func create(tb testing.TB, s vault.Storage, initial string) *vault.Vault {
	tb.Helper()
	v, err := vault.Create(s, pass, Params, []byte(initial))
	if err != nil {
		tb.Fatalf("create: %v", err)
	}
	tb.Cleanup(v.Close)
	return v
}

func open(tb testing.TB, s vault.Storage) *vault.Vault {
	tb.Helper()
	v, err := vault.Open(s, pass)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(v.Close)
	return v
}

// locked runs fn under the storage's lock.
func locked(tb testing.TB, s vault.Storage, fn func()) {
	tb.Helper()
	unlock, err := s.Lock()
	if err != nil {
		tb.Fatalf("lock: %v", err)
	}
	defer unlock()
	fn()
}

func testEmpty(t *testing.T, open Opener) {
	s := open(t)
	if vault.Exists(s) {
		t.Fatal("Exists on a new storage")
	}
	if _, err := vault.Open(s, pass); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("Open of a new storage: %v, want ErrNotFound", err)
	}
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	locked(t, s, func() {
		if _, err := s.ReadState(); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("ReadState of a new profile: %v, want ErrNotFound", err)
		}
		if h, err := s.ReadHistory(); err != nil || len(h) != 0 {
			t.Errorf("ReadHistory of a new profile = %d records, %v", len(h), err)
		}
	})
}

func testRoundTrip(t *testing.T, opener Opener) {
	s := opener(t)
	v := create(t, s, "first")
	if !vault.Exists(s) {
		t.Fatal("Exists after Create = false")
	}
	if err := v.Update(func([]byte) ([]byte, error) { return []byte("second"), nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := v.Update(func([]byte) ([]byte, error) { return []byte("third"), boom }); !errors.Is(err, boom) {
		t.Fatalf("failing update: %v", err)
	}
	w := open(t, s)
	if got, err := w.Read(); err != nil || string(got) != "second" {
		t.Fatalf("Read after reopening = %q, %v; want second", got, err)
	}
	if _, err := vault.Open(s, []byte("another passphrase")); !errors.Is(err, vault.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	// What the storage holds is sealed: the contents do not appear in it.
	locked(t, s, func() {
		sealed, err := s.ReadState()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(sealed, []byte("second")) {
			t.Error("the stored state holds the plaintext")
		}
		if _, _, err := vault.ParseHeader(sealed); err != nil {
			t.Errorf("stored state: %v", err)
		}
	})
}

func testCreateRefusesExisting(t *testing.T, open Opener) {
	s := open(t)
	create(t, s, "mine")
	if _, err := vault.Create(s, pass, Params, []byte("theirs")); !errors.Is(err, vault.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
}

func appendRecords(tb testing.TB, v *vault.Vault, records ...string) {
	tb.Helper()
	var rs [][]byte
	for _, r := range records {
		rs = append(rs, []byte(r))
	}
	if err := v.UpdateAppend(func(cur []byte) ([]byte, [][]byte, error) { return cur, rs, nil }); err != nil {
		tb.Fatal(err)
	}
}

func history(tb testing.TB, v *vault.Vault) string {
	tb.Helper()
	rs, err := v.History()
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, string(r))
	}
	return fmt.Sprint(out)
}

func testHistory(t *testing.T, opener Opener) {
	s := opener(t)
	v := create(t, s, "state")
	appendRecords(t, v, "one", "two")
	appendRecords(t, v, "three")
	if got := history(t, open(t, s)); got != "[one two three]" {
		t.Fatalf("history = %s", got)
	}
	locked(t, s, func() {
		sealed, err := s.ReadHistory()
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != 3 {
			t.Fatalf("%d sealed records, want 3", len(sealed))
		}
		for _, r := range sealed {
			if bytes.Contains(r, []byte("one")) || bytes.Contains(r, []byte("two")) {
				t.Errorf("a stored record holds its plaintext: %q", r)
			}
		}
	})
}

func testReplaceHistory(t *testing.T, open Opener) {
	s := open(t)
	v := create(t, s, "state")
	appendRecords(t, v, "one", "two", "three")
	locked(t, s, func() {
		sealed, err := s.ReadHistory()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ReplaceHistory(sealed[1:]); err != nil {
			t.Fatal(err)
		}
	})
	if got := history(t, v); got != "[two three]" {
		t.Fatalf("history after ReplaceHistory = %s", got)
	}
	appendRecords(t, v, "four")
	if got := history(t, v); got != "[two three four]" {
		t.Fatalf("history after another append = %s", got)
	}
}

// testReturnsCopies: changing the bytes a Storage returned, or was given, changes nothing
// stored (the vault reuses its buffers).
func testReturnsCopies(t *testing.T, open Opener) {
	s := open(t)
	v := create(t, s, "state")
	appendRecords(t, v, "one")
	locked(t, s, func() {
		st, err := s.ReadState()
		if err != nil {
			t.Fatal(err)
		}
		given := bytes.Clone(st)
		if err := s.WriteState(given); err != nil {
			t.Fatal(err)
		}
		clear(given)
		clear(st)
		h, err := s.ReadHistory()
		if err != nil {
			t.Fatal(err)
		}
		rec := bytes.Clone(h[0])
		clear(h[0])
		if err := s.AppendHistory([][]byte{rec}); err != nil {
			t.Fatal(err)
		}
		clear(rec)
	})
	if got, err := v.Read(); err != nil || string(got) != "state" {
		t.Fatalf("Read = %q, %v after clearing the bytes given and returned", got, err)
	}
	if got := history(t, v); got != "[one one]" {
		t.Fatalf("history = %s after clearing the records given and returned", got)
	}
}

// testConcurrentUpdatesSerialize runs load-modify-save cycles from several Vaults at once on
// one storage, as separate processes would: the lock must serialize them, so no increment
// is lost.
func testConcurrentUpdatesSerialize(t *testing.T, opener Opener) {
	s := opener(t)
	create(t, s, string(binary.BigEndian.AppendUint64(nil, 0)))
	const workers, rounds = 4, 25
	var wg sync.WaitGroup
	for range workers {
		w := open(t, s)
		wg.Go(func() {
			for range rounds {
				if err := w.UpdateAppend(func(cur []byte) ([]byte, [][]byte, error) {
					n := binary.BigEndian.Uint64(cur)
					runtime.Gosched() // let another cycle run here, if the lock allows it
					return binary.BigEndian.AppendUint64(nil, n+1), [][]byte{fmt.Appendf(nil, "%d", n)}, nil
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	r := open(t, s)
	got, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.BigEndian.Uint64(got); n != workers*rounds {
		t.Fatalf("counter = %d, want %d: an update was lost", n, workers*rounds)
	}
	rs, err := r.History()
	if err != nil {
		t.Fatal(err)
	}
	for i, rec := range rs {
		if string(rec) != fmt.Sprint(i) {
			t.Fatalf("history record %d = %q: appends interleaved", i, rec)
		}
	}
}

// testOneReceiver: a second receiver is refused until the first lets go, while state
// updates go on beside it.
func testOneReceiver(t *testing.T, opener Opener) {
	s := opener(t)
	v := create(t, s, "s")
	unlock, err := v.LockReceiver()
	if err != nil {
		t.Fatal(err)
	}
	w := open(t, s)
	if _, err := w.LockReceiver(); !errors.Is(err, vault.ErrReceiverRunning) {
		t.Fatalf("second LockReceiver: %v, want ErrReceiverRunning", err)
	}
	if err := w.Update(func([]byte) ([]byte, error) { return []byte("t"), nil }); err != nil {
		t.Fatalf("update beside a receiver: %v", err)
	}
	unlock()
	unlock2, err := w.LockReceiver()
	if err != nil {
		t.Fatalf("LockReceiver after release: %v", err)
	}
	unlock2()
}

func testRemove(t *testing.T, opener Opener) {
	s := opener(t)
	v := create(t, s, "x")
	appendRecords(t, v, "gone")
	if err := v.Destroy(); err != nil {
		t.Fatal(err)
	}
	if vault.Exists(s) {
		t.Fatal("Exists after Destroy")
	}
	if _, err := v.Read(); err == nil {
		t.Fatal("Read after Destroy succeeded")
	}
	w := create(t, s, "again")
	if got := history(t, w); got != "[]" {
		t.Fatalf("history of a profile created after Destroy = %s", got)
	}
}
