package messaging_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/directory"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/msgstore"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/messaging"
)

// flakyDirectory is a static directory whose lookups of one user fail while failing is
// set, as the bus directory's do when its requests time out.
type flakyDirectory struct {
	staticDirectory
	user    string
	failing atomic.Bool
}

func (d *flakyDirectory) Devices(ctx context.Context, userID string) ([]uint32, bool, error) {
	if userID == d.user && d.failing.Load() {
		return nil, false, fmt.Errorf("%w: injected: lookup timed out", directory.ErrUnavailable)
	}
	return d.staticDirectory.Devices(ctx, userID)
}

// TestSendStreamOutlivesDirectoryOutage: when the sending device's own check cannot be
// made (the directory does not answer), the request is answered UNAVAILABLE and not
// stored, and the stream goes on serving the next requests. The open-loop load of issue
// 17 found the stream ended instead: 10,000 devices starting to send at once time out
// some lookups, and each timeout failed every send in flight on that device's stream.
func TestSendStreamOutlivesDirectoryOutage(t *testing.T) {
	const alice, bob = "00000000000000000000000000000a11", "00000000000000000000000000000b0b"
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	groups, err := kvembedded.Open(filepath.Join(dir, kvembedded.FileName), kvembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer groups.Close()
	store, err := msgembedded.Open(filepath.Join(dir, msgembedded.DirName), msgembedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	b, err := bus.StartEmbedded(context.Background(), filepath.Join(dir, "nats"), bus.EmbeddedOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	devices := &flakyDirectory{staticDirectory: staticDirectory{alice: {1}, bob: {1}}, user: alice}
	svc, err := messaging.New(messaging.Config{Inboxes: store, Groups: groups, Directory: devices, Conn: b.Conn(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	answers := make(chan *messagingv1.SendStreamResponse, 4)
	stream := &fakeStream[messagingv1.SendStreamRequest, messagingv1.SendStreamResponse]{
		ctx: mergeCancel(as(alice), ctx), in: make(chan *messagingv1.SendStreamRequest, 4),
		sent: func(r *messagingv1.SendStreamResponse) { answers <- r },
	}
	ended := make(chan error, 1)
	go func() { ended <- svc.SendStream(stream) }()
	send := func(id uint64) *messagingv1.SendStreamResponse {
		t.Helper()
		cid := make([]byte, 16)
		cid[15] = byte(id)
		stream.in <- &messagingv1.SendStreamRequest{RequestId: id, Message: &messagingv1.SendMessageRequest{
			RecipientUserId: bob, ClientMessageId: cid,
			Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1, SealedEnvelope: []byte("sealed")}},
		}}
		select {
		case r := <-answers:
			return r
		case err := <-ended:
			t.Fatalf("request %d: the stream ended (%v) instead of answering", id, err)
		case <-ctx.Done():
			t.Fatalf("request %d: no answer", id)
		}
		return nil
	}

	devices.failing.Store(true)
	r := send(1)
	if e := r.GetError(); r.GetRequestId() != 1 || e == nil || e.GetCode() != uint32(codes.Unavailable) || e.GetReason() != "DIRECTORY_UNAVAILABLE" {
		t.Fatalf("answer to a send during the outage: %v, want UNAVAILABLE/DIRECTORY_UNAVAILABLE", r)
	}
	if n, err := store.Count(ctx, msgstore.Inbox{UserID: bob, DeviceID: "1"}); err != nil || n != 0 {
		t.Fatalf("bob's inbox holds %d messages (%v) after a refused send, want 0", n, err)
	}
	devices.failing.Store(false)
	if r := send(2); r.GetRequestId() != 2 || r.GetSent() == nil {
		t.Fatalf("answer to a send after the outage: %v, want it stored", r)
	}
	close(stream.in)
	if err := <-ended; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("the stream ended with %v after the client closed it", err)
	}
}
