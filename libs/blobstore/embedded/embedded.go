// Package embedded is the blobstore backend of the single-process deployment: one file per
// upload and per blob under a directory of the data dir, every append fsynced before it is
// acknowledged and every new or removed name made durable by a sync of its directory.
package embedded

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/guardyn/guardyn/libs/blobstore"
)

// DirName is the directory of the data dir the platform opens the store in.
const DirName = "blobs"

// Store keeps uploads in <dir>/uploads/<id> and blobs in <dir>/blobs/<hex digest>.
type Store struct {
	uploads, blobs string
	// locks serialize the Appends and Commits of one upload (by a hash of its id): the
	// offset check and the write must not interleave.
	locks  [64]sync.Mutex
	seed   maphash.Seed
	closed atomic.Bool
}

var _ blobstore.Store = (*Store)(nil)

// Open opens or creates a store in dir.
func Open(dir string) (*Store, error) {
	s := &Store{uploads: filepath.Join(dir, "uploads"), blobs: filepath.Join(dir, "blobs"), seed: maphash.MakeSeed()}
	for _, d := range []string{dir, s.uploads, s.blobs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("blobstore: %w", err)
		}
	}
	// Make the subdirectories' names durable before anything is put in them.
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return s, nil
}

// Ready reports whether the store is open and its directories are there, for readiness
// probes.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	for _, d := range []string{s.uploads, s.blobs} {
		if _, err := os.Stat(d); err != nil {
			return fmt.Errorf("blobstore: %w", err)
		}
	}
	return nil
}

// Close marks the store closed. Files need no closing: every call opens its own.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return blobstore.ErrClosed
	}
	return ctx.Err()
}

func (s *Store) lock(id string) *sync.Mutex {
	return &s.locks[maphash.String(s.seed, id)%uint64(len(s.locks))]
}

func (s *Store) uploadPath(id string) (string, error) {
	if err := blobstore.CheckUploadID(id); err != nil {
		return "", err
	}
	return filepath.Join(s.uploads, id), nil
}

func (s *Store) CreateUpload(ctx context.Context, id string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	p, err := s.uploadPath(id)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: upload %s", blobstore.ErrExists, id)
	}
	if err != nil {
		return fmt.Errorf("blobstore: create upload: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blobstore: create upload: %w", err)
	}
	return syncDir(s.uploads)
}

func (s *Store) Append(ctx context.Context, id string, offset int64, data []byte) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	p, err := s.uploadPath(id)
	if err != nil {
		return 0, err
	}
	if len(data) == 0 || len(data) > blobstore.MaxAppendSize {
		return 0, fmt.Errorf("%w: append of %d bytes, want 1 to %d", blobstore.ErrInvalid, len(data), blobstore.MaxAppendSize)
	}
	mu := s.lock(id)
	mu.Lock()
	defer mu.Unlock()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: upload %s", blobstore.ErrNotFound, id)
	}
	if err != nil {
		return 0, fmt.Errorf("blobstore: append: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("blobstore: append: %w", err)
	}
	// The file's size is the committed size: every byte in it was synced before the
	// Append that wrote it returned. A crash during an Append leaves at most a prefix of
	// its bytes, written one write at a time in order, which the client resumes after.
	if st.Size() != offset {
		return 0, &blobstore.OffsetError{Committed: st.Size(), Got: offset}
	}
	if _, err := f.WriteAt(data, offset); err != nil {
		return 0, fmt.Errorf("blobstore: append: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("blobstore: append: sync: %w", err)
	}
	return offset + int64(len(data)), nil
}

func (s *Store) UploadSize(ctx context.Context, id string) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	p, err := s.uploadPath(id)
	if err != nil {
		return 0, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: upload %s", blobstore.ErrNotFound, id)
	}
	if err != nil {
		return 0, fmt.Errorf("blobstore: %w", err)
	}
	return st.Size(), nil
}

func (s *Store) Commit(ctx context.Context, id string, want blobstore.Digest) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	p, err := s.uploadPath(id)
	if err != nil {
		return 0, err
	}
	mu := s.lock(id)
	mu.Lock()
	defer mu.Unlock()
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: upload %s", blobstore.ErrNotFound, id)
	}
	if err != nil {
		return 0, fmt.Errorf("blobstore: commit: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, fmt.Errorf("blobstore: commit: %w", err)
	}
	var got blobstore.Digest
	h.Sum(got[:0])
	if got != want {
		return 0, fmt.Errorf("%w: upload %s hashes to %s", blobstore.ErrHashMismatch, id, got)
	}
	// A hard link names the same synced bytes: no copy, and the upload stays for a
	// repeated Commit until the caller deletes it.
	err = os.Link(p, filepath.Join(s.blobs, want.String()))
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return 0, fmt.Errorf("blobstore: commit: %w", err)
	}
	if err := syncDir(s.blobs); err != nil {
		return 0, err
	}
	return n, nil
}

func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	p, err := s.uploadPath(id)
	if err != nil {
		return err
	}
	return remove(p)
}

func (s *Store) Open(ctx context.Context, d blobstore.Digest) (blobstore.Blob, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(s.blobs, d.String()))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: blob %s", blobstore.ErrNotFound, d)
	}
	if err != nil {
		return nil, fmt.Errorf("blobstore: open: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blobstore: open: %w", err)
	}
	return &blob{File: f, size: st.Size()}, nil
}

func (s *Store) Delete(ctx context.Context, d blobstore.Digest) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return remove(filepath.Join(s.blobs, d.String()))
}

type blob struct {
	*os.File
	size int64
}

func (b *blob) Size() int64 { return b.size }

// remove deletes path durably; a missing file is not an error.
func remove(path string) error {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes the entries of dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("blobstore: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("blobstore: sync %s: %w", dir, err)
	}
	return nil
}
