package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	libserver "github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// groupRun is one committer advancing its group epoch by epoch until the server dies.
type groupRun struct {
	gid       []byte
	committer *rawdevice.Device
	accepted  [][]byte // the commit that ended each epoch, as acknowledged
	inflight  *messagingv1.SubmitCommitRequest
}

func commitFor(gid []byte, epoch uint64, n int) *messagingv1.SubmitCommitRequest {
	return &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: epoch, GroupInfo: []byte("gi"),
		Commit: mlsframe.PrivateMessage(gid, epoch, mlsframe.Commit, 100+n)}
}

// TestKill9KeepsGroupsWhole (issue 18, finding 4): eight committers advance their groups
// while the server is killed with SIGKILL. After a restart on the same data dir, each
// committer retries the commit it got no answer for and must succeed (it was accepted, or
// is accepted now: never EPOCH_CONFLICT against itself), and the other member receives
// every commit of every epoch, in order, exactly once after dropping duplicate ids. Before
// the epoch advance and its fan-out were one transaction, a kill between the kv store and
// the message store left a member without the commit of an epoch the group had left.
func TestKill9KeepsGroupsWhole(t *testing.T) {
	bin := buildBinary(t, "./tools/devserver")
	data := t.TempDir()
	srv := startServer(t, bin, data)
	ctx := context.Background()
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	authc := authv1.NewAuthServiceClient(conn)
	msgc := messagingv1.NewMessagingServiceClient(conn)
	bob, err := rawdevice.Register(ctx, authc, "bob")
	if err != nil {
		t.Fatal(err)
	}
	runs := make([]*groupRun, 8)
	for i := range runs {
		d, err := rawdevice.Register(ctx, authc, fmt.Sprintf("committer%d", i))
		if err != nil {
			t.Fatal(err)
		}
		r := &groupRun{gid: fmt.Appendf(nil, "crash-group-%d", i), committer: d}
		_, err = msgc.CreateGroup(d.Context(ctx), &messagingv1.CreateGroupRequest{GroupId: r.gid, GroupInfo: []byte("gi0"),
			Members: []*commonv1.DeviceAddress{{UserId: d.UserID, DeviceId: d.ID}, {UserId: bob.UserID, DeviceId: bob.ID}}})
		if err != nil {
			t.Fatal(err)
		}
		runs[i] = r
	}

	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() {
			for epoch := uint64(0); ; {
				req := commitFor(r.gid, epoch, int(epoch))
				cctx, cancel := context.WithTimeout(r.committer.Context(ctx), 5*time.Second)
				_, err := msgc.SubmitCommit(cctx, req)
				cancel()
				switch {
				case err == nil:
					r.accepted = append(r.accepted, req.GetCommit())
					epoch++
					mu.Lock()
					total++
					mu.Unlock()
				case libserver.Reason(err) == "RATE_LIMITED":
					time.Sleep(50 * time.Millisecond)
				default:
					r.inflight = req // the server is gone; no answer for this one
					return
				}
			}
		})
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := total
		mu.Unlock()
		if n >= 150 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Wait()
	wg.Wait()
	conn.Close()

	srv = startServer(t, bin, data)
	conn, err = grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgc = messagingv1.NewMessagingServiceClient(conn)
	for i, r := range runs {
		if r.inflight == nil {
			t.Fatalf("committer %d stopped without a commit in flight", i)
		}
		for {
			_, err := msgc.SubmitCommit(r.committer.Context(ctx), r.inflight)
			if libserver.Reason(err) == "RATE_LIMITED" {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatalf("committer %d's retry of its unanswered commit for epoch %d after the restart: %v", i, r.inflight.GetEpoch(), err)
			}
			break
		}
		r.accepted = append(r.accepted, r.inflight.GetCommit())
		info, err := msgc.GetGroupInfo(r.committer.Context(ctx), &messagingv1.GetGroupInfoRequest{GroupId: r.gid})
		if err != nil {
			t.Fatal(err)
		}
		if info.GetEpoch() != uint64(len(r.accepted)) {
			t.Fatalf("group %d is at epoch %d after %d accepted commits", i, info.GetEpoch(), len(r.accepted))
		}
	}

	// Bob gets every commit of every group, in epoch order, once.
	want := 0
	for _, r := range runs {
		want += len(r.accepted)
	}
	rctx, cancel := context.WithTimeout(bob.Context(ctx), 90*time.Second)
	defer cancel()
	stream, err := msgc.Receive(rctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	next := map[string]uint64{}
	got := 0
	for got < want {
		resp, err := stream.Recv()
		if status.Code(err) == codes.DeadlineExceeded {
			t.Fatalf("bob received %d of %d commits", got, want)
		} else if err != nil {
			t.Fatal(err)
		}
		var ids [][]byte
		for _, d := range resp.GetDeliveries() {
			ids = append(ids, d.GetMessageId())
			if seen[string(d.GetMessageId())] {
				continue
			}
			seen[string(d.GetMessageId())] = true
			g := string(d.GetGroupId())
			var r *groupRun
			for _, c := range runs {
				if string(c.gid) == g {
					r = c
				}
			}
			if r == nil || d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT {
				t.Fatalf("unexpected %v for group %q", d.GetKind(), g)
			}
			if d.GetEpoch() != next[g] || d.GetEpoch() >= uint64(len(r.accepted)) || !bytes.Equal(d.GetPayload(), r.accepted[d.GetEpoch()]) {
				t.Fatalf("group %q: got the commit of epoch %d, want epoch %d's accepted commit", g, d.GetEpoch(), next[g])
			}
			next[g]++
			got++
		}
		if len(ids) > 0 {
			if err := stream.Send(&messagingv1.ReceiveRequest{AckMessageIds: ids}); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d commits in %d groups delivered whole across kill -9 (%d acknowledged before it)", want, len(runs), total)
}
