package vaulttest

import (
	"bytes"
	"errors"
	"slices"
	"sync"

	"github.com/guardyn/guardyn/libs/client/vault"
)

// Memory is a vault.Storage in memory: Vaults opened on one Memory share a profile as
// processes share a profile directory. It checks its side of the contract's calling rules:
// a write without the lock fails.
type Memory struct {
	lock chan struct{} // holds one token while the lock is held

	mu        sync.Mutex
	exists    bool
	state     []byte
	history   [][]byte
	receiving bool
}

var _ vault.Storage = (*Memory)(nil)

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{lock: make(chan struct{}, 1)} }

var errUnlocked = errors.New("vaulttest: write without the profile lock")

// Init makes the profile exist.
func (m *Memory) Init() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.exists = true
	return nil
}

// Lock waits for the lock; it fails with vault.ErrNotFound before Init.
func (m *Memory) Lock() (func(), error) {
	m.mu.Lock()
	exists := m.exists
	m.mu.Unlock()
	if !exists {
		return nil, vault.ErrNotFound
	}
	m.lock <- struct{}{}
	var once sync.Once
	return func() { once.Do(func() { <-m.lock }) }, nil
}

func (m *Memory) locked() bool { return len(m.lock) == 1 }

// ReadState returns a copy of the state.
func (m *Memory) ReadState() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == nil {
		return nil, vault.ErrNotFound
	}
	return bytes.Clone(m.state), nil
}

// WriteState keeps a copy of sealed.
func (m *Memory) WriteState(sealed []byte) error {
	if !m.locked() {
		return errUnlocked
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state = bytes.Clone(sealed)
	return nil
}

// ReadHistory returns copies of the records.
func (m *Memory) ReadHistory() ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return cloneAll(m.history), nil
}

// AppendHistory keeps copies of sealed after the records.
func (m *Memory) AppendHistory(sealed [][]byte) error {
	if !m.locked() {
		return errUnlocked
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.history = append(m.history, cloneAll(sealed)...)
	return nil
}

// ReplaceHistory keeps copies of sealed instead of the records.
func (m *Memory) ReplaceHistory(sealed [][]byte) error {
	if !m.locked() {
		return errUnlocked
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.history = cloneAll(sealed)
	return nil
}

// Remove forgets the state and history.
func (m *Memory) Remove() error {
	if !m.locked() {
		return errUnlocked
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state, m.history = nil, nil
	return nil
}

// LockReceiver takes the receiver lock, or fails with vault.ErrReceiverRunning.
func (m *Memory) LockReceiver() (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.receiving {
		return nil, vault.ErrReceiverRunning
	}
	m.receiving = true
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			m.receiving = false
			m.mu.Unlock()
		})
	}, nil
}

func cloneAll(records [][]byte) [][]byte {
	out := slices.Clone(records)
	for i, r := range out {
		out[i] = bytes.Clone(r)
	}
	return out
}
