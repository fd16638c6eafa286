package messaging_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// TestDeliveryNoticesCarryNoContent: a message stored for devices without a Receive stream
// publishes one DeliveryNotice per device on its own subject, naming only the device; an
// ephemeral signal publishes none.
func TestDeliveryNoticesCarryNoContent(t *testing.T) {
	e := newHandlerEnv(t)
	notices := make(chan *nats.Msg, 16)
	sub, err := e.bus.Conn().ChanSubscribe(bus.SubjectDeliveryNotices, notices)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.bus.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	secret := []byte("sealed-envelope-bytes")
	req := &messagingv1.SendMessageRequest{RecipientUserId: bobID, ClientMessageId: newClientID(), Envelopes: []*messagingv1.DeviceEnvelope{
		{DeviceId: 1, SealedEnvelope: secret}, {DeviceId: 2, SealedEnvelope: secret}, {DeviceId: 3, SealedEnvelope: secret}}}
	if _, err := e.svc.SendMessage(asAlice(), req); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for range 3 {
		select {
		case m := <-notices:
			var n eventsv1.DeliveryNotice
			if err := proto.Unmarshal(m.Data, &n); err != nil {
				t.Fatal(err)
			}
			want, _ := bus.DeliveryNoticeSubject(bobID, n.GetDevice().GetDeviceId())
			if m.Subject != want || n.GetDevice().GetUserId() != bobID {
				t.Fatalf("notice %v on %s", &n, m.Subject)
			}
			if bytes.Contains(m.Data, secret) || bytes.Contains(m.Data, []byte(aliceID)) {
				t.Fatal("notice carries the ciphertext or the sender")
			}
			got[m.Subject] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d notices, want 3", len(got))
		}
	}
	eph := &messagingv1.SendEphemeralRequest{RecipientUserId: bobID, Envelopes: []*messagingv1.DeviceEnvelope{
		{DeviceId: 1, SealedEnvelope: secret}, {DeviceId: 2, SealedEnvelope: secret}, {DeviceId: 3, SealedEnvelope: secret}}}
	if _, err := e.svc.SendEphemeral(asAlice(), eph); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-notices:
		t.Fatalf("ephemeral signal published a notice on %s", m.Subject)
	case <-time.After(300 * time.Millisecond):
	}
}
