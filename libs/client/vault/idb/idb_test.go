//go:build js && wasm

package idb_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall/js"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/client/vault"
	"github.com/guardyn/guardyn/libs/client/vault/idb"
	"github.com/guardyn/guardyn/libs/client/vault/vaulttest"
)

var dbs atomic.Int64

// newStorage opens a fresh database, closed and deleted when tb ends.
func newStorage(tb testing.TB) (*idb.Storage, string) {
	tb.Helper()
	name := fmt.Sprintf("guardyn-test-%d", dbs.Add(1))
	s, err := idb.Open(name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Close()
		if err := idb.Delete(name); err != nil {
			tb.Errorf("delete %s: %v", name, err)
		}
	})
	return s, name
}

// TestConformance: IndexedDB with Web Locks passes the suite every vault.Storage passes.
func TestConformance(t *testing.T) {
	vaulttest.Run(t, func(tb testing.TB) vault.Storage {
		s, _ := newStorage(tb)
		return s
	})
}

// TestTwoConnectionsShareLocks: two connections to one database (two tabs of one
// profile) exclude each other as two processes do.
func TestTwoConnectionsShareLocks(t *testing.T) {
	a, name := newStorage(t)
	b, err := idb.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v, err := vault.Create(a, []byte("pass"), vaulttest.Params, []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	unlock, err := a.LockReceiver()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.LockReceiver(); !errors.Is(err, vault.ErrReceiverRunning) {
		t.Fatalf("second tab's LockReceiver: %v, want ErrReceiverRunning", err)
	}
	unlock()
	unlockA, err := a.Lock()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		unlockB, err := b.Lock()
		if err != nil {
			t.Error(err)
		} else {
			unlockB()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("the second tab took the profile lock while the first held it")
	case <-time.After(200 * time.Millisecond):
	}
	unlockA()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the second tab never got the profile lock after the first let go")
	}
}

// TestWrongPassphrase: the vault's own check refuses a wrong passphrase over IndexedDB.
func TestWrongPassphrase(t *testing.T) {
	s, _ := newStorage(t)
	v, err := vault.Create(s, []byte("right"), vaulttest.Params, []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if _, err := vault.Open(s, []byte("wrong")); !errors.Is(err, vault.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v, want vault.ErrWrongPassphrase", err)
	}
	w, err := vault.Open(s, []byte("right"))
	if err != nil {
		t.Fatalf("right passphrase: %v", err)
	}
	w.Close()
}

// rawDump reads every key and value of every object store of database name with
// IndexedDB itself (not this package), as someone with the browser's disk would, and
// returns their bytes (strings as UTF-8) and how many values there were.
func rawDump(t *testing.T, name string) ([]byte, int) {
	t.Helper()
	done := make(chan struct{})
	var out []byte
	var values int
	var failure string
	var cbs []js.Func
	fn := func(f func(js.Value, []js.Value) any) js.Func {
		c := js.FuncOf(f)
		cbs = append(cbs, c)
		return c
	}
	defer func() {
		for _, c := range cbs {
			c.Release()
		}
	}()
	add := func(v js.Value) {
		switch {
		case v.InstanceOf(js.Global().Get("Uint8Array")):
			b := make([]byte, v.Length())
			js.CopyBytesToGo(b, v)
			out = append(out, b...)
		case v.Type() == js.TypeString:
			out = append(out, v.String()...)
		default:
			out = append(out, js.Global().Get("JSON").Call("stringify", v).String()...)
		}
	}
	req := js.Global().Get("indexedDB").Call("open", name)
	req.Set("onerror", fn(func(js.Value, []js.Value) any { failure = "open failed"; close(done); return nil }))
	req.Set("onsuccess", fn(func(js.Value, []js.Value) any {
		db := req.Get("result")
		names := db.Get("objectStoreNames")
		n := names.Length()
		if n == 0 {
			failure = "no object stores"
			close(done)
			return nil
		}
		stores := make([]any, n)
		for i := range n {
			stores[i] = names.Index(i)
		}
		tx := db.Call("transaction", stores, "readonly")
		for i := range n {
			st := tx.Call("objectStore", names.Index(i))
			st.Call("getAllKeys").Set("onsuccess", fn(func(this js.Value, _ []js.Value) any {
				keys := this.Get("result")
				for k := range keys.Length() {
					add(keys.Index(k))
				}
				return nil
			}))
			st.Call("getAll").Set("onsuccess", fn(func(this js.Value, _ []js.Value) any {
				vals := this.Get("result")
				for k := range vals.Length() {
					values++
					add(vals.Index(k))
				}
				return nil
			}))
		}
		tx.Set("oncomplete", fn(func(js.Value, []js.Value) any { db.Call("close"); close(done); return nil }))
		return nil
	}))
	<-done
	if failure != "" {
		t.Fatal(failure)
	}
	return out, values
}

// TestNothingReadableAtRest: after a session that saved names, message bodies and keys,
// the raw database holds none of them: every value is sealed.
func TestNothingReadableAtRest(t *testing.T) {
	s, name := newStorage(t)
	key := bytes.Repeat([]byte{0x5a, 0xc3, 0x17, 0x99}, 8) // a 32-byte "identity key"
	state := fmt.Appendf(nil, `{"username":"alice-at-rest","contacts":{"bob-at-rest":{}},"identity":%q}`, key)
	state = append(state, key...)
	v, err := vault.Create(s, []byte("passphrase"), vaulttest.Params, state)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	records := [][]byte{
		[]byte(`{"peer":"bob-at-rest","body":"meet me at the old mill at noon"}`),
		[]byte(`{"peer":"bob-at-rest","body":"bring the second key"}`),
	}
	if err := v.UpdateAppend(func(cur []byte) ([]byte, [][]byte, error) { return cur, records, nil }); err != nil {
		t.Fatal(err)
	}
	raw, values := rawDump(t, name)
	// The created mark, the state and two records: the dump saw the whole profile.
	if values != 4 {
		t.Fatalf("the raw database holds %d values, want 4 (mark, state, two records)", values)
	}
	for _, secret := range [][]byte{[]byte("alice-at-rest"), []byte("bob-at-rest"), []byte("old mill"), []byte("second key"), key, key[:8]} {
		if bytes.Contains(raw, secret) {
			t.Errorf("the raw database holds %q in the clear", secret)
		}
	}
	// And the dump is not blind: the sealed state is there under its magic.
	if !bytes.Contains(raw, []byte("GDYNSTATE")) {
		t.Error("the raw dump lacks the sealed state's header: it read nothing")
	}
}

// TestUnlockTimeDefaultParams creates and opens a vault with the default scrypt
// parameters in the browser and prints the unlock time, for the native test beside it to
// compare (docs/web.md).
func TestUnlockTimeDefaultParams(t *testing.T) {
	s, _ := newStorage(t)
	v, err := vault.Create(s, []byte("passphrase"), vault.DefaultParams, []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	const runs = 3
	var best time.Duration
	for i := range runs {
		start := time.Now()
		w, err := vault.Open(s, []byte("passphrase"))
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		if i == 0 || took < best {
			best = took
		}
	}
	fmt.Printf("UNLOCK_DEFAULT_PARAMS_NS=%d\n", best.Nanoseconds())
}
