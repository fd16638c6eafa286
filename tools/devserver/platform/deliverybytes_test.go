package platform_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	"github.com/guardyn/guardyn/libs/ratelimit"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// TestDeliveryBytesAreLimitedPerSenderAndDevice: one account may send one device only its
// own budget of bytes ("deliver-bytes"), far below its send allowance: once mallory has
// spent it on alice, her next send to alice is refused, on SendMessage and on each
// request of a SendStream (which stays open), while bob still reaches alice and mallory
// still reaches carol. Before, the per-account limit let one account put 16 MiB a second
// into one honest inbox (issue 18, inbox jam under the abuse scenario).
func TestDeliveryBytesAreLimitedPerSenderAndDevice(t *testing.T) {
	const budget = 1 << 20
	e := startWith(t, func(c *platform.Config) {
		c.Limits = platform.DefaultPolicy()
		c.Limits["deliver-bytes"] = ratelimit.Config{Rate: 1, Burst: budget, MaxKeys: 100}
	})
	mallory, alice, bob, carol := e.register(t, "mallory"), e.register(t, "alice"), e.register(t, "bob"), e.register(t, "carol")
	big := make([]byte, 256<<10)
	for i := range budget / len(big) {
		if _, err := e.send(t, mallory, alice, big); err != nil {
			t.Fatalf("send %d to alice within the budget: %v", i, err)
		}
	}
	_, err := e.send(t, mallory, alice, big)
	wantErr(t, err, codes.ResourceExhausted, "RATE_LIMITED")

	stream := must(e.msg.SendStream(mallory.ctx(t)))
	for i, to := range []*device{alice, carol} {
		if err := stream.Send(&messagingv1.SendStreamRequest{RequestId: uint64(i + 1), Message: rawdevice.SendRequest(to.UserID, big, to.ID)}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream request to %s: %v", to.Username, err)
		}
		if got := resp.GetError().GetReason(); to == alice && got != "RATE_LIMITED" || to == carol && resp.GetSent() == nil {
			t.Fatalf("stream request to %s: %v; want refused for alice, sent for carol", to.Username, resp)
		}
	}
	if _, err := e.send(t, bob, alice, big); err != nil {
		t.Fatalf("bob's send to alice after mallory's: %v", err)
	}
}

// TestUnacknowledgedRedeliveryIsCharged: a device that drops its Receive stream with
// deliveries unacknowledged pays for them ("redeliver"): once its debt exceeds its budget
// it may not reopen until paid back, while a device that acknowledges what it gets
// reopens as often as the receive limit allows. Before, a device holding a backlog could
// reopen and drop its stream again and again, making the server read and send its
// backlog each time (issue 18, the backlog-reconnect attack).
func TestUnacknowledgedRedeliveryIsCharged(t *testing.T) {
	e := startWith(t, func(c *platform.Config) {
		c.Limits = platform.DefaultPolicy()
		c.Limits["redeliver"] = ratelimit.Config{Rate: 1, Burst: 64 << 10, MaxKeys: 100}
		delete(c.Limits, "receive") // so that only the redelivery budget can refuse
	})
	mallory, alice, bob := e.register(t, "mallory"), e.register(t, "alice"), e.register(t, "bob")
	// Two deliveries each, one per stream: together they exceed the initial window.
	for range 2 {
		must(e.send(t, alice, mallory, make([]byte, 128<<10)))
		must(e.send(t, alice, bob, make([]byte, 128<<10)))
	}
	// open reads the stream and drops it: after the first deliveries, unacknowledged, or
	// with ack set after the whole backlog, each delivery acknowledged (with AckMessages,
	// which returns when the delete is done). It returns the status of a refused stream.
	open := func(d *device, ack bool) error {
		ctx, cancel := context.WithTimeout(d.Context(context.Background()), 10*time.Second)
		defer cancel()
		stream, err := e.msg.Receive(ctx, grpc.MaxCallRecvMsgSize(messagingv1.MaxReceiveResponseSize))
		if err != nil {
			return err
		}
		for {
			resp, err := stream.Recv()
			if err != nil {
				return err
			}
			if !ack && len(resp.GetDeliveries()) > 0 {
				return nil
			}
			var ids [][]byte
			for _, d := range resp.GetDeliveries() {
				ids = append(ids, d.GetMessageId())
			}
			if len(ids) > 0 {
				must(e.msg.AckMessages(d.ctx(t), &messagingv1.AckMessagesRequest{MessageIds: ids}))
			}
			if resp.GetBacklogComplete() {
				return nil
			}
		}
	}
	if err := open(mallory, false); err != nil {
		t.Fatalf("first stream: %v", err)
	}
	// The debt is charged when the server has ended the dropped stream: poll.
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = open(mallory, false); status.Code(err) == codes.ResourceExhausted {
			break
		}
	}
	wantErr(t, err, codes.ResourceExhausted, "RATE_LIMITED")
	// bob acknowledges what he gets: he owes nothing and reopens at once.
	for i := range 3 {
		if err := open(bob, true); err != nil {
			t.Fatalf("bob's stream %d: %v", i, err)
		}
	}
}

// TestGroupMessagesCountAgainstByteBudgets: a group message counts against the sender's
// byte budget towards each recipient device, as one-to-one sends do: mallory cannot jam
// alice through a group she shares with her, and her messages to another group still
// go. Before, group messages had no byte limit at all (only 50 requests a second).
func TestGroupMessagesCountAgainstByteBudgets(t *testing.T) {
	const budget = 1 << 20
	e := startWith(t, func(c *platform.Config) {
		c.Limits = platform.DefaultPolicy()
		c.Limits["deliver-bytes"] = ratelimit.Config{Rate: 1, Burst: budget, MaxKeys: 100}
	})
	mallory, alice, carol := e.register(t, "mallory"), e.register(t, "alice"), e.register(t, "carol")
	withAlice, withCarol := clientID(), clientID()
	must(e.msg.CreateGroup(mallory.ctx(t), &messagingv1.CreateGroupRequest{GroupId: withAlice, Members: addrs(mallory, alice), GroupInfo: []byte("gi")}))
	must(e.msg.CreateGroup(mallory.ctx(t), &messagingv1.CreateGroupRequest{GroupId: withCarol, Members: addrs(mallory, carol), GroupInfo: []byte("gi")}))
	send := func(gid []byte) error {
		_, err := e.msg.SendGroupMessage(mallory.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 256<<10), ClientMessageId: clientID()})
		return err
	}
	for i := range budget / (256 << 10) {
		if err := send(withAlice); err != nil {
			t.Fatalf("group message %d within the budget: %v", i, err)
		}
	}
	wantErr(t, send(withAlice), codes.ResourceExhausted, "RATE_LIMITED")
	if err := send(withCarol); err != nil {
		t.Fatalf("group message to another group: %v", err)
	}
}

// TestEphemeralSignalsCountAgainstByteBudgets: signals are never stored but take the
// recipient's delivery bandwidth, so they count against the same byte budgets as sends:
// mallory's signals to alice stop at her budget towards alice, bob's still go. Before,
// only their request rate was limited (20 a second of up to 16 × 256 KiB).
func TestEphemeralSignalsCountAgainstByteBudgets(t *testing.T) {
	const budget = 1 << 20
	e := startWith(t, func(c *platform.Config) {
		c.Limits = platform.DefaultPolicy()
		c.Limits["deliver-bytes"] = ratelimit.Config{Rate: 1, Burst: budget, MaxKeys: 100}
	})
	mallory, alice, bob := e.register(t, "mallory"), e.register(t, "alice"), e.register(t, "bob")
	signal := func(from *device) error {
		_, err := e.msg.SendEphemeral(from.ctx(t), &messagingv1.SendEphemeralRequest{RecipientUserId: alice.UserID,
			Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: alice.ID, SealedEnvelope: make([]byte, 256<<10)}}})
		return err
	}
	for i := range budget / (256 << 10) {
		if err := signal(mallory); err != nil {
			t.Fatalf("signal %d within the budget: %v", i, err)
		}
	}
	wantErr(t, signal(mallory), codes.ResourceExhausted, "RATE_LIMITED")
	if err := signal(bob); err != nil {
		t.Fatalf("bob's signal to alice: %v", err)
	}
}
