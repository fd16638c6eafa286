package embedded_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/guardyn/guardyn/libs/kv"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/msgstore/embedded"
	"github.com/guardyn/guardyn/libs/msgstore/msgstoretest"
)

// BenchmarkStore uses 2 MiB segments so that, as in a long-running store, most of a
// one-second run writes to zero-filled segments, and segment switches are included.
func BenchmarkStore(b *testing.B) {
	msgstoretest.Benchmark(b, openWith(embedded.Options{SegmentSize: 2 << 20}))
}

// BenchmarkAlternativeBbolt measures the design not taken: inboxes as keys in the
// group-committed bbolt store (message, id index and counter per append), so
// docs/storage.md can compare it with the log on the same machine and run.
func BenchmarkAlternativeBbolt(b *testing.B) {
	for _, appenders := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			s, err := kvembedded.Open(filepath.Join(b.TempDir(), kvembedded.FileName), kvembedded.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			body := make([]byte, 200)
			msgstoretest.Parallel(b, appenders, 1, func(i int) error {
				inbox := fmt.Sprintf("msg/inbox/user-%02d/device/", i%64)
				return s.Update(context.Background(), func(tx kv.Tx) error {
					seq := binary.BigEndian.AppendUint64([]byte(inbox+"m/"), uint64(i))
					if err := tx.Put(seq, body); err != nil {
						return err
					}
					id := binary.BigEndian.AppendUint64([]byte(inbox+"i/"), uint64(i)*0x9e3779b97f4a7c15)
					if err := tx.Put(id, seq[len(seq)-8:]); err != nil {
						return err
					}
					count := []byte(inbox + "count")
					n, err := tx.Get(count)
					if err != nil && err != kv.ErrNotFound {
						return err
					}
					return tx.Put(count, binary.BigEndian.AppendUint64(nil, uint64(len(n))+1))
				})
			})
		})
	}
}
