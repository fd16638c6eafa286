package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// TestServesWithKVOnMockTiKV: the server prints the line tools/loadgen waits for,
// registers users, keeps them in the mock TiKV under its data dir (no embedded kv.db),
// refuses a -kv it would ignore, and stops when its context ends.
func TestServesWithKVOnMockTiKV(t *testing.T) {
	if err := run(context.Background(), []string{"-kv", "tikv://127.0.0.1:1"}, io.Discard); err == nil || !strings.Contains(err.Error(), "always the mock TiKV") {
		t.Fatalf("-kv tikv://...: %v, want it refused", err)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-data-dir", data, "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-rate-limits=false"}, pw)
		pw.Close()
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	lines := bufio.NewScanner(pr)
	addr := ""
	for lines.Scan() {
		if rest, ok := strings.CutPrefix(lines.Text(), "guardyn: gRPC on "); ok {
			addr, _, _ = strings.Cut(rest, ",")
			break
		}
	}
	if addr == "" {
		t.Fatalf("no start line: %v", <-done)
	}
	go io.Copy(io.Discard, pr)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := &clienttest.Platform{DataDir: data, Profiles: filepath.Join(dir, "profiles"), Addr: addr, Conn: conn}
	p.Register(t, "alice")
	if _, err := os.Stat(filepath.Join(data, "mocktikv")); err != nil {
		t.Fatalf("no mock TiKV in the data dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, kvembedded.FileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the data dir holds an embedded kv store (%v)", err)
	}
}
