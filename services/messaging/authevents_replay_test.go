package messaging_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// TestReplayedAuthEventsAreHarmless: the auth outbox publishes an event at least once
// (again after a restart), so applying a DeviceRemoved twice must leave the same state
// as once: the removed device's inbox empty, the account's other inboxes untouched, and
// both copies acknowledged rather than redelivered for ever.
func TestReplayedAuthEventsAreHarmless(t *testing.T) {
	e := newHandlerEnv(t)
	ctx := context.Background()
	for range 2 {
		req := &messagingv1.SendMessageRequest{RecipientUserId: bobID, ClientMessageId: newClientID(), Envelopes: []*messagingv1.DeviceEnvelope{
			{DeviceId: 1, SealedEnvelope: []byte("x")}, {DeviceId: 2, SealedEnvelope: []byte("x")}, {DeviceId: 3, SealedEnvelope: []byte("x")}}}
		if _, err := e.svc.SendMessage(asAlice(), req); err != nil {
			t.Fatal(err)
		}
	}
	consumer, err := e.svc.ConsumeAuthEvents(ctx, e.bus)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Stop()
	data, err := proto.Marshal(&eventsv1.DeviceRemoved{UserId: bobID, DeviceId: 3})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := e.bus.Publish(ctx, bus.SubjectDeviceRemoved, data); err != nil {
			t.Fatal(err)
		}
	}
	info, err := e.bus.JetStream().Consumer(ctx, bus.StreamAuthEvents, "messaging")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ci, err := info.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ci.AckFloor.Consumer >= 2 && ci.NumAckPending == 0 && ci.NumPending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two copies were not both acknowledged: %+v", ci)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for d, want := range map[uint32]int{1: 2, 2: 2, 3: 0} {
		if n, err := e.inboxes.Count(ctx, inbox(bobID, d)); err != nil || n != want {
			t.Fatalf("bob's device %d holds %d messages (%v), want %d", d, n, err, want)
		}
	}
}
