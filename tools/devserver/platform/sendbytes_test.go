package platform_test

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/ratelimit"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// TestSendsAreLimitedByBytes: the send limit counts the sealed bytes, not only the
// requests, on SendMessage and on SendStream: a caller far below the request limit is
// refused once its bytes exceed the byte budget, small sends of others still pass.
// Before, the request limit (thousands a second) let one account push gigabytes.
func TestSendsAreLimitedByBytes(t *testing.T) {
	const budget = 1 << 20
	e := startWith(t, func(c *platform.Config) {
		c.Limits = platform.DefaultPolicy()
		c.Limits["send-bytes"] = ratelimit.Config{Rate: 1, Burst: budget, MaxKeys: 100}
	})
	mallory, alice, bob := e.register(t, "mallory"), e.register(t, "alice"), e.register(t, "bob")
	big := make([]byte, 256<<10)
	for i := range budget / len(big) {
		if _, err := e.send(t, mallory, alice, big); err != nil {
			t.Fatalf("send %d of %d KiB within the budget: %v", i, len(big)>>10, err)
		}
	}
	_, err := e.send(t, mallory, alice, big)
	wantErr(t, err, codes.ResourceExhausted, "RATE_LIMITED")

	// The stream path counts bytes too.
	stream := must(e.msg.SendStream(mallory.ctx(t)))
	if err := stream.Send(&messagingv1.SendStreamRequest{RequestId: 1, Message: rawdevice.SendRequest(alice.UserID, big, alice.ID)}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantErr(t, err, codes.ResourceExhausted, "RATE_LIMITED")

	// Another account is not affected.
	if _, err := e.send(t, bob, alice, big); err != nil {
		t.Fatalf("bob's send after mallory's flood: %v", err)
	}
}
