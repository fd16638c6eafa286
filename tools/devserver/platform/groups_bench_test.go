package platform_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	"github.com/guardyn/guardyn/libs/ratelimit"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// BenchmarkSubmitCommit measures one commit over gRPC on loopback in a group of eight
// devices, from the request to the answer: the epoch advance with its outbox entry and
// the fan-out to seven inboxes. docs/storage.md quotes it (outbox section).
func BenchmarkSubmitCommit(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := platform.Start(ctx, platform.Config{DataDir: b.TempDir(), GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Limits: ratelimit.Policy{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient(p.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	authc, msgc := authv1.NewAuthServiceClient(conn), messagingv1.NewMessagingServiceClient(conn)
	var members []*commonv1.DeviceAddress
	var committer *rawdevice.Device
	for i := range 8 {
		d, err := rawdevice.Register(ctx, authc, fmt.Sprintf("member%d", i))
		if err != nil {
			b.Fatal(err)
		}
		committer = d
		members = append(members, &commonv1.DeviceAddress{UserId: d.UserID, DeviceId: d.ID})
	}
	gid := []byte("bench-group")
	cctx := committer.Context(ctx)
	if _, err := msgc.CreateGroup(cctx, &messagingv1.CreateGroupRequest{GroupId: gid, Members: members, GroupInfo: []byte("gi")}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		req := &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: uint64(i), GroupInfo: []byte("g"),
			Commit: mlsframe.PrivateMessage(gid, uint64(i), mlsframe.Commit, 2048)}
		if _, err := msgc.SubmitCommit(cctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
