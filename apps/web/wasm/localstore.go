//go:build js && wasm

package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"syscall/js"

	"github.com/guardyn/guardyn/libs/client/vault"
)

// localStore is a vault.Storage in the browser's localStorage, one profile under one key
// prefix. It holds only what the vault sealed (the vault encrypts and authenticates
// everything before a Storage sees it), base64-encoded because localStorage keeps strings.
//
// It is the app's storage until the IndexedDB one (libs/client/vault/idb) lands, and is
// made in one place (newStorage) so that swapping it is one line. Its locks are this tab's
// only: two tabs of one profile would not exclude each other, which the IndexedDB storage
// fixes with Web Locks.
type localStore struct {
	ls     js.Value
	prefix string
	mu     chan struct{} // the profile lock, held for one load-modify-save cycle
	recvMu sync.Mutex
	recv   bool
}

var _ vault.Storage = (*localStore)(nil)

// storePrefix is the localStorage key prefix of every profile.
const storePrefix = "guardyn/profile/"

func newLocalStore(profile string) *localStore {
	return &localStore{ls: js.Global().Get("localStorage"), prefix: storePrefix + profile + "/", mu: make(chan struct{}, 1)}
}

func (s *localStore) get(key string) (string, bool) {
	v := s.ls.Call("getItem", s.prefix+key)
	if v.IsNull() {
		return "", false
	}
	return v.String(), true
}

// set stores a value; localStorage throws when its quota is exhausted, which becomes an error.
func (s *localStore) set(key, value string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("localstore: write %s: %v", key, r)
		}
	}()
	s.ls.Call("setItem", s.prefix+key, value)
	return nil
}

// Init marks the profile as present, so that Lock works before the first state is written
// (as Dir's directory does).
func (s *localStore) Init() error {
	if _, ok := s.get("state"); ok {
		return fmt.Errorf("localstore: profile %q exists", s.prefix)
	}
	return s.set("init", "1")
}

func (s *localStore) Lock() (func(), error) {
	if _, ok := s.get("init"); !ok {
		return nil, fmt.Errorf("localstore: lock: %w", vault.ErrNotFound)
	}
	s.mu <- struct{}{}
	return func() { <-s.mu }, nil
}

func (s *localStore) ReadState() ([]byte, error) {
	v, ok := s.get("state")
	if !ok {
		return nil, fmt.Errorf("localstore: %w", vault.ErrNotFound)
	}
	if base64.StdEncoding.DecodedLen(len(v)) > vault.MaxFileSize {
		return nil, fmt.Errorf("localstore: state of %d bytes exceeds %d", len(v), vault.MaxFileSize)
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("localstore: decode state: %w", err)
	}
	return b, nil
}

func (s *localStore) WriteState(sealed []byte) error {
	return s.set("state", base64.StdEncoding.EncodeToString(sealed))
}

func (s *localStore) ReadHistory() ([][]byte, error) {
	v, ok := s.get("history")
	if !ok {
		return nil, nil
	}
	var records [][]byte // encoding/json keeps []byte as base64
	if err := json.Unmarshal([]byte(v), &records); err != nil {
		return nil, fmt.Errorf("localstore: decode history: %w", err)
	}
	return records, nil
}

func (s *localStore) AppendHistory(sealed [][]byte) error {
	records, err := s.ReadHistory()
	if err != nil {
		return err
	}
	return s.ReplaceHistory(append(records, sealed...))
}

func (s *localStore) ReplaceHistory(sealed [][]byte) error {
	b, err := json.Marshal(sealed)
	if err != nil {
		return err
	}
	return s.set("history", string(b))
}

func (s *localStore) Remove() error {
	s.ls.Call("removeItem", s.prefix+"state")
	s.ls.Call("removeItem", s.prefix+"history")
	s.ls.Call("removeItem", s.prefix+"init")
	return nil
}

func (s *localStore) LockReceiver() (func(), error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	if s.recv {
		return nil, vault.ErrReceiverRunning
	}
	s.recv = true
	return func() {
		s.recvMu.Lock()
		s.recv = false
		s.recvMu.Unlock()
	}, nil
}

// localProfiles lists the profiles kept in localStorage.
func localProfiles() []string {
	ls := js.Global().Get("localStorage")
	var out []string
	for i := range ls.Get("length").Int() {
		k := ls.Call("key", i).String()
		if len(k) > len(storePrefix) && k[:len(storePrefix)] == storePrefix {
			rest := k[len(storePrefix):]
			for j := len(rest) - 1; j >= 0; j-- {
				if rest[j] == '/' {
					if rest[j+1:] == "state" {
						out = append(out, rest[:j])
					}
					break
				}
			}
		}
	}
	return out
}
