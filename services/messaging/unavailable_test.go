package messaging_test

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/server"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// unreachableInboxes is the real store behind a cluster backend that cannot reach its
// replicas: every call fails with msgstore.ErrUnavailable, as libs/msgstore/cql reports
// it (TestKillAndRestart shows that it does).
type unreachableInboxes struct{ msgstore.Store }

var errUnreachable = fmt.Errorf("cql: append to bob/1: %w: gocql: no hosts available in the pool", msgstore.ErrUnavailable)

func (unreachableInboxes) Append(context.Context, []msgstore.Message) error { return errUnreachable }
func (unreachableInboxes) Count(context.Context, msgstore.Inbox) (int, error) {
	return 0, errUnreachable
}

// TestStoreUnavailableIsUnavailable: a send while the message store cannot be reached
// fails with Unavailable and the stable reason STORE_UNAVAILABLE, which clients retry,
// not with Internal; and nothing was stored.
func TestStoreUnavailableIsUnavailable(t *testing.T) {
	n := startNode(t, t.TempDir())
	defer n.close()
	real := n.inboxes.Store
	n.inboxes.Store = unreachableInboxes{real}
	req := &messagingv1.SendMessageRequest{RecipientUserId: bobID, ClientMessageId: newClientID(), Envelopes: []*messagingv1.DeviceEnvelope{
		{DeviceId: 1, SealedEnvelope: []byte("x")}, {DeviceId: 2, SealedEnvelope: []byte("x")}, {DeviceId: 3, SealedEnvelope: []byte("x")}}}
	_, err := n.svc.SendMessage(asAlice(), req)
	if status.Code(err) != codes.Unavailable || server.Reason(err) != "STORE_UNAVAILABLE" {
		t.Fatalf("send with the store unreachable = %v (reason %q), want Unavailable with STORE_UNAVAILABLE", err, server.Reason(err))
	}
	n.inboxes.Store = real
	for d := range 3 {
		if c, err := real.Count(context.Background(), inbox(bobID, uint32(d+1))); err != nil || c != 0 {
			t.Fatalf("device %d holds %d messages, %v; want none", d+1, c, err)
		}
	}
	if _, err := n.svc.SendMessage(asAlice(), req); err != nil {
		t.Fatalf("the retry once the store is back: %v", err)
	}
}

// fullInboxes is a cluster store that enforces the inbox cap itself and found the inbox
// full when appending (a sender on another server got there first).
type fullInboxes struct{ msgstore.Store }

func (fullInboxes) Append(context.Context, []msgstore.Message) error {
	return fmt.Errorf("cql: append to bob/1: %w: 1000 messages held", msgstore.ErrFull)
}

// TestStoreFullIsInboxFull: a store's refusal of a full inbox reaches the sender as
// ResourceExhausted with INBOX_FULL, the same answer as the service's own check.
func TestStoreFullIsInboxFull(t *testing.T) {
	n := startNode(t, t.TempDir())
	defer n.close()
	n.inboxes.Store = fullInboxes{n.inboxes.Store}
	req := &messagingv1.SendMessageRequest{RecipientUserId: bobID, ClientMessageId: newClientID(), Envelopes: []*messagingv1.DeviceEnvelope{
		{DeviceId: 1, SealedEnvelope: []byte("x")}, {DeviceId: 2, SealedEnvelope: []byte("x")}, {DeviceId: 3, SealedEnvelope: []byte("x")}}}
	_, err := n.svc.SendMessage(asAlice(), req)
	if status.Code(err) != codes.ResourceExhausted || server.Reason(err) != "INBOX_FULL" {
		t.Fatalf("send refused by the store as full = %v (reason %q), want ResourceExhausted with INBOX_FULL", err, server.Reason(err))
	}
}
