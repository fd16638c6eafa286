package messaging

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
)

// BenchmarkLoadGroupRecord is what every SendGroupMessage pays to check membership
// (memberView): one read of the group's whole record from the kv store and its JSON
// decode, for groups of 6 to 1 000 member devices. The GroupInfo is random bytes of
// about the size the real client's grows by per member (TestKVBytesPerDevice in
// tools/e2e measures 2.45 KB of record per member device); docs/scaling.md, hot spot 8.
func BenchmarkLoadGroupRecord(b *testing.B) {
	for _, n := range []int{6, 40, 400, 1000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			store, err := kvembedded.Open(filepath.Join(b.TempDir(), kvembedded.FileName), kvembedded.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { store.Close() })
			g := &groupRecord{Epoch: 9, CreatedAt: time.Now(), GroupInfo: make([]byte, 3000+1800*n)}
			rand.Read(g.GroupInfo)
			for i := range n {
				id := make([]byte, 16)
				rand.Read(id)
				g.Members = append(g.Members, member{UserID: hex.EncodeToString(id), DeviceID: uint32(i%3 + 1)})
			}
			gid := []byte("benchmark-group")
			ctx := context.Background()
			if err := store.Update(ctx, func(tx kv.Tx) error { return putGroup(tx, gid, g) }); err != nil {
				b.Fatal(err)
			}
			var size int
			if err := store.View(ctx, func(tx kv.Tx) error {
				v, err := tx.Get(groupKey(gid))
				size = len(v)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := store.View(ctx, func(tx kv.Tx) error {
					got, err := loadGroup(tx, gid)
					if err == nil && len(got.Members) != n {
						err = fmt.Errorf("%d members decoded, want %d", len(got.Members), n)
					}
					return err
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size), "B/record")
		})
	}
}
