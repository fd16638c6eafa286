package messaging_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// TestAuthEventsDeleteQueuedMessages publishes the auth service's events on the real
// JetStream stream and checks that the inboxes they name are emptied: a removed device's
// queue, then every queue of a deleted account.
func TestAuthEventsDeleteQueuedMessages(t *testing.T) {
	e := newHandlerEnv(t)
	ctx := context.Background()
	for range 3 {
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
	publish := func(subject string, m proto.Message) {
		data, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.bus.Publish(ctx, subject, data); err != nil {
			t.Fatal(err)
		}
	}
	count := func(device uint32) int {
		n, err := e.inboxes.Count(ctx, inbox(bobID, device))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitEmpty := func(devices ...uint32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for _, d := range devices {
			for count(d) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("bob's device %d still holds %d messages", d, count(d))
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}

	publish(bus.SubjectDeviceRemoved, &eventsv1.DeviceRemoved{UserId: bobID, DeviceId: 3})
	waitEmpty(3)
	if count(1) != 3 || count(2) != 3 {
		t.Fatalf("removing device 3 touched the others: %d and %d messages left", count(1), count(2))
	}
	publish(bus.SubjectAccountDeleted, &eventsv1.AccountDeleted{UserId: bobID, DeviceIds: []uint32{1, 2}})
	waitEmpty(1, 2)
}

func newClientID() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return b
}
