// Package idb keeps a client profile's vault in the browser's IndexedDB: a
// [vault.Storage] for the web app (GOOS=js GOARCH=wasm), as [vault.Dir] is for the
// command-line app. The vault seals everything before it gets here, so the database holds
// ciphertext only (a test reads it raw and finds no plaintext).
//
// One profile is one database. Its object stores:
//
//	profile  "created" → true once Init ran (the profile's directory, in Dir's terms)
//	state    "state"   → the sealed state (Uint8Array)
//	history  auto-increment key → one sealed history record (Uint8Array), in append order
//
// Every write is one readwrite transaction with durability "strict" and returns once the
// transaction completed (its oncomplete): the browser has flushed it to disk, so a closed
// tab or a crash after it keeps the bytes, and one during it keeps none of them.
//
// The two locks are Web Locks (navigator.locks), which the browser holds for the whole
// origin, across tabs and workers: two tabs of one profile behave as two processes
// sharing a profile directory. Lock waits in the lock's queue; LockReceiver asks with
// ifAvailable and fails with vault.ErrReceiverRunning when another tab receives. A lock
// goes when its tab closes, as a flock goes with its process.
//
// Every method blocks the calling goroutine until the browser answers: call them from a
// goroutine of their own, never from inside a js.Func callback (which would deadlock the
// browser's event loop).
//
// The package builds for js/wasm only; its tests run in headless chromium
// (tools/browsertest), driven by a native test of this directory.
package idb
