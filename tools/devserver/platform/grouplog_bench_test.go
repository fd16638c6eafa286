package platform_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

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

// BenchmarkGroupMessageDelivery measures a group message of 1 KiB sent to a group of 100
// member devices (plus the sender) on the embedded default, over gRPC on loopback: from
// the SendGroupMessage call until the last of the 100 members' Receive streams has it.
// Each member acknowledges what it receives, as a client does. It reports the p50 and p99
// of that time over b.N messages sent one after another (docs/perf-groups.md).
func BenchmarkGroupMessageDelivery(b *testing.B) {
	const members, size = 100, 1 << 10
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
	devs := make([]*rawdevice.Device, members+1)
	addrs := make([]*commonv1.DeviceAddress, len(devs))
	for i := range devs {
		if devs[i], err = rawdevice.Register(ctx, authc, fmt.Sprintf("member%d", i)); err != nil {
			b.Fatal(err)
		}
		addrs[i] = &commonv1.DeviceAddress{UserId: devs[i].UserID, DeviceId: devs[i].ID}
	}
	sender := devs[0]
	gid := []byte("delivery-bench")
	if _, err := msgc.CreateGroup(sender.Context(ctx), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs, GroupInfo: []byte("gi")}); err != nil {
		b.Fatal(err)
	}

	// arrived[seq] counts the members that have message seq; the last one records when.
	var mu sync.Mutex
	arrived := map[uint64]int{}
	last := map[uint64]time.Time{}
	all := make(chan uint64, 1024)
	var ready sync.WaitGroup
	for _, d := range devs[1:] {
		stream, err := msgc.Receive(d.Context(ctx))
		if err != nil {
			b.Fatal(err)
		}
		ready.Add(1)
		go func() {
			backlog := false
			for {
				resp, err := stream.Recv()
				if err != nil {
					return
				}
				if resp.GetBacklogComplete() && !backlog {
					backlog = true
					ready.Done()
				}
				var ids [][]byte
				now := time.Now()
				for _, dl := range resp.GetDeliveries() {
					ids = append(ids, dl.GetMessageId())
					p := dl.GetPayload()
					seq := binary.BigEndian.Uint64(p[len(p)-8:]) // where the sender put it
					mu.Lock()
					arrived[seq]++
					if arrived[seq] == members {
						last[seq] = now
						all <- seq
					}
					mu.Unlock()
				}
				if len(ids) > 0 {
					if err := stream.Send(&messagingv1.ReceiveRequest{AckMessageIds: ids}); err != nil {
						return
					}
				}
			}
		}()
	}
	ready.Wait()
	sctx := sender.Context(ctx)
	payload := mlsframe.PrivateMessage(gid, 0, mlsframe.Application, size)
	lat, rpc := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		binary.BigEndian.PutUint64(payload[len(payload)-8:], uint64(i)) // in the ciphertext
		start := time.Now()
		if _, err := msgc.SendGroupMessage(sctx, &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: payload, ClientMessageId: rawdevice.NewMessageID()}); err != nil {
			b.Fatal(err)
		}
		rpc = append(rpc, time.Since(start))
		select {
		case seq := <-all:
			mu.Lock()
			lat = append(lat, last[seq].Sub(start))
			mu.Unlock()
		case <-time.After(time.Minute):
			b.Fatalf("message %d did not reach all %d members within a minute", i, members)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(rpc)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
	// The send call's own time: the stores' durable writes before the answer.
	b.ReportMetric(float64(rpc[len(rpc)/2].Microseconds())/1000, "send-p50-ms")
	b.ReportMetric(float64(rpc[(len(rpc)*99)/100].Microseconds())/1000, "send-p99-ms")
}

// BenchmarkDiskSyncLatency is the floor of BenchmarkGroupMessageDelivery on this disk, to
// run beside it: a group message is answered once one durable write of the message store
// is done, so its p99 cannot beat the p99 of one sync of a small write. It appends 4 KiB
// and syncs (the appended size makes fsync and fdatasync the same) per op, in the same temporary directory tree, and reports the p50
// and p99 of the sync.
func BenchmarkDiskSyncLatency(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4<<10)
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
}
