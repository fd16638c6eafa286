package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestGeneratedUpToDate regenerates mlsclientpb in memory and compares it
// with the committed files, so that the .proto and the Go code never drift.
func TestGeneratedUpToDate(t *testing.T) {
	root, err := moduleRoot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("generated %d files, want 2", len(files))
	}
	for name, content := range files {
		old, err := os.ReadFile(filepath.Join(root, pkgDir, name))
		if err != nil || !bytes.Equal(old, content) {
			t.Errorf("%s is stale (%v): run go run ./tools/mlsinterop/internal/pbgen", name, err)
		}
	}
}
