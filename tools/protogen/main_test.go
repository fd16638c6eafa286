package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestDiff(t *testing.T) {
	committed := map[string][]byte{
		"a/a.pb.go":    []byte("same"),
		"b/b.pb.go":    []byte("old"),
		"gone/x.pb.go": []byte("orphan"),
		descriptorFile: []byte("set"),
	}
	fresh := map[string][]byte{
		"a/a.pb.go":      []byte("same"),
		"b/b.pb.go":      []byte("new"),
		"c/c_grpc.pb.go": []byte("added"),
		descriptorFile:   []byte("set"),
	}
	want := []change{{"stale", "b/b.pb.go"}, {"missing", "c/c_grpc.pb.go"}, {"orphaned", "gone/x.pb.go"}}
	if got := diff(committed, fresh); !reflect.DeepEqual(got, want) {
		t.Fatalf("diff = %v, want %v", got, want)
	}
}

func TestApply(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b/b.pb.go", "old")
	write("gone/x.pb.go", "orphan")
	write("gone/doc.go", "hand-written")
	fresh := map[string][]byte{"b/b.pb.go": []byte("new"), "c/c.pb.go": []byte("added")}
	committed, err := readGenerated(dir)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if err := apply(dir, fresh, diff(committed, fresh), &log); err != nil {
		t.Fatal(err)
	}
	after, err := readGenerated(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after, fresh) {
		t.Fatalf("after apply: %q, want %q", after, fresh)
	}
	if _, err := os.Stat(filepath.Join(dir, "gone/doc.go")); err != nil {
		t.Fatalf("hand-written file touched: %v", err)
	}
	if want := "wrote proto/b/b.pb.go\nwrote proto/c/c.pb.go\n"; log.String() != want {
		t.Fatalf("log = %q, want %q", log.String(), want)
	}
}

// TestCommittedCodeIsFresh is `go run ./tools/protogen -check` as a test: the committed
// generated code and descriptor set must be what protogen produces from the committed protos.
// It needs nothing but Go.
func TestCommittedCodeIsFresh(t *testing.T) {
	if err := run(context.Background(), true, io.Discard); err != nil {
		t.Fatal(err)
	}
}
