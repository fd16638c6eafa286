// Package blobstoretest is the contract every blobstore backend passes: call [Run] from the
// backend's tests with a function that opens a fresh, empty store.
package blobstoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/guardyn/guardyn/libs/blobstore"
)

// Opener returns a fresh, empty store, closed by the test's cleanup.
type Opener func(t testing.TB) blobstore.Store

// Run runs the contract tests against the stores open returns.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, blobstore.Store)
	}{
		{"UploadCommitRead", testUploadCommitRead},
		{"OffsetMismatch", testOffsetMismatch},
		{"SyncCommits", testSyncCommits},
		{"HashMismatchChangesNothing", testHashMismatch},
		{"CommitIdempotent", testCommitIdempotent},
		{"ConcurrentAppends", testConcurrentAppends},
		{"Delete", testDelete},
		{"NotFound", testNotFound},
		{"InvalidArguments", testInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

var ctx = context.Background()

func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*31)
	}
	return b
}

func upload(t *testing.T, s blobstore.Store, id string, data []byte, chunk int) blobstore.Digest {
	t.Helper()
	if err := s.CreateUpload(ctx, id); err != nil {
		t.Fatalf("CreateUpload: %v", err)
	}
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		got, err := s.Append(ctx, id, int64(off), data[off:end])
		if err != nil || got != int64(end) {
			t.Fatalf("Append at %d = %d, %v; want %d", off, got, err, end)
		}
	}
	if n, err := s.Sync(ctx, id); err != nil || n != int64(len(data)) {
		t.Fatalf("Sync = %d, %v; want %d", n, err, len(data))
	}
	return sha256.Sum256(data)
}

func readAll(t *testing.T, s blobstore.Store, d blobstore.Digest) []byte {
	t.Helper()
	b, err := s.Open(ctx, d)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer b.Close()
	out, err := io.ReadAll(io.NewSectionReader(b, 0, b.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testUploadCommitRead(t *testing.T, s blobstore.Store) {
	data := fill(3<<20+7, 1)
	d := upload(t, s, "u1", data, blobstore.MaxAppendSize)
	if n, err := s.UploadSize(ctx, "u1"); err != nil || n != int64(len(data)) {
		t.Fatalf("UploadSize = %d, %v", n, err)
	}
	n, err := s.Commit(ctx, "u1", d)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Commit = %d, %v", n, err)
	}
	if got := readAll(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("blob differs from what was uploaded")
	}
	b, _ := s.Open(ctx, d)
	defer b.Close()
	p := make([]byte, 100)
	if n, err := b.ReadAt(p, 1<<20-50); err != nil || n != 100 || !bytes.Equal(p, data[1<<20-50:1<<20+50]) {
		t.Fatalf("ReadAt a range = %d, %v", n, err)
	}
	if n, err := b.ReadAt(p, int64(len(data))-10); n != 10 || err != io.EOF {
		t.Fatalf("ReadAt past the end = %d, %v; want 10, EOF", n, err)
	}
	if err := s.DeleteUpload(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("deleting the upload changed the blob")
	}
}

func testOffsetMismatch(t *testing.T, s blobstore.Store) {
	upload(t, s, "u", fill(100, 2), 100)
	for _, off := range []int64{0, 50, 101, 1 << 40} {
		_, err := s.Append(ctx, "u", off, []byte("x"))
		var oe *blobstore.OffsetError
		if !errors.Is(err, blobstore.ErrOffsetMismatch) || !errors.As(err, &oe) || oe.Size != 100 {
			t.Fatalf("Append at %d: err = %v, want an OffsetError at 100", off, err)
		}
	}
	if n, _ := s.UploadSize(ctx, "u"); n != 100 {
		t.Fatalf("a refused append changed the size to %d", n)
	}
}

func testHashMismatch(t *testing.T, s blobstore.Store) {
	data := fill(1000, 3)
	d := upload(t, s, "u", data, 300)
	wrong := d
	wrong[0] ^= 1
	if _, err := s.Commit(ctx, "u", wrong); !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Fatalf("Commit with a wrong digest: err = %v", err)
	}
	if _, err := s.Open(ctx, wrong); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("a refused commit left a blob: %v", err)
	}
	if n, err := s.UploadSize(ctx, "u"); err != nil || n != 1000 {
		t.Fatalf("a refused commit changed the upload: %d, %v", n, err)
	}
	if _, err := s.Commit(ctx, "u", d); err != nil {
		t.Fatalf("Commit with the right digest after a wrong one: %v", err)
	}
}

func testCommitIdempotent(t *testing.T, s blobstore.Store) {
	data := fill(500, 4)
	d := upload(t, s, "a", data, 500)
	for range 2 {
		if _, err := s.Commit(ctx, "a", d); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
	// The same bytes uploaded again commit to the same blob.
	upload(t, s, "b", data, 200)
	if _, err := s.Commit(ctx, "b", d); err != nil {
		t.Fatalf("Commit of a duplicate: %v", err)
	}
	if got := readAll(t, s, d); !bytes.Equal(got, data) {
		t.Fatal("blob differs")
	}
}

func testConcurrentAppends(t *testing.T, s blobstore.Store) {
	if err := s.CreateUpload(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Append(ctx, "u", 0, fill(1000, byte(i))); err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			} else if !errors.Is(err, blobstore.ErrOffsetMismatch) {
				t.Errorf("Append: %v", err)
			}
		}()
	}
	wg.Wait()
	if n, _ := s.Sync(ctx, "u"); won != 1 || n != 1000 {
		t.Fatalf("%d appends at offset 0 succeeded, size %d; want exactly one", won, n)
	}
}

func testDelete(t *testing.T, s blobstore.Store) {
	data := fill(100, 5)
	d := upload(t, s, "u", data, 100)
	if _, err := s.Commit(ctx, "u", d); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUpload(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, d); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Open after Delete: %v", err)
	}
	if err := s.Delete(ctx, d); err != nil {
		t.Fatalf("Delete of a missing blob: %v", err)
	}
	if err := s.DeleteUpload(ctx, "u"); err != nil {
		t.Fatalf("DeleteUpload of a missing upload: %v", err)
	}
}

func testNotFound(t *testing.T, s blobstore.Store) {
	if _, err := s.Append(ctx, "nope", 0, []byte("x")); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Append: %v", err)
	}
	if _, err := s.Sync(ctx, "nope"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Sync: %v", err)
	}
	if _, err := s.UploadSize(ctx, "nope"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("UploadSize: %v", err)
	}
	if _, err := s.Commit(ctx, "nope", blobstore.Digest{}); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Commit: %v", err)
	}
	if _, err := s.Open(ctx, blobstore.Digest{1}); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Open: %v", err)
	}
	if err := s.CreateUpload(ctx, "dup"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUpload(ctx, "dup"); !errors.Is(err, blobstore.ErrExists) {
		t.Errorf("CreateUpload twice: %v", err)
	}
}

func testInvalid(t *testing.T, s blobstore.Store) {
	for _, id := range []string{"", "../etc", "a/b", string(make([]byte, 65)), "é"} {
		if err := s.CreateUpload(ctx, id); !errors.Is(err, blobstore.ErrInvalid) {
			t.Errorf("CreateUpload(%q): %v", id, err)
		}
	}
	if err := s.CreateUpload(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, blobstore.MaxAppendSize + 1} {
		if _, err := s.Append(ctx, "u", 0, make([]byte, n)); !errors.Is(err, blobstore.ErrInvalid) {
			t.Errorf("Append of %d bytes: %v", n, err)
		}
	}
	if n, _ := s.UploadSize(ctx, "u"); n != 0 {
		t.Errorf("refused appends changed the size to %d", n)
	}
}

// testSyncCommits: the committed size moves only with Sync, and Appends continue from the
// upload's end, synced or not.
func testSyncCommits(t *testing.T, s blobstore.Store) {
	if err := s.CreateUpload(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Append(ctx, "u", 0, fill(100, 1)); err != nil || n != 100 {
		t.Fatalf("Append = %d, %v", n, err)
	}
	if n, _ := s.UploadSize(ctx, "u"); n != 0 {
		t.Fatalf("UploadSize before Sync = %d, want 0", n)
	}
	if n, err := s.Append(ctx, "u", 100, fill(50, 2)); err != nil || n != 150 {
		t.Fatalf("second Append = %d, %v", n, err)
	}
	if n, err := s.Sync(ctx, "u"); err != nil || n != 150 {
		t.Fatalf("Sync = %d, %v", n, err)
	}
	if n, _ := s.UploadSize(ctx, "u"); n != 150 {
		t.Fatalf("UploadSize after Sync = %d", n)
	}
	if n, err := s.Sync(ctx, "u"); err != nil || n != 150 {
		t.Fatalf("Sync again = %d, %v", n, err)
	}
}
