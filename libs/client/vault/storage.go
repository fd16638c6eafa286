package vault

// Storage is where a Vault keeps its bytes: the sealed state, the sealed history records and
// the profile's two locks. The vault encrypts and authenticates everything before it reaches
// a Storage and checks everything it reads back, so a Storage owes it no secrecy, only
// durability and mutual exclusion. [Dir] keeps a profile in files for the command-line app;
// package idb (libs/client/vault/idb) keeps one in a browser's IndexedDB, locked with Web
// Locks; package vaulttest keeps one in memory for tests.
// Every implementation passes the suite of package vaulttest.
//
// The Vault calls ReadState, WriteState, ReadHistory, AppendHistory, ReplaceHistory and
// Remove only while it holds the lock Lock returned.
type Storage interface {
	// Init prepares the storage of a new profile (Dir creates its directory); Create calls
	// it before anything else. It must not touch an existing profile.
	Init() error
	// Lock waits until the caller holds the profile's exclusive lock, across every process
	// sharing the storage, and returns its release. The lock is held for one load-modify-save
	// cycle. It fails with an error wrapping ErrNotFound when there is no profile to lock.
	Lock() (unlock func(), err error)
	// ReadState returns the sealed state, or an error wrapping ErrNotFound when there is
	// none. It refuses more than MaxFileSize bytes.
	ReadState() ([]byte, error)
	// WriteState replaces the sealed state atomically and durably: once it returns, a crash
	// leaves the new bytes; if it fails or a crash interrupts it, the old bytes or the new.
	WriteState(sealed []byte) error
	// ReadHistory returns the sealed history records in the order they were appended (none
	// for a profile without history). A record torn by a crash is left out.
	ReadHistory() ([][]byte, error)
	// AppendHistory appends sealed records after the existing ones, durably, before it
	// returns.
	AppendHistory(sealed [][]byte) error
	// ReplaceHistory replaces all history records with sealed, atomically and durably.
	ReplaceHistory(sealed [][]byte) error
	// Remove deletes the state and the history.
	Remove() error
	// LockReceiver takes the profile's receiver lock without waiting, for as long as a
	// process receives for the device, and returns its release. It fails with an error
	// wrapping ErrReceiverRunning when another holder has it. The lock must not outlive its
	// holder (Dir's goes when the process ends).
	LockReceiver() (unlock func(), err error)
}
