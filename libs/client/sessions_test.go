package client_test

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/client"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/clienttest"
)

const sendMethod = "/guardyn.messaging.v1.MessagingService/SendMessage"

// TestCrashBeforeSendReusesNoKey: the client encrypts, then dies before SendMessage returns, and
// the ciphertext may still have left (here it is captured and delivered later). The restarted
// client must not encrypt under the same ratchet message key again: it saves the advanced
// session before the ciphertext leaves. Had it saved only after the send, the second message
// would reuse the first's key and the recipient would drop one of them as a replay.
func TestCrashBeforeSendReusesNoKey(t *testing.T) {
	p := clienttest.Start(t)
	p.Register(t, "alice")
	bob := p.Register(t, "bob")
	ctx := clienttest.Context(t)

	var mu sync.Mutex
	var captured *messagingv1.SendMessageRequest
	crash := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		mu.Lock()
		defer mu.Unlock()
		if method == sendMethod && captured == nil {
			captured = proto.Clone(req.(*messagingv1.SendMessageRequest)).(*messagingv1.SendMessageRequest)
			return status.Error(codes.Internal, "process killed before the send completed")
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	cfg := p.Config("alice")
	cfg.Conn = p.Dial(t, grpc.WithUnaryInterceptor(crash))
	crashed, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crashed.Send(ctx, "bob", "written before the crash"); err == nil {
		t.Fatal("send through the crashing connection succeeded")
	}
	crashed.Close()
	if captured == nil {
		t.Fatal("no SendMessage was attempted")
	}

	restarted, err := client.Open(p.Config("alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	if _, err := restarted.Send(ctx, "bob", "written after the restart"); err != nil {
		t.Fatal(err)
	}
	// The ciphertext written before the crash arrives after all.
	actx, err := restarted.BearerForTest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := messagingv1.NewMessagingServiceClient(p.Conn).SendMessage(actx, captured); err != nil {
		t.Fatalf("late delivery of the captured message: %v", err)
	}
	evs := clienttest.Drain(t, bob)
	got := messages(evs)
	slices.Sort(got)
	if !slices.Equal(got, []string{"written after the restart", "written before the crash"}) {
		t.Fatalf("bob got %q (events %+v); a message key was used twice", got, evs)
	}
}

// TestOutdatedSessionReplaced: a session saved by an older version (PQXDH v1 and ratchet wire v1,
// refused by package session) is dropped, and the next send starts a new session that the
// peer accepts.
func TestOutdatedSessionReplaced(t *testing.T) {
	p := clienttest.Start(t)
	alice, bob := p.Register(t, "alice"), p.Register(t, "bob")
	ctx := clienttest.Context(t)
	if _, err := alice.Send(ctx, "bob", "first"); err != nil {
		t.Fatal(err)
	}
	if got := messages(clienttest.Drain(t, bob)); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("bob got %q", got)
	}
	sessions, err := alice.SessionsForTest("bob", 1)
	if err != nil || len(sessions) != 1 {
		t.Fatalf("alice's sessions with bob: %d, %v", len(sessions), err)
	}
	old := bytes.Clone(sessions[0])
	old[0] = 1 // session state version 1
	if err := alice.SetSessionsForTest("bob", 1, [][]byte{old}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, "bob", "after the upgrade"); err != nil {
		t.Fatalf("send with an outdated session: %v", err)
	}
	if got := messages(clienttest.Drain(t, bob)); !slices.Equal(got, []string{"after the upgrade"}) {
		t.Fatalf("bob got %q", got)
	}
}
