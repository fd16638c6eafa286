package client_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/client/content"
	"github.com/guardyn/guardyn/libs/ratelimit"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// BenchmarkSend measures one text message from a client with an established session, end to
// end against the in-process platform: profile load and save (AEAD + fsync), ratchet,
// sealing, the SendMessage RPC and the server's durable write, plus the copy-to-own-devices
// check. client-full-history repeats it with 1000 entries in the local history (kept in its
// own append-only file, so it should cost about the same). The raw-rpc baseline sends an
// envelope of the same size with SendMessage alone, so the difference is the client's own
// cost.
func BenchmarkSend(b *testing.B) {
	p := clienttest.StartWithLimits(b, ratelimit.Policy{})
	alice, bob := p.Register(b, "alice"), p.Register(b, "bob")
	ctx := context.Background() // benchmarks may run longer than the per-test minute
	if _, err := alice.Send(ctx, "bob", "warm up"); err != nil {
		b.Fatal(err)
	}
	clienttest.Drain(b, bob)
	clienttest.Drain(b, alice)
	who, err := bob.Whoami()
	if err != nil {
		b.Fatal(err)
	}
	const text = "a typical short chat message of about sixty bytes, give or take"

	b.Run("client", func(b *testing.B) {
		for b.Loop() {
			if _, err := alice.Send(ctx, "bob", text); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		clienttest.Drain(b, bob)
	})
	b.Run("client-full-history", func(b *testing.B) {
		if err := alice.FillHistoryForTest(1000); err != nil {
			b.Fatal(err)
		}
		size, err := alice.StateSizeForTest()
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := alice.Send(ctx, "bob", text); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(size), "state-bytes")
		b.StopTimer()
		clienttest.Drain(b, bob)
	})
	b.Run("raw-rpc", func(b *testing.B) {
		actx, err := alice.BearerForTest(ctx)
		if err != nil {
			b.Fatal(err)
		}
		msg := messagingv1.NewMessagingServiceClient(p.Conn)
		sealed := bytes.Repeat([]byte{0xa5}, 512) // the smallest envelope bucket, which a short text fills
		for b.Loop() {
			id := content.NewID()
			if _, err := msg.SendMessage(actx, &messagingv1.SendMessageRequest{
				RecipientUserId: who.UserID, ClientMessageId: id[:],
				Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1, SealedEnvelope: sealed}},
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReceive measures processing stored messages with Listen: open, decrypt, save
// the batch, acknowledge, and answer each text with a delivery receipt. Sending them is
// excluded from the timing. The raw-rpc baseline receives and acknowledges as many stored
// envelopes over the bare API.
func BenchmarkReceive(b *testing.B) {
	const batch = 20
	p := clienttest.StartWithLimits(b, ratelimit.Policy{})
	alice, bob := p.Register(b, "alice"), p.Register(b, "bob")
	ctx := context.Background() // benchmarks may run longer than the per-test minute
	b.Run("client", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			for range batch {
				if _, err := alice.Send(ctx, "bob", "queued while bob was away"); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			n := 0
			if err := bob.Listen(ctx, true, func(ev client.Event) {
				if ev.Kind == client.EventMessage {
					n++
				}
			}); err != nil {
				b.Fatal(err)
			}
			if n != batch {
				b.Fatalf("received %d messages, want %d", n, batch)
			}
			b.StopTimer()
			clienttest.Drain(b, alice) // the receipts
			b.StartTimer()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch)/1e6, "ms/msg")
	})
	b.Run("raw-rpc", func(b *testing.B) {
		actx, err := alice.BearerForTest(ctx)
		if err != nil {
			b.Fatal(err)
		}
		bctx, err := bob.BearerForTest(ctx)
		if err != nil {
			b.Fatal(err)
		}
		who, err := bob.Whoami()
		if err != nil {
			b.Fatal(err)
		}
		msg := messagingv1.NewMessagingServiceClient(p.Conn)
		sealed := bytes.Repeat([]byte{0xa5}, 512)
		for b.Loop() {
			b.StopTimer()
			for range batch {
				id := content.NewID()
				if _, err := msg.SendMessage(actx, &messagingv1.SendMessageRequest{
					RecipientUserId: who.UserID, ClientMessageId: id[:],
					Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1, SealedEnvelope: sealed}},
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			sctx, cancel := context.WithCancel(bctx)
			stream, err := msg.Receive(sctx)
			if err != nil {
				b.Fatal(err)
			}
			for done := false; !done; {
				resp, err := stream.Recv()
				if err != nil {
					b.Fatal(err)
				}
				var ids [][]byte
				for _, d := range resp.GetDeliveries() {
					ids = append(ids, d.GetMessageId())
				}
				if len(ids) > 0 {
					if _, err := msg.AckMessages(bctx, &messagingv1.AckMessagesRequest{MessageIds: ids}); err != nil {
						b.Fatal(err)
					}
				}
				done = resp.GetBacklogComplete()
			}
			cancel()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch)/1e6, "ms/msg")
	})
}
