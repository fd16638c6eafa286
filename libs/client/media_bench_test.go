package client_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// BenchmarkFile50MiB sends (encrypt, upload, complete, capability, message) and gets
// (download in ranges, hash check, decrypt, save) a 50 MiB file through the in-process
// platform: the library's share of `guardyn send-file` and `guardyn get`, without the
// process start and vault unlock (scrypt) the CLI adds. Figures in docs/perf-media.md.
func BenchmarkFile50MiB(b *testing.B) {
	p := clienttest.StartWithLimits(b, ratelimit.Policy{})
	alice, bob := p.Register(b, "alice"), p.Register(b, "bob")
	ctx := context.Background()
	dir := b.TempDir()
	path := filepath.Join(dir, "file.bin")
	if err := os.WriteFile(path, make([]byte, 50<<20), 0o600); err != nil {
		b.Fatal(err)
	}
	var ids []string
	b.Run("send", func(b *testing.B) {
		b.SetBytes(50 << 20)
		for b.Loop() {
			sent, err := alice.SendFile(ctx, "bob", path)
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, sent.ID.String())
		}
	})
	clienttest.Drain(b, bob)
	b.Run("get", func(b *testing.B) {
		b.SetBytes(50 << 20)
		i := 0
		for b.Loop() {
			entry, err := bob.FindFile(ids[i%len(ids)])
			if err != nil {
				b.Fatal(err)
			}
			i++
			if _, err := bob.GetFile(ctx, entry, filepath.Join(b.TempDir(), "out.bin")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
