package e2e_test

import (
	"testing"

	"google.golang.org/grpc"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/clienttest"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// TestListenAcceptsTheLargestResponse queues deliveries of every size up to the largest
// an inbox holds (a 256 KiB group message; Welcomes are fetched by reference) for a client
// whose connection limits received messages to 128 KiB, as an app may for its other calls.
// Listen sets its stream's receive limit to messagingv1.MaxReceiveResponseSize, so it reads
// and acknowledges all of them; with the connection's limit the stream failed at the
// largest delivery on every reconnect (issue 18, finding 1).
func TestListenAcceptsTheLargestResponse(t *testing.T) {
	p := clienttest.Start(t)
	cfg := p.Config("victim")
	cfg.Conn = p.Dial(t, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(128<<10)))
	victim, err := client.Register(clienttest.Context(t), cfg, "victim", "victim's phone")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	who, err := victim.Whoami()
	if err != nil {
		t.Fatal(err)
	}
	ctx := clienttest.Context(t)
	mallory, err := rawdevice.Register(ctx, authv1.NewAuthServiceClient(p.Conn), "mallory")
	if err != nil {
		t.Fatal(err)
	}
	msg := messagingv1.NewMessagingServiceClient(p.Conn)
	mctx := mallory.Context(ctx)
	victimAddr := &commonv1.DeviceAddress{UserId: who.UserID, DeviceId: who.DeviceID}
	malloryAddr := &commonv1.DeviceAddress{UserId: mallory.UserID, DeviceId: mallory.ID}
	gid := []byte("group of small and large messages")
	if _, err := msg.CreateGroup(mctx, &messagingv1.CreateGroupRequest{GroupId: gid, Members: []*commonv1.DeviceAddress{malloryAddr, victimAddr}, GroupInfo: []byte("gi")}); err != nil {
		t.Fatal(err)
	}
	const messages, welcomes = 20, 2
	for i := range messages {
		if _, err := msg.SendGroupMessage(mctx, &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, (i+1)*(256<<10)/messages), ClientMessageId: rawdevice.NewMessageID()}); err != nil {
			t.Fatal(err)
		}
	}
	// Then group messages at their 256 KiB maximum, the largest deliveries an inbox holds
	// now that a Welcome is fetched by reference.
	for range welcomes {
		if _, err := msg.SendGroupMessage(mctx, &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, 256<<10), ClientMessageId: rawdevice.NewMessageID()}); err != nil {
			t.Fatal(err)
		}
	}

	// This client is in no such group: it reports each delivery as undecryptable and
	// acknowledges it.
	listen := func() (dropped int) {
		t.Helper()
		done := false
		if err := victim.Listen(clienttest.Context(t), true, func(ev client.Event) {
			switch ev.Kind {
			case client.EventUndecryptable:
				dropped++
			case client.EventBacklogDone:
				done = true
			}
		}); err != nil {
			t.Fatalf("listen after %d deliveries: %v", dropped, err)
		}
		if !done {
			t.Fatal("listen ended before the backlog did")
		}
		return dropped
	}
	if n := listen(); n != messages+welcomes {
		t.Fatalf("listen reported %d deliveries, want %d", n, messages+welcomes)
	}
	if n := listen(); n != 0 {
		t.Fatalf("%d deliveries came back after they were acknowledged", n)
	}
}
