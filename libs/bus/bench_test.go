package bus

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
)

// benchTransports runs fn over the in-process pipe and over loopback TCP,
// the two ways the all-in-one server can reach its embedded NATS.
func benchTransports(b *testing.B, fn func(b *testing.B, pub *Bus)) {
	b.Run("inprocess", func(b *testing.B) {
		fn(b, startBus(b, b.TempDir(), EmbeddedOptions{}))
	})
	b.Run("loopback", func(b *testing.B) {
		srv := startBus(b, b.TempDir(), EmbeddedOptions{Listen: true})
		c, err := Connect(srv.ClientURL(), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		fn(b, c)
	})
}

// BenchmarkPublishWakeup is the per-message cost of the send path's wake-up
// with one subscriber consuming them (128-byte payload).
func BenchmarkPublishWakeup(b *testing.B) {
	benchTransports(b, func(b *testing.B, pub *Bus) {
		received := make(chan struct{}, 1)
		var n int
		sub, err := pub.Conn().Subscribe(SubjectDeliverAll, func(*nats.Msg) {
			n++
			if n == b.N {
				received <- struct{}{}
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		sub.SetPendingLimits(-1, -1)
		defer sub.Unsubscribe()
		pub.Conn().Flush()
		payload := make([]byte, 128)
		b.SetBytes(int64(len(payload)))
		b.ResetTimer()
		for range b.N {
			if err := pub.PublishWakeup("user-0123456789", 3, payload); err != nil {
				b.Fatal(err)
			}
		}
		<-received
	})
}

// BenchmarkPublishJetStream is a durable publish waiting for the stream's
// acknowledgement, one at a time (the default sync policy, no fsync).
func BenchmarkPublishJetStream(b *testing.B) {
	benchTransports(b, func(b *testing.B, pub *Bus) {
		ctx := context.Background()
		if err := pub.EnsureAuthEvents(ctx); err != nil {
			b.Fatal(err)
		}
		payload := make([]byte, 128)
		b.SetBytes(int64(len(payload)))
		b.ResetTimer()
		for range b.N {
			if err := pub.Publish(ctx, SubjectPrekeysLow, payload); err != nil {
				b.Fatal(err)
			}
		}
	})
}
