package embedded_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/guardyn/guardyn/libs/blobstore"
	"github.com/guardyn/guardyn/libs/blobstore/blobstoretest"
	"github.com/guardyn/guardyn/libs/blobstore/embedded"
)

func TestContract(t *testing.T) {
	blobstoretest.Run(t, func(t testing.TB) blobstore.Store {
		s, err := embedded.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestReopenCutsUnsyncedBytes: after a restart an upload is at its last committed size,
// whatever was appended after the last Sync is gone, and appends continue from there.
func TestReopenCutsUnsyncedBytes(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := embedded.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUpload(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	s.Append(ctx, "u", 0, bytes.Repeat([]byte{1}, 100))
	s.Sync(ctx, "u")
	s.Append(ctx, "u", 100, bytes.Repeat([]byte{2}, 50))
	s.Close()

	s, err = embedded.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.UploadSize(ctx, "u"); err != nil || n != 100 {
		t.Fatalf("UploadSize after reopen = %d, %v; want 100", n, err)
	}
	if _, err := s.Append(ctx, "u", 150, []byte{3}); !errors.Is(err, blobstore.ErrOffsetMismatch) {
		t.Fatalf("Append past the committed size: %v", err)
	}
	if n, err := s.Append(ctx, "u", 100, bytes.Repeat([]byte{3}, 10)); err != nil || n != 110 {
		t.Fatalf("Append at the committed size = %d, %v", n, err)
	}
	want := append(bytes.Repeat([]byte{1}, 100), bytes.Repeat([]byte{3}, 10)...)
	if _, err := s.Commit(ctx, "u", sha256.Sum256(want)); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// TestTornSidecarSlot: a slot torn by a power cut is ignored; the other slot still names
// a committed size.
func TestTornSidecarSlot(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, _ := embedded.Open(dir)
	s.CreateUpload(ctx, "u")
	s.Append(ctx, "u", 0, make([]byte, 100))
	s.Sync(ctx, "u") // slot 1, seq 1
	s.Append(ctx, "u", 100, make([]byte, 100))
	s.Sync(ctx, "u") // slot 0, seq 2
	s.Close()
	side := filepath.Join(dir, "uploads", "u.sync")
	b, err := os.ReadFile(side)
	if err != nil {
		t.Fatal(err)
	}
	b[10] ^= 0xff // tear slot 0
	os.WriteFile(side, b, 0o600)
	s, _ = embedded.Open(dir)
	if n, err := s.UploadSize(ctx, "u"); err != nil || n != 100 {
		t.Fatalf("UploadSize with slot 0 torn = %d, %v; want slot 1's 100", n, err)
	}
}
