// Package blobstore defines where the media service keeps ciphertext: resumable uploads
// that grow by appends at their end and are committed by syncs, and immutable blobs named
// by the SHA-256 of their bytes; see docs/storage.md.
//
// The store never interprets the bytes: clients encrypt files before upload
// (libs/crypto/filecrypt). Ownership, quotas and expiry are the media service's business,
// kept in its kv records; a Store only holds bytes and answers for their durability: what
// a Sync reported committed survives a crash of the process or the machine.
//
// The embedded backend (blobstore/embedded) keeps one file per upload and per blob in the
// data dir; the cluster backend (blobstore/cql: chunk tables on Cassandra or ScyllaDB)
// plugs in behind the same interface, and every backend passes the suite in
// blobstore/blobstoretest.
package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Limits every backend enforces.
const (
	// MaxAppendSize is the largest Append, in bytes (the API's largest chunk).
	MaxAppendSize = 1 << 20
	// MaxUploadIDSize is the longest upload id, in bytes.
	MaxUploadIDSize = 64
)

// Errors returned by every backend; test for them with errors.Is.
var (
	// ErrInvalid means an argument is malformed; the error wrapping it names it.
	ErrInvalid = errors.New("blobstore: invalid argument")
	// ErrNotFound means no upload or blob has that name.
	ErrNotFound = errors.New("blobstore: not found")
	// ErrExists means an upload id is already taken.
	ErrExists = errors.New("blobstore: already exists")
	// ErrOffsetMismatch means an Append does not start at the upload's current size; the
	// wrapping [OffsetError] carries that size.
	ErrOffsetMismatch = errors.New("blobstore: offset is not the committed size")
	// ErrHashMismatch means an upload's bytes do not hash to the digest given to Commit.
	ErrHashMismatch = errors.New("blobstore: upload does not match its digest")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("blobstore: store closed")
)

// OffsetError is the error of an Append at the wrong offset; it wraps ErrOffsetMismatch.
type OffsetError struct {
	// Size is the upload's current size, where the next Append must start.
	Size int64
	Got  int64
}

func (e *OffsetError) Error() string {
	return fmt.Sprintf("blobstore: append at offset %d, the upload has %d bytes", e.Got, e.Size)
}

func (e *OffsetError) Unwrap() error { return ErrOffsetMismatch }

// Digest is the SHA-256 of a blob's bytes, its name.
type Digest [sha256.Size]byte

// String returns the digest in lowercase hex, as the API names blobs.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// ParseDigest parses a lowercase hex digest.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*len(d) {
		return d, fmt.Errorf("%w: blob id must be %d hex characters, got %d", ErrInvalid, 2*len(d), len(s))
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return d, fmt.Errorf("%w: blob id must be lowercase hex", ErrInvalid)
		}
	}
	hex.Decode(d[:], []byte(s))
	return d, nil
}

// CheckUploadID reports whether id is 1 to MaxUploadIDSize characters of [A-Za-z0-9_-]:
// ids become file or row names, so nothing else is accepted.
func CheckUploadID(id string) error {
	if id == "" || len(id) > MaxUploadIDSize {
		return fmt.Errorf("%w: upload id must be 1 to %d characters, got %d", ErrInvalid, MaxUploadIDSize, len(id))
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '-') {
			return fmt.Errorf("%w: upload id may hold only letters, digits, '_' and '-'", ErrInvalid)
		}
	}
	return nil
}

// Store holds uploads and blobs. It is safe for concurrent use.
//
// An upload grows by Appends, which need not be durable one by one; Sync makes everything
// appended so far durable and returns that committed size. After a crash the upload is
// back at its last committed size (bytes appended after the last Sync are gone) and the
// next Append starts there. Syncing every few MiB rather than every chunk is what lets an
// upload run at the disk's sequential speed.
type Store interface {
	// CreateUpload starts an empty upload named id, durably. ErrExists if the id is taken.
	CreateUpload(ctx context.Context, id string) error
	// Append writes data (1 to MaxAppendSize bytes) to upload id at offset, which must be
	// its current size (else an *OffsetError naming it), and returns the new size. The
	// bytes are durable only after a Sync. Appends to one upload are serialized: of two
	// at the same offset exactly one succeeds.
	Append(ctx context.Context, id string, offset int64, data []byte) (int64, error)
	// Sync makes every byte appended to upload id durable and returns the committed size.
	Sync(ctx context.Context, id string) (int64, error)
	// UploadSize returns the committed size of upload id: what the last Sync made
	// durable.
	UploadSize(ctx context.Context, id string) (int64, error)
	// Commit syncs upload id and makes its bytes the blob named want, if they hash to
	// want, and returns its size. On ErrHashMismatch nothing changes. The upload stays until
	// DeleteUpload, so a Commit repeated after a crash succeeds again; if the blob exists
	// already (the same bytes uploaded before) it is kept as it is.
	Commit(ctx context.Context, id string, want Digest) (int64, error)
	// DeleteUpload drops upload id; a missing upload is not an error.
	DeleteUpload(ctx context.Context, id string) error
	// Open returns blob d for reading; the caller closes it.
	Open(ctx context.Context, d Digest) (Blob, error)
	// Delete drops blob d durably; a missing blob is not an error. Blobs already open
	// stay readable until closed.
	Delete(ctx context.Context, d Digest) error
	// Close releases the store; later calls fail with ErrClosed.
	Close() error
}

// Blob is an open blob. ReadAt follows io.ReaderAt.
type Blob interface {
	io.ReaderAt
	io.Closer
	// Size is the blob's size in bytes.
	Size() int64
}
