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
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// startBinary builds a command of the module, runs it and returns the submatches of the
// first stdout line matching ready.
func startBinary(t *testing.T, pkg string, ready *regexp.Regexp, args ...string) []string {
	t.Helper()
	_, m := runBinary(t, buildBinary(t, pkg), ready, args...)
	return m
}

// TestServicesAsSeparateProcesses runs auth and messaging as their own binaries sharing
// the NATS server that auth embeds, and walks a message and a device removal through
// them: the deployment shape of a cluster, on one machine.
func TestServicesAsSeparateProcesses(t *testing.T) {
	authOut := startBinary(t, "./services/auth/cmd/auth", regexp.MustCompile(`^auth: gRPC on (\S+), admin on \S+, NATS (\S+)$`),
		"-data-dir", t.TempDir(), "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-nats-listen", "127.0.0.1:0")
	authAddr, natsURL := authOut[1], authOut[2]
	msgOut := startBinary(t, "./services/messaging/cmd/messaging", regexp.MustCompile(`^messaging: gRPC on (\S+),`),
		"-data-dir", t.TempDir(), "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-nats-url", natsURL, "-auth-addr", authAddr)

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
	alice, err := rawdevice.Register(ctx, authc, "alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := rawdevice.Register(ctx, authc, "bob")
	if err != nil {
		t.Fatal(err)
	}
	bob2, err := rawdevice.Link(ctx, authc, bob, "phone")
	if err != nil {
		t.Fatal(err)
	}
	// The messaging process verifies auth's tokens and checks auth's device list.
	if _, err := msgc.SendMessage(alice.Context(ctx), rawdevice.SendRequest(bob.UserID, []byte("x"), bob.ID)); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("send to a stale device list: %v, want FailedPrecondition", err)
	}
	if _, err := msgc.SendMessage(alice.Context(ctx), rawdevice.SendRequest(bob.UserID, []byte("hello"), bob.ID, bob2.ID)); err != nil {
		t.Fatal(err)
	}
	stream, err := msgc.Receive(bob2.Context(ctx))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || len(resp.GetDeliveries()) != 1 || string(resp.GetDeliveries()[0].GetPayload()) != "hello" {
		t.Fatalf("bob's phone got %v, %v", resp, err)
	}
	// Removing the phone at auth ends its stream at messaging and revokes its token there.
	if _, err := authc.RemoveDevice(bob.Context(ctx), &authv1.RemoveDeviceRequest{DeviceId: bob2.ID}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("removed device's stream ended with %v", err)
		}
		break
	}
	if _, err := msgc.AckMessages(bob2.Context(ctx), &messagingv1.AckMessagesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("removed device's token still works at messaging: %v", err)
	}
}
