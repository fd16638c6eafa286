package platform_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guardyn/guardyn/libs/crypto/mls"
	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	"github.com/guardyn/guardyn/libs/ratelimit"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// mlsMember is one member device of the add benchmark: a registered device, its MLS
// state and its Receive stream.
type mlsMember struct {
	dev    *rawdevice.Device
	id     *mls.Identity
	kp     *mls.KeyPackage
	group  *mls.Group
	stream grpc.BidiStreamingClient[messagingv1.ReceiveRequest, messagingv1.ReceiveResponse]
}

func acceptAll(uint16, []byte, [][]byte, []byte) error { return nil }

// BenchmarkGroupAddMember measures adding one member device to a group of n devices (999:
// the group then has the most devices a group may have, 1000) end to end, on the embedded default over gRPC on loopback: the committer claims the new
// device's key package from auth, commits (MLS), submits the commit with its Welcome; the
// new device gets the Welcome notice on its Receive stream, fetches the Welcome and joins;
// every other member gets the commit on its stream and processes it. One op is the time
// until all of that is done; server-ms is the SubmitCommit call alone, delivered-ms until
// the last member's stream had the commit. (The group is built in process: n-1 members
// join from one Welcome too large for the API's commit limit, while the server records
// the same membership.)
func BenchmarkGroupAddMember(b *testing.B) {
	for _, n := range []int{100, 999} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) { benchAdd(b, n) })
	}
}

func benchAdd(b *testing.B, n int) {
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
	now := uint64(time.Now().Unix())
	newMember := func(name string) *mlsMember {
		d, err := rawdevice.Register(ctx, authc, name)
		if err != nil {
			b.Fatal(err)
		}
		id, err := mls.NewIdentity(mls.P256AES128GCMSHA256P256, []byte(name))
		if err != nil {
			b.Fatal(err)
		}
		kp, err := id.NewKeyPackage(now-3600, now+86400)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := authc.UploadKeyPackages(d.Context(ctx), &authv1.UploadKeyPackagesRequest{KeyPackages: [][]byte{kp.Bytes()}}); err != nil {
			b.Fatal(err)
		}
		return &mlsMember{dev: d, id: id, kp: kp}
	}
	members := make([]*mlsMember, n)
	addrs := make([]*commonv1.DeviceAddress, n)
	for i := range members {
		members[i] = newMember(fmt.Sprintf("member%04d", i))
		addrs[i] = &commonv1.DeviceAddress{UserId: members[i].dev.UserID, DeviceId: members[i].dev.ID}
	}
	committer := members[0]
	gid := []byte("add-bench")
	if committer.group, err = mls.NewGroup(committer.id, gid, acceptAll); err != nil {
		b.Fatal(err)
	}
	committer.group.PrivateHandshake = true
	var kps [][]byte
	for _, m := range members[1:] {
		kps = append(kps, m.kp.Bytes())
	}
	res, err := committer.group.Commit(mls.CommitOptions{Add: kps, InlineTree: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := committer.group.MergePendingCommit(); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, m := range members[1:] {
		wg.Go(func() {
			g, err := mls.Join(m.kp, res.Welcome, acceptAll, nil)
			if err != nil {
				b.Error(err)
			}
			m.group = g
		})
	}
	wg.Wait()
	cctx := committer.dev.Context(ctx)
	if _, err := msgc.CreateGroup(cctx, &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs, GroupInfo: []byte("gi")}); err != nil {
		b.Fatal(err)
	}
	// The server's epoch follows the group's: one placeholder commit.
	if _, err := msgc.SubmitCommit(cctx, &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: 0, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0), GroupInfo: []byte("g")}); err != nil {
		b.Fatal(err)
	}
	// Every member but the committer listens, past the placeholder.
	type processed struct {
		at  time.Time
		err error
	}
	results := make(chan processed, n)
	delivered := make(chan time.Time, n)
	for _, m := range members[1:] {
		if m.stream, err = msgc.Receive(m.dev.Context(ctx)); err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				resp, err := m.stream.Recv()
				if err != nil {
					return
				}
				for _, d := range resp.GetDeliveries() {
					_ = m.stream.Send(&messagingv1.ReceiveRequest{AckMessageIds: [][]byte{d.GetMessageId()}})
					if d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT || d.GetEpoch() == 0 {
						continue
					}
					delivered <- time.Now()
					_, err := m.group.Process(d.GetPayload())
					results <- processed{time.Now(), err}
				}
			}
		}()
	}
	joiners := make([]*mlsMember, b.N)
	for i := range joiners {
		joiners[i] = newMember(fmt.Sprintf("joiner%04d", i))
	}
	var server, deliveredBy time.Duration
	b.ResetTimer()
	for _, j := range joiners {
		start := time.Now()
		stream, err := msgc.Receive(j.dev.Context(ctx))
		if err != nil {
			b.Fatal(err)
		}
		claim, err := authc.ClaimKeyPackages(cctx, &authv1.ClaimKeyPackagesRequest{UserId: j.dev.UserID})
		if err != nil || len(claim.GetKeyPackages()) != 1 {
			b.Fatalf("claim: %v", err)
		}
		g := committer.group
		epoch := g.Epoch()
		res, err := g.Commit(mls.CommitOptions{Add: [][]byte{claim.GetKeyPackages()[0].GetKeyPackage()}, InlineTree: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := g.MergePendingCommit(); err != nil {
			b.Fatal(err)
		}
		gi, err := g.GroupInfo(false)
		if err != nil {
			b.Fatal(err)
		}
		added := []*commonv1.DeviceAddress{{UserId: j.dev.UserID, DeviceId: j.dev.ID}}
		submitted := time.Now()
		if _, err := msgc.SubmitCommit(cctx, &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: epoch, Commit: res.Commit, GroupInfo: gi, Welcome: res.Welcome, WelcomeRecipients: added, Added: added}); err != nil {
			b.Fatal(err)
		}
		server += time.Since(submitted)
		// The new device: Welcome notice, fetch, join.
		for joined := false; !joined; {
			resp, err := stream.Recv()
			if err != nil {
				b.Fatal(err)
			}
			for _, d := range resp.GetDeliveries() {
				if d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_WELCOME {
					continue
				}
				w, err := msgc.FetchWelcome(j.dev.Context(ctx), &messagingv1.FetchWelcomeRequest{GroupId: gid})
				if err != nil {
					b.Fatal(err)
				}
				if j.group, err = mls.Join(j.kp, w.GetWelcome(), acceptAll, nil); err != nil {
					b.Fatal(err)
				}
				joined = true
			}
		}
		var last time.Time
		for range len(members) - 1 {
			at := <-delivered
			if at.After(last) {
				last = at
			}
			if r := <-results; r.err != nil {
				b.Fatal(r.err)
			}
		}
		deliveredBy += last.Sub(start)
		// The joiner stays a member without listening; the next round adds another.
		stream.CloseSend()
	}
	b.StopTimer()
	b.ReportMetric(float64(server.Microseconds())/1000/float64(b.N), "server-ms")
	b.ReportMetric(float64(deliveredBy.Microseconds())/1000/float64(b.N), "delivered-ms")
}

// BenchmarkGroupAddServerPath is the server's share of BenchmarkGroupAddMember without
// MLS: one commit adding a device to a group of 999, from SubmitCommit until the new
// device has fetched its Welcome and all 999 members' Receive streams have the commit
// (well-formed placeholder frames; nobody processes them). It runs before and after the
// group log alike, so it is the baseline of the server path.
func BenchmarkGroupAddServerPath(b *testing.B) {
	const n = 999
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
	register := func(name string) *rawdevice.Device {
		d, err := rawdevice.Register(ctx, authc, name)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	devs := make([]*rawdevice.Device, n)
	addrs := make([]*commonv1.DeviceAddress, n)
	for i := range devs {
		devs[i] = register(fmt.Sprintf("member%04d", i))
		addrs[i] = &commonv1.DeviceAddress{UserId: devs[i].UserID, DeviceId: devs[i].ID}
	}
	gid := []byte("add-server-bench")
	cctx := devs[0].Context(ctx)
	if _, err := msgc.CreateGroup(cctx, &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs, GroupInfo: []byte("gi")}); err != nil {
		b.Fatal(err)
	}
	got := make(chan time.Time, n)
	for _, d := range devs[1:] {
		stream, err := msgc.Receive(d.Context(ctx))
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				resp, err := stream.Recv()
				if err != nil {
					return
				}
				for _, dl := range resp.GetDeliveries() {
					_ = stream.Send(&messagingv1.ReceiveRequest{AckMessageIds: [][]byte{dl.GetMessageId()}})
					if dl.GetKind() == messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT {
						got <- time.Now()
					}
				}
			}
		}()
	}
	joiners := make([]*rawdevice.Device, b.N)
	for i := range joiners {
		joiners[i] = register(fmt.Sprintf("joiner%04d", i))
	}
	var total, server time.Duration
	b.ResetTimer()
	for i, j := range joiners {
		if i > 0 {
			// Keep the group at 1000 devices: remove the previous joiner, outside the clock.
			b.StopTimer()
			prev := []*commonv1.DeviceAddress{{UserId: joiners[i-1].UserID, DeviceId: joiners[i-1].ID}}
			if _, err := msgc.SubmitCommit(cctx, &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: uint64(2*i - 1), Commit: mlsframe.PrivateMessage(gid, uint64(2*i-1), mlsframe.Commit, 2048), GroupInfo: []byte("g"), Removed: prev}); err != nil {
				b.Fatal(err)
			}
			for range n - 1 {
				<-got
			}
			b.StartTimer()
		}
		epoch := uint64(2 * i)
		added := []*commonv1.DeviceAddress{{UserId: j.UserID, DeviceId: j.ID}}
		start := time.Now()
		// A commit adding one member carries one Add proposal and an UpdatePath (≈ 2 KiB
		// in a group of 1000); the Welcome carries the ratchet tree (≈ 300 KiB).
		if _, err := msgc.SubmitCommit(cctx, &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: epoch, Commit: mlsframe.PrivateMessage(gid, epoch, mlsframe.Commit, 2048),
			GroupInfo: make([]byte, 64<<10), Welcome: mlsframe.PaddedWelcome(300<<10, mlsframe.Ref(i)), WelcomeRecipients: added, Added: added}); err != nil {
			b.Fatal(err)
		}
		server += time.Since(start)
		if _, err := msgc.FetchWelcome(j.Context(ctx), &messagingv1.FetchWelcomeRequest{GroupId: gid}); err != nil {
			b.Fatal(err)
		}
		var last time.Time
		for range n - 1 {
			if at := <-got; at.After(last) {
				last = at
			}
		}
		total += last.Sub(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(server.Microseconds())/1000/float64(b.N), "submit-ms")
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "all-delivered-ms")
}
