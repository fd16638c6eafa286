// Package embedded is the blobstore backend of the single-process deployment: one file per
// upload and per blob under a directory of the data dir, every append fsynced before it is
// acknowledged and every new or removed name made durable by a sync of its directory.
package embedded

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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

// Store keeps uploads in <dir>/uploads/<id> and blobs in <dir>/blobs/<hex digest>. Each
// upload has a sidecar <id>.sync holding its committed size in two slots written in turn
// (sequence number, size, CRC-32C), so a write torn by a power cut leaves the other slot
// intact. A Sync fsyncs the upload's bytes before it writes the slot that commits them.
type Store struct {
	uploads, blobs string
	mu             sync.Mutex
	open           map[string]*upload // uploads touched since Open, by id
	closed         atomic.Bool
}

// upload is the in-memory view of one upload; mu serializes its Appends, Syncs and Commit.
type upload struct {
	mu           sync.Mutex
	loaded, gone bool
	size, synced int64
	seq          uint64
}

var _ blobstore.Store = (*Store)(nil)

// Open opens or creates a store in dir.
func Open(dir string) (*Store, error) {
	s := &Store{uploads: filepath.Join(dir, "uploads"), blobs: filepath.Join(dir, "blobs"), open: make(map[string]*upload)}
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

func (s *Store) uploadPath(id string) (string, error) {
	if err := blobstore.CheckUploadID(id); err != nil {
		return "", err
	}
	return filepath.Join(s.uploads, id), nil
}

// Slots of the sidecar: sequence (8), committed size (8), CRC-32C of both (4), padding (4).
const slotSize = 24

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// lock returns upload id locked and loaded: its committed size read from the sidecar and
// anything past it (appended after the last Sync, before a crash) cut off.
func (s *Store) lock(ctx context.Context, id string) (*upload, string, error) {
	if err := s.check(ctx); err != nil {
		return nil, "", err
	}
	p, err := s.uploadPath(id)
	if err != nil {
		return nil, "", err
	}
	s.mu.Lock()
	u := s.open[id]
	if u == nil {
		u = &upload{}
		s.open[id] = u
	}
	s.mu.Unlock()
	u.mu.Lock()
	if u.gone {
		u.mu.Unlock()
		return s.lock(ctx, id) // deleted meanwhile: look again
	}
	if u.loaded {
		return u, p, nil
	}
	if err := u.load(p); err != nil {
		u.mu.Unlock()
		if errors.Is(err, blobstore.ErrNotFound) {
			s.forget(id, u)
		}
		return nil, "", err
	}
	return u, p, nil
}

// forget drops u from the open uploads (u.mu held).
func (s *Store) forget(id string, u *upload) {
	u.gone = true
	s.mu.Lock()
	if s.open[id] == u {
		delete(s.open, id)
	}
	s.mu.Unlock()
}

func (u *upload) load(p string) error {
	b, err := os.ReadFile(p + ".sync")
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: upload %s", blobstore.ErrNotFound, filepath.Base(p))
	}
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	for i := 0; i+slotSize <= len(b); i += slotSize {
		slot := b[i : i+slotSize]
		if crc32.Checksum(slot[:16], castagnoli) != binary.BigEndian.Uint32(slot[16:20]) {
			continue // never written, or torn
		}
		if seq := binary.BigEndian.Uint64(slot); seq >= u.seq {
			u.seq, u.synced = seq, int64(binary.BigEndian.Uint64(slot[8:16]))
		}
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: upload %s", blobstore.ErrNotFound, filepath.Base(p))
	}
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}
	if st.Size() < u.synced {
		return fmt.Errorf("blobstore: upload %s has %d bytes, %d were committed", filepath.Base(p), st.Size(), u.synced)
	}
	if st.Size() > u.synced {
		if err := os.Truncate(p, u.synced); err != nil {
			return fmt.Errorf("blobstore: %w", err)
		}
	}
	u.size, u.loaded = u.synced, true
	return nil
}

// sync makes u's bytes durable, then commits their size in the next sidecar slot.
func (u *upload) sync(p string) error {
	if u.synced == u.size {
		return nil
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("blobstore: sync: %w", err)
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return fmt.Errorf("blobstore: sync: %w", err)
	}
	side, err := os.OpenFile(p+".sync", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("blobstore: sync: %w", err)
	}
	defer side.Close()
	var slot [slotSize]byte
	binary.BigEndian.PutUint64(slot[:], u.seq+1)
	binary.BigEndian.PutUint64(slot[8:], uint64(u.size))
	binary.BigEndian.PutUint32(slot[16:], crc32.Checksum(slot[:16], castagnoli))
	if _, err := side.WriteAt(slot[:], int64((u.seq+1)%2)*slotSize); err != nil {
		return fmt.Errorf("blobstore: sync: %w", err)
	}
	if err := side.Sync(); err != nil {
		return fmt.Errorf("blobstore: sync: %w", err)
	}
	u.seq++
	u.synced = u.size
	return nil
}

func (s *Store) CreateUpload(ctx context.Context, id string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	p, err := s.uploadPath(id)
	if err != nil {
		return err
	}
	// The data file first: an upload exists once its sidecar does.
	for _, name := range []string{p, p + ".sync"} {
		f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			if name == p+".sync" {
				return fmt.Errorf("%w: upload %s", blobstore.ErrExists, id)
			}
			if _, serr := os.Stat(p + ".sync"); serr == nil {
				return fmt.Errorf("%w: upload %s", blobstore.ErrExists, id)
			}
			// A data file a crash left without its sidecar: take it over.
			if err := os.Truncate(p, 0); err != nil {
				return fmt.Errorf("blobstore: create upload: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("blobstore: create upload: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("blobstore: create upload: %w", err)
		}
	}
	return syncDir(s.uploads)
}

func (s *Store) Append(ctx context.Context, id string, offset int64, data []byte) (int64, error) {
	if len(data) == 0 || len(data) > blobstore.MaxAppendSize {
		if err := blobstore.CheckUploadID(id); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%w: append of %d bytes, want 1 to %d", blobstore.ErrInvalid, len(data), blobstore.MaxAppendSize)
	}
	u, p, err := s.lock(ctx, id)
	if err != nil {
		return 0, err
	}
	defer u.mu.Unlock()
	if offset != u.size {
		return 0, &blobstore.OffsetError{Size: u.size, Got: offset}
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("blobstore: append: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, offset); err != nil {
		// Whatever part was written lies past u.size and is cut off or overwritten.
		return 0, fmt.Errorf("blobstore: append: %w", err)
	}
	u.size += int64(len(data))
	return u.size, nil
}

func (s *Store) Sync(ctx context.Context, id string) (int64, error) {
	u, p, err := s.lock(ctx, id)
	if err != nil {
		return 0, err
	}
	defer u.mu.Unlock()
	if err := u.sync(p); err != nil {
		return 0, err
	}
	return u.synced, nil
}

func (s *Store) UploadSize(ctx context.Context, id string) (int64, error) {
	u, _, err := s.lock(ctx, id)
	if err != nil {
		return 0, err
	}
	defer u.mu.Unlock()
	return u.synced, nil
}

func (s *Store) Commit(ctx context.Context, id string, want blobstore.Digest) (int64, error) {
	u, p, err := s.lock(ctx, id)
	if err != nil {
		return 0, err
	}
	defer u.mu.Unlock()
	if err := u.sync(p); err != nil {
		return 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return 0, fmt.Errorf("blobstore: commit: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(f, 0, u.synced))
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
	u, p, err := s.lock(ctx, id)
	if errors.Is(err, blobstore.ErrNotFound) {
		if p, perr := s.uploadPath(id); perr == nil {
			return remove(p) // a data file a crash left without its sidecar
		}
		return nil
	}
	if err != nil {
		return err
	}
	defer u.mu.Unlock()
	// The sidecar first: without it the upload no longer exists.
	if err := remove(p + ".sync"); err != nil {
		return err
	}
	s.forget(id, u)
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
