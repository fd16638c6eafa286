package platform_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// Issue 18, finding 1 (inbox jam): deliveries were packed 256 to a ReceiveResponse with
// no byte bound, so 20 group messages of 256 KiB made a response over the server's own
// 5 MiB send limit, the stream failed on every reconnect before the victim learned a
// single id, and the inbox stayed jammed for the messages' 30 days. Every response is now
// bounded by bytes; these tests queue backlogs that exceed every transport limit for a
// victim and check that it receives and acknowledges all of them, reading its stream
// with the receive limit clients use, messagingv1.MaxReceiveResponseSize.

func TestBacklogOfLargeGroupMessagesIsReceivedAndAcked(t *testing.T) {
	e := unlimited(t)
	mallory, victim := e.register(t, "mallory"), e.register(t, "victim")
	gid := clientID()
	must(e.msg.CreateGroup(mallory.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(mallory, victim), GroupInfo: []byte("gi")}))
	const n, size = 20, 256 << 10
	for range n {
		must(e.msg.SendGroupMessage(mallory.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, size), ClientMessageId: clientID()}))
	}
	e.receiveAllAndAck(t, victim, n, messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE, size)
}

// TestLiveBurstOfLargeGroupMessagesIsReceived covers live deliveries, which the stream
// batches from its event queue: the victim stops reading, so the server blocks on flow
// control after the first message and the next 16 (its event buffer) queue behind it;
// unbounded, they made one response of 4 MiB.
func TestLiveBurstOfLargeGroupMessagesIsReceived(t *testing.T) {
	e := unlimited(t)
	mallory, victim := e.register(t, "mallory"), e.register(t, "victim")
	gid := clientID()
	must(e.msg.CreateGroup(mallory.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(mallory, victim), GroupInfo: []byte("gi")}))
	// Fixed small windows: the server can send the victim only 64 KiB ahead of its reads.
	conn := e.dial(t, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	msg := messagingv1.NewMessagingServiceClient(conn)
	ctx, cancel := context.WithTimeout(victim.Context(context.Background()), 2*time.Minute)
	defer cancel()
	stream := must(msg.Receive(ctx, grpc.MaxCallRecvMsgSize(messagingv1.MaxReceiveResponseSize)))
	if resp, err := stream.Recv(); err != nil || !resp.GetBacklogComplete() {
		t.Fatalf("first response %v, %v; want the empty backlog", resp, err)
	}
	const n, size = 17, 256 << 10
	for range n {
		must(e.msg.SendGroupMessage(mallory.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: mlsframe.PrivateMessage(gid, 0, mlsframe.Application, size), ClientMessageId: clientID()}))
	}
	seen := map[string]bool{}
	for len(seen) < n {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream ended after %d of %d deliveries: %v", len(seen), n, err)
		}
		var ids [][]byte
		for _, d := range resp.GetDeliveries() {
			if len(d.GetPayload()) != size {
				t.Fatalf("delivery of %d bytes, want %d", len(d.GetPayload()), size)
			}
			seen[string(d.GetMessageId())] = true
			ids = append(ids, d.GetMessageId())
		}
		if err := stream.Send(&messagingv1.ReceiveRequest{AckMessageIds: ids}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBacklogOfMaximalGroupMessagesIsReceivedAndAcked queues 1000 group messages at their
// 256 KiB maximum, the largest deliveries an inbox holds (a Welcome is stored once and
// fetched by reference), 250 MiB for one device: the victim receives and acknowledges
// every one, in responses its client accepts.
func TestBacklogOfMaximalGroupMessagesIsReceivedAndAcked(t *testing.T) {
	e := unlimited(t)
	mallory, victim := e.register(t, "mallory"), e.register(t, "victim")
	n := 1000
	if testing.Short() {
		n = 100
	}
	const size, workers = 256 << 10, 8
	gid := []byte("a group of large messages")
	if _, err := e.msg.CreateGroup(mallory.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(mallory, victim), GroupInfo: []byte("gi")}); err != nil {
		t.Fatal(err)
	}
	payload := mlsframe.PrivateMessage(gid, 0, mlsframe.Application, size)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if _, err := e.msg.SendGroupMessage(mallory.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: payload, ClientMessageId: clientID()}); err != nil {
					errs <- fmt.Errorf("group message %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	start := time.Now()
	e.receiveAllAndAck(t, victim, n, messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE, size)
	t.Logf("received and acknowledged %d group messages of 256 KiB in %v", n, time.Since(start).Round(time.Millisecond))
}

// dial opens a connection of its own to the platform.
func (e *env) dial(t *testing.T, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn := must(grpc.NewClient(e.conn.Target(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...))
	t.Cleanup(func() { conn.Close() })
	return conn
}

// receiveAllAndAck reads d's backlog on a Receive stream with the clients' receive limit,
// checks that it holds n deliveries of kind with payloads of size bytes, acknowledges each
// response as it comes (with AckMessages, which confirms the deletes), and then checks on
// a new stream that the inbox is empty.
func (e *env) receiveAllAndAck(t *testing.T, d *device, n int, kind messagingv1.DeliveryKind, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(d.Context(context.Background()), 5*time.Minute)
	defer cancel()
	seen := map[string]bool{}
	responses := 0
	stream := must(e.msg.Receive(ctx, grpc.MaxCallRecvMsgSize(messagingv1.MaxReceiveResponseSize)))
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream ended after %d responses and %d of %d deliveries: %v", responses, len(seen), n, err)
		}
		responses++
		var ids [][]byte
		for _, dl := range resp.GetDeliveries() {
			if dl.GetKind() != kind || len(dl.GetPayload()) != size {
				t.Fatalf("delivery of kind %v with %d bytes, want %v with %d", dl.GetKind(), len(dl.GetPayload()), kind, size)
			}
			seen[string(dl.GetMessageId())] = true
			ids = append(ids, dl.GetMessageId())
		}
		if len(ids) > 0 {
			if _, err := e.msg.AckMessages(ctx, &messagingv1.AckMessagesRequest{MessageIds: ids}); err != nil {
				t.Fatalf("ack: %v", err)
			}
		}
		if resp.GetBacklogComplete() {
			break
		}
	}
	if len(seen) != n {
		t.Fatalf("backlog complete after %d distinct deliveries, want %d", len(seen), n)
	}
	cancel()

	// Everything acknowledged: a new stream finds the inbox empty.
	ctx, cancel = context.WithTimeout(d.Context(context.Background()), time.Minute)
	defer cancel()
	stream = must(e.msg.Receive(ctx, grpc.MaxCallRecvMsgSize(messagingv1.MaxReceiveResponseSize)))
	resp, err := stream.Recv()
	if err != nil || len(resp.GetDeliveries()) != 0 || !resp.GetBacklogComplete() {
		t.Fatalf("after acknowledging everything the next stream got %d deliveries, backlog complete %v, %v; want an empty backlog",
			len(resp.GetDeliveries()), resp.GetBacklogComplete(), err)
	}
}
