package main

import (
	"context"
	"regexp"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// TestPresenceAndPushAsSeparateProcesses runs auth, messaging, presence and notification as
// their own binaries on auth's NATS server: bob's Receive stream at messaging shows him
// online to alice's watch at presence, and the notification binary verifies auth's tokens
// and refuses a push endpoint that is not https.
func TestPresenceAndPushAsSeparateProcesses(t *testing.T) {
	authOut := startBinary(t, "./services/auth/cmd/auth", regexp.MustCompile(`^auth: gRPC on (\S+), admin on \S+, NATS (\S+)$`),
		"-data-dir", t.TempDir(), "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-nats-listen", "127.0.0.1:0")
	authAddr, natsURL := authOut[1], authOut[2]
	common := func() []string {
		return []string{"-data-dir", t.TempDir(), "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-nats-url", natsURL, "-auth-addr", authAddr}
	}
	msgOut := startBinary(t, "./services/messaging/cmd/messaging", regexp.MustCompile(`^messaging: gRPC on (\S+),`), common()...)
	presOut := startBinary(t, "./services/presence/cmd/presence", regexp.MustCompile(`^presence: gRPC on (\S+),`), common()...)
	pushOut := startBinary(t, "./services/notification/cmd/notification", regexp.MustCompile(`^notification: gRPC on (\S+),`),
		append(common(), "-vapid-subject", "mailto:ops@guardyn.test")...)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dial := func(addr string) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	authc := authv1.NewAuthServiceClient(dial(authAddr))
	msgc := messagingv1.NewMessagingServiceClient(dial(msgOut[1]))
	presc := presencev1.NewPresenceServiceClient(dial(presOut[1]))
	pushc := notificationv1.NewNotificationServiceClient(dial(pushOut[1]))
	alice, err := rawdevice.Register(ctx, authc, "alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := rawdevice.Register(ctx, authc, "bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*rawdevice.Device{alice, bob} {
		if _, err := presc.SetPresencePrivacy(d.Context(ctx), &presencev1.SetPresencePrivacyRequest{Visibility: presencev1.PresenceVisibility_PRESENCE_VISIBILITY_EVERYONE}); err != nil {
			t.Fatal(err)
		}
	}
	watch, err := presc.WatchPresence(alice.Context(ctx), &presencev1.WatchPresenceRequest{UserIds: []string{bob.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetPresence().GetStatus() != presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE {
		t.Fatalf("first presence %v, %v", r, err)
	}
	stream, err := msgc.Receive(bob.Context(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // backlog complete: the stream is open
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetPresence().GetStatus() != presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE {
		t.Fatalf("after bob's stream opened: %v, %v", r, err)
	}

	_, err = pushc.RegisterPushTarget(bob.Context(ctx), &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{
		Endpoint: "http://push.example/x", P256Dh: make([]byte, 65), Auth: make([]byte, 16)}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("http endpoint: %v", err)
	}
	if l, err := pushc.ListPushTargets(bob.Context(ctx), &notificationv1.ListPushTargetsRequest{}); err != nil || len(l.GetTargets()) != 0 {
		t.Fatalf("targets %v, %v", l, err)
	}
	if _, err := pushc.ListPushTargets(context.Background(), &notificationv1.ListPushTargetsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
}
