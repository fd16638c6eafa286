// Package kv defines the transactional key-value store that Guardyn services keep their
// durable state in (accounts, devices, key bundles, one-time prekeys, group epochs); see
// docs/storage.md.
//
// A [Store] runs serializable transactions over byte keys ordered lexicographically. The
// embedded backend (kv/embedded) keeps everything in one file of the data dir; cluster
// backends (TiKV) plug in behind the same interface, and every backend passes the suite in
// kv/kvtest.
//
// Keys are namespaced by the calling service with a prefix ending in '/', for example
// "auth/device/<id>" or "msg/group/<id>/epoch", so services sharing one store never collide
// and each can scan its own range with [PrefixEnd].
package kv

import (
	"context"
	"errors"
)

// Limits every backend enforces. They sit below TiKV's entry limits so data written to the
// embedded store can always move to a cluster.
const (
	// MaxKeySize is the largest key accepted, in bytes.
	MaxKeySize = 4 << 10
	// MaxValueSize is the largest value accepted, in bytes.
	MaxValueSize = 4 << 20
)

// Errors returned by every backend; test for them with errors.Is.
var (
	// ErrNotFound means the key has no value.
	ErrNotFound = errors.New("kv: key not found")
	// ErrEmptyKey means a nil or empty key was passed.
	ErrEmptyKey = errors.New("kv: empty key")
	// ErrKeyTooLarge means a key is longer than MaxKeySize.
	ErrKeyTooLarge = errors.New("kv: key too large")
	// ErrValueTooLarge means a value is longer than MaxValueSize.
	ErrValueTooLarge = errors.New("kv: value too large")
	// ErrReadOnly means a write was attempted inside View.
	ErrReadOnly = errors.New("kv: write in read-only transaction")
	// ErrTxDone means a Tx was used after its function returned.
	ErrTxDone = errors.New("kv: transaction already finished")
	// ErrConflict means a transaction kept conflicting with concurrent writers and the
	// backend gave up retrying it; nothing was written.
	ErrConflict = errors.New("kv: transaction conflict")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("kv: store closed")
	// ErrUnavailable means a cluster backend could not be reached or did not answer in
	// time. The transaction is atomic all the same: none of its writes were kept, or,
	// when the cluster failed while committing, possibly all of them. The caller may
	// retry; services answer it with UNAVAILABLE and the reason STORE_UNAVAILABLE.
	ErrUnavailable = errors.New("kv: store unavailable")
)

// Store runs transactions. It is safe for concurrent use.
type Store interface {
	// Update runs fn in a read-write transaction and commits it if fn returns nil. When
	// Update returns nil the writes are durable: they survive a crash of the process or
	// the machine. If fn returns an error nothing it wrote is kept and Update returns
	// that error unchanged.
	//
	// Transactions are serializable. The backend retries on conflicts itself, so fn may
	// be called more than once and must have no effects outside the Tx other than
	// assigning results to variables it owns. fn must not call the Store itself: a
	// nested transaction may wait for the one it is nested in. If ctx is done before fn starts, Update
	// returns ctx.Err() without running it; Tx methods also fail with ctx.Err() once ctx
	// is done.
	Update(ctx context.Context, fn func(Tx) error) error

	// View runs fn in a read-only transaction that sees one consistent snapshot.
	// Writes fail with ErrReadOnly.
	View(ctx context.Context, fn func(Tx) error) error

	// Close waits for pending transactions and releases the store. Later calls fail
	// with ErrClosed.
	Close() error
}

// Tx is a transaction handed to Update or View. It is valid only until the function it
// was passed to returns and must not be used from other goroutines.
type Tx interface {
	// Get returns a copy of the value stored at key, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Put stores value at key. Both are copied; value may be empty.
	Put(key, value []byte) error
	// Delete removes key. Deleting a missing key is not an error.
	Delete(key []byte) error
	// Scan returns up to limit pairs with start <= key < end in ascending key order.
	// An empty start means the first key, a nil end means no upper bound and limit <= 0
	// means no limit. Returned slices are copies.
	Scan(start, end []byte, limit int) ([]Pair, error)
}

// Pair is one key and its value, as returned by Tx.Scan.
type Pair struct {
	Key   []byte
	Value []byte
}

// CheckKey reports whether key is acceptable to every backend.
func CheckKey(key []byte) error {
	switch {
	case len(key) == 0:
		return ErrEmptyKey
	case len(key) > MaxKeySize:
		return ErrKeyTooLarge
	}
	return nil
}

// CheckValue reports whether value is acceptable to every backend.
func CheckValue(value []byte) error {
	if len(value) > MaxValueSize {
		return ErrValueTooLarge
	}
	return nil
}

// PrefixEnd returns the smallest key greater than every key starting with prefix, for
// use as the end of a Scan over prefix. It returns nil (no upper bound) when no such key
// exists, that is when prefix is empty or all 0xff bytes.
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// ScanPrefix returns up to limit pairs whose keys start with prefix, in key order.
func ScanPrefix(tx Tx, prefix []byte, limit int) ([]Pair, error) {
	return tx.Scan(prefix, PrefixEnd(prefix), limit)
}
