package platform_test

import (
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/ratelimit"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// TestRefusedSendsAreNotRead: the server does not read a SendStream's sends as fast as
// they come only to refuse them. It reads ahead at most 1 MiB of unanswered sends, and
// after an answer refused with RATE_LIMITED it reads nothing more from the stream for a
// hold that doubles while refusals go on (100 ms, 200 ms, ...), so a sender over its
// byte budget waits behind HTTP/2 flow control with its bytes in its own buffers. Here
// mallory queues 16 sends of 256 KiB for alice with a budget of four: four are stored and
// twelve refused, at most five before the first hold (what was read ahead) and then one
// or two per hold, so the answers take at least four holds, 1.5 s; another stream of hers
// is not held. Before, the server read, decoded and refused all twelve at once (under
// the abuse scenario's jam, 12 MiB a second it read only to throw away).
func TestRefusedSendsAreNotRead(t *testing.T) {
	const budget = 1 << 20
	e := startWith(t, func(c *platform.Config) {
		c.Limits = platform.DefaultPolicy()
		c.Limits["deliver-bytes"] = ratelimit.Config{Rate: 1, Burst: budget, MaxKeys: 100}
	})
	mallory, alice, carol := e.register(t, "mallory"), e.register(t, "alice"), e.register(t, "carol")
	big := make([]byte, 256<<10)
	const n = 16
	stream := must(e.msg.SendStream(mallory.ctx(t)))
	start := time.Now()
	go func() {
		// Sends block once the stream's flow-control window is full.
		for i := range n {
			if stream.Send(&messagingv1.SendStreamRequest{RequestId: uint64(i + 1), Message: rawdevice.SendRequest(alice.UserID, big, alice.ID)}) != nil {
				return
			}
		}
		stream.CloseSend()
	}()
	sent, refused := 0, 0
	for range n {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d sent and %d refused: %v", sent, refused, err)
		}
		switch {
		case resp.GetSent() != nil:
			sent++
		case resp.GetError().GetReason() == "RATE_LIMITED":
			refused++
		default:
			t.Fatalf("unexpected answer %v", resp)
		}
	}
	elapsed := time.Since(start)
	if sent != budget/len(big) || refused != n-sent {
		t.Fatalf("%d sent, %d refused; want %d sent within the budget and the rest refused", sent, refused, budget/len(big))
	}
	if elapsed < time.Second {
		t.Fatalf("the %d refused sends were read and answered in %v; want the stream held after each refusal (at least a second in all)", refused, elapsed)
	}
	t.Logf("%d sent, %d refused in %v", sent, refused, elapsed)

	// The hold is the stream's: mallory's other stream reaches carol at once.
	other := must(e.msg.SendStream(mallory.ctx(t)))
	if err := other.Send(&messagingv1.SendStreamRequest{RequestId: 1, Message: rawdevice.SendRequest(carol.UserID, big, carol.ID)}); err != nil {
		t.Fatal(err)
	}
	if resp := must(other.Recv()); resp.GetSent() == nil {
		t.Fatalf("send to carol on another stream: %v, want sent", resp)
	}
}
