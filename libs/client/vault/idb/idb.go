//go:build js && wasm

package idb

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall/js"

	"github.com/guardyn/guardyn/libs/client/vault"
)

// Object stores and keys.
const (
	storeProfile = "profile"
	storeState   = "state"
	storeHistory = "history"
	keyCreated   = "created"
	keyState     = "state"
	dbVersion    = 1
)

// Storage is a profile in one IndexedDB database.
type Storage struct {
	name string
	db   js.Value
}

var _ vault.Storage = (*Storage)(nil)

// Open opens (creating it if needed) the database called name, the profile's storage.
// Names are per origin: the app names one profile per account it holds.
func Open(name string) (*Storage, error) {
	factory := js.Global().Get("indexedDB")
	if factory.IsUndefined() || factory.IsNull() {
		return nil, errors.New("idb: this browser has no IndexedDB")
	}
	req := factory.Call("open", name, dbVersion)
	upgrade := js.FuncOf(func(this js.Value, args []js.Value) any {
		db := req.Get("result")
		names := db.Get("objectStoreNames")
		for _, s := range []string{storeProfile, storeState} {
			if !names.Call("contains", s).Bool() {
				db.Call("createObjectStore", s)
			}
		}
		if !names.Call("contains", storeHistory).Bool() {
			db.Call("createObjectStore", storeHistory, map[string]any{"autoIncrement": true})
		}
		return nil
	})
	defer upgrade.Release()
	req.Set("onupgradeneeded", upgrade)
	db, err := await(req, "open database "+name)
	if err != nil {
		return nil, err
	}
	return &Storage{name: name, db: db}, nil
}

// Close closes the database connection.
func (s *Storage) Close() { s.db.Call("close") }

// Delete deletes the database called name, the whole profile; it waits until no tab has
// the database open.
func Delete(name string) error {
	_, err := await(js.Global().Get("indexedDB").Call("deleteDatabase", name), "delete database "+name)
	return err
}

// await waits for an IDBRequest to succeed or fail and returns its result.
func await(req js.Value, what string) (js.Value, error) {
	done := make(chan struct{})
	var result js.Value
	var err error
	var once sync.Once
	finish := func(r js.Value, e error) {
		once.Do(func() {
			result, err = r, e
			close(done)
		})
	}
	onSuccess := js.FuncOf(func(js.Value, []js.Value) any {
		finish(req.Get("result"), nil)
		return nil
	})
	onError := js.FuncOf(func(_ js.Value, args []js.Value) any {
		finish(js.Undefined(), fmt.Errorf("idb: %s: %w", what, domError(req.Get("error"))))
		if len(args) > 0 {
			args[0].Call("preventDefault") // handled here: do not abort the transaction twice
		}
		return nil
	})
	defer onSuccess.Release()
	defer onError.Release()
	req.Set("onsuccess", onSuccess)
	req.Set("onerror", onError)
	<-done
	return result, err
}

// domError turns a DOMException into an error that names it.
func domError(e js.Value) error {
	if e.IsUndefined() || e.IsNull() {
		return errors.New("unknown error")
	}
	return fmt.Errorf("%s: %s", e.Get("name").String(), e.Get("message").String())
}

// tx runs fill in one transaction on stores and waits for the transaction to complete
// (readwrite: durably, with durability "strict"); it returns the transaction's error, or
// the first error fill reports after aborting it.
func (s *Storage) tx(mode string, stores []string, what string, fill func(tx js.Value) error) error {
	names := make([]any, len(stores))
	for i, n := range stores {
		names[i] = n
	}
	var t js.Value
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("idb: %s: %v", what, r)
			}
		}()
		t = s.db.Call("transaction", names, mode, map[string]any{"durability": "strict"})
	}()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	var once sync.Once
	finish := func(e error) { once.Do(func() { done <- e }) }
	onComplete := js.FuncOf(func(js.Value, []js.Value) any { finish(nil); return nil })
	onFail := js.FuncOf(func(js.Value, []js.Value) any {
		finish(fmt.Errorf("idb: %s: %w", what, domError(t.Get("error"))))
		return nil
	})
	defer onComplete.Release()
	defer onFail.Release()
	t.Set("oncomplete", onComplete)
	t.Set("onerror", onFail)
	t.Set("onabort", onFail)
	if ferr := fill(t); ferr != nil {
		func() {
			defer func() { recover() }() // already finished: nothing to abort
			t.Call("abort")
		}()
		<-done
		return ferr
	}
	return <-done
}

// get reads one key of one store in a read-only transaction.
func (s *Storage) get(store, key string) (js.Value, error) {
	var v js.Value
	err := s.tx("readonly", []string{store}, "read "+store, func(t js.Value) error {
		var err error
		v, err = await(t.Call("objectStore", store).Call("get", key), "read "+store)
		return err
	})
	return v, err
}

func bytesOf(v js.Value, what string) ([]byte, error) {
	if !v.InstanceOf(js.Global().Get("Uint8Array")) {
		return nil, fmt.Errorf("idb: %s is a %s, not bytes", what, v.Type())
	}
	n := v.Get("length").Int()
	if n > vault.MaxFileSize {
		return nil, fmt.Errorf("idb: %s holds %d bytes, over the limit of %d", what, n, vault.MaxFileSize)
	}
	b := make([]byte, n)
	js.CopyBytesToGo(b, v)
	return b, nil
}

func jsBytes(b []byte) js.Value {
	a := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(a, b)
	return a
}

// Init marks the profile as created.
func (s *Storage) Init() error {
	return s.tx("readwrite", []string{storeProfile}, "create profile", func(t js.Value) error {
		t.Call("objectStore", storeProfile).Call("put", true, keyCreated)
		return nil
	})
}

func (s *Storage) exists() (bool, error) {
	v, err := s.get(storeProfile, keyCreated)
	if err != nil {
		return false, err
	}
	return !v.IsUndefined(), nil
}

// Lock waits for the profile's exclusive Web Lock.
func (s *Storage) Lock() (func(), error) {
	ok, err := s.exists()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w in IndexedDB database %q", vault.ErrNotFound, s.name)
	}
	unlock, held, err := s.webLock("lock", false)
	if err == nil && !held {
		err = errors.New("idb: the profile lock was not granted")
	}
	return unlock, err
}

// LockReceiver takes the profile's receiver Web Lock if no tab holds it.
func (s *Storage) LockReceiver() (func(), error) {
	unlock, held, err := s.webLock("receiver", true)
	if err != nil {
		return nil, err
	}
	if !held {
		return nil, fmt.Errorf("%w (another tab of this browser)", vault.ErrReceiverRunning)
	}
	return unlock, nil
}

// webLock requests the exclusive Web Lock "guardyn:<database>:<which>"; with
// ifAvailable it does not wait, and reports whether it got the lock. The lock is held
// until the returned release resolves the promise the lock's callback returned.
func (s *Storage) webLock(which string, ifAvailable bool) (func(), bool, error) {
	locks := js.Global().Get("navigator").Get("locks")
	if locks.IsUndefined() || locks.IsNull() {
		return nil, false, errors.New("idb: this browser has no Web Locks API (navigator.locks; it needs a secure context)")
	}
	type grant struct {
		held    bool
		release func()
	}
	granted := make(chan grant, 1)
	failed := make(chan error, 1)
	released := make(chan struct{}) // closed when the request's promise settled
	var cb js.Func
	cb = js.FuncOf(func(_ js.Value, args []js.Value) any {
		cb.Release()
		if len(args) == 0 || args[0].IsNull() {
			granted <- grant{}
			return nil
		}
		// Hold the lock until release resolves this promise.
		var resolve js.Value
		var exec js.Func
		exec = js.FuncOf(func(_ js.Value, a []js.Value) any {
			resolve = a[0]
			return nil
		})
		p := js.Global().Get("Promise").New(exec)
		exec.Release()
		var once sync.Once
		granted <- grant{held: true, release: func() {
			once.Do(func() {
				resolve.Invoke()
				// The browser lets go once the request's own promise settles: wait for
				// it, so that a request right after release finds the lock free.
				<-released
			})
		}}
		return p
	})
	var onErr js.Func
	onErr = js.FuncOf(func(_ js.Value, args []js.Value) any {
		onErr.Release()
		err := errors.New("unknown error")
		if len(args) > 0 {
			err = domError(args[0])
		}
		failed <- fmt.Errorf("idb: take the %s lock: %w", which, err)
		return nil
	})
	opts := map[string]any{"mode": "exclusive"}
	if ifAvailable {
		opts["ifAvailable"] = true
	}
	var onSettled js.Func
	onSettled = js.FuncOf(func(js.Value, []js.Value) any {
		onSettled.Release()
		close(released)
		return nil
	})
	locks.Call("request", "guardyn:"+s.name+":"+which, opts, cb).Call("catch", onErr).Call("finally", onSettled)
	select {
	case g := <-granted:
		return g.release, g.held, nil
	case err := <-failed:
		return nil, false, err
	}
}

// ReadState returns the sealed state.
func (s *Storage) ReadState() ([]byte, error) {
	v, err := s.get(storeState, keyState)
	if err != nil {
		return nil, err
	}
	if v.IsUndefined() {
		return nil, fmt.Errorf("%w in IndexedDB database %q", vault.ErrNotFound, s.name)
	}
	return bytesOf(v, "the state")
}

// WriteState replaces the sealed state in one durable transaction.
func (s *Storage) WriteState(sealed []byte) error {
	return s.tx("readwrite", []string{storeState}, "write state", func(t js.Value) error {
		t.Call("objectStore", storeState).Call("put", jsBytes(sealed), keyState)
		return nil
	})
}

// ReadHistory returns the sealed records in append order.
func (s *Storage) ReadHistory() ([][]byte, error) {
	var out [][]byte
	err := s.tx("readonly", []string{storeHistory}, "read history", func(t js.Value) error {
		all, err := await(t.Call("objectStore", storeHistory).Call("getAll"), "read history")
		if err != nil {
			return err
		}
		n := all.Length()
		out = make([][]byte, 0, n)
		total := 0
		for i := range n {
			b, err := bytesOf(all.Index(i), "a history record")
			if err != nil {
				return err
			}
			if total += len(b); total > vault.MaxFileSize {
				return fmt.Errorf("idb: the history holds over %d bytes", vault.MaxFileSize)
			}
			out = append(out, b)
		}
		return nil
	})
	return out, err
}

// AppendHistory adds the records after the existing ones in one durable transaction.
func (s *Storage) AppendHistory(sealed [][]byte) error {
	return s.tx("readwrite", []string{storeHistory}, "append history", func(t js.Value) error {
		st := t.Call("objectStore", storeHistory)
		for _, r := range sealed {
			st.Call("add", jsBytes(r))
		}
		return nil
	})
}

// ReplaceHistory replaces every record in one durable transaction.
func (s *Storage) ReplaceHistory(sealed [][]byte) error {
	return s.tx("readwrite", []string{storeHistory}, "replace history", func(t js.Value) error {
		st := t.Call("objectStore", storeHistory)
		st.Call("clear")
		for _, r := range sealed {
			st.Call("add", jsBytes(r))
		}
		return nil
	})
}

// Remove deletes the state and the history in one durable transaction; the profile
// stays created (as Dir keeps its directory).
func (s *Storage) Remove() error {
	return s.tx("readwrite", []string{storeState, storeHistory}, "remove profile", func(t js.Value) error {
		t.Call("objectStore", storeState).Call("clear")
		t.Call("objectStore", storeHistory).Call("clear")
		return nil
	})
}

// Names lists the IndexedDB databases of this origin whose names start with prefix: the
// profiles an app keeps, when it names their databases with a prefix of its own.
func Names(prefix string) ([]string, error) {
	factory := js.Global().Get("indexedDB")
	if factory.IsUndefined() || factory.IsNull() {
		return nil, errors.New("idb: this browser has no IndexedDB")
	}
	dbs, err := awaitPromise(factory.Call("databases"), "list databases")
	if err != nil {
		return nil, err
	}
	var names []string
	for i := range dbs.Get("length").Int() {
		if n := dbs.Index(i).Get("name").String(); strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	return names, nil
}

// awaitPromise waits for a JavaScript promise to settle. Like every call of this package it
// blocks its goroutine, so it must not run inside a js.Func callback.
func awaitPromise(p js.Value, what string) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	done := make(chan result, 1)
	var onOK, onErr js.Func
	onOK = js.FuncOf(func(_ js.Value, args []js.Value) any {
		v := js.Undefined()
		if len(args) > 0 {
			v = args[0]
		}
		done <- result{v: v}
		return nil
	})
	onErr = js.FuncOf(func(_ js.Value, args []js.Value) any {
		err := errors.New("unknown error")
		if len(args) > 0 {
			err = domError(args[0])
		}
		done <- result{err: fmt.Errorf("idb: %s: %w", what, err)}
		return nil
	})
	defer onOK.Release()
	defer onErr.Release()
	p.Call("then", onOK, onErr)
	r := <-done
	return r.v, r.err
}
