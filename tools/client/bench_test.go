package client_test

import (
	"bytes"
	"testing"

	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/client"
	"github.com/guardyn/guardyn/tools/client/clienttest"
	"github.com/guardyn/guardyn/tools/client/content"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// BenchmarkSend measures one text message from a client with an established session, end to
// end against the in-process platform: profile load and save (AEAD + fsync), ratchet,
// sealing, the SendMessage RPC and the server's durable write, plus the copy-to-own-devices
// check. The raw-rpc baseline sends an envelope of the same size with SendMessage alone, so
// the difference is the client's own cost.
func BenchmarkSend(b *testing.B) {
	p := clienttest.StartWithLimits(b, platform.Policy{})
	alice, bob := p.Register(b, "alice"), p.Register(b, "bob")
	ctx := clienttest.Context(b)
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
// the batch, acknowledge. Sending them is excluded from the timing.
func BenchmarkReceive(b *testing.B) {
	p := clienttest.StartWithLimits(b, platform.Policy{})
	alice, bob := p.Register(b, "alice"), p.Register(b, "bob")
	ctx := clienttest.Context(b)
	for b.Loop() {
		b.StopTimer()
		for range 20 {
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
		if n != 20 {
			b.Fatalf("received %d messages, want 20", n)
		}
		b.StopTimer()
		clienttest.Drain(b, alice) // the receipts
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*20)/1e6, "ms/msg")
}
