package platform_test

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// TestGroupLogDeliversInOrderAndEnforcesMembership (issue 12): over real gRPC, group
// messages and commits stored once in the group log reach an online member live and an
// offline member from its backlog, in the order the service accepted them; a member
// removed by a commit can no longer send to the group, and its refused message changes
// nothing anyone receives.
func TestGroupLogDeliversInOrderAndEnforcesMembership(t *testing.T) {
	e := unlimited(t)
	alice, bob, carol := e.register(t, "alice"), e.register(t, "bob"), e.register(t, "carol")
	gid := clientID()
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(alice, bob, carol), GroupInfo: []byte("gi")}))
	bobLive := e.receive(t, bob)
	<-bobLive.backlog

	send := func(from *device, epoch uint64, size int) []byte {
		t.Helper()
		m := mlsframe.PrivateMessage(gid, epoch, mlsframe.Application, size)
		must(e.msg.SendGroupMessage(from.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: gid, Epoch: epoch, PrivateMessage: m, ClientMessageId: clientID()}))
		return m
	}
	commit := func(epoch uint64, removed ...*device) []byte {
		t.Helper()
		c := mlsframe.PrivateMessage(gid, epoch, mlsframe.Commit, 100)
		must(e.msg.SubmitCommit(alice.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: epoch, Commit: c, GroupInfo: []byte("g"), Removed: addrs(removed...)}))
		return c
	}
	want := [][]byte{send(alice, 0, 3000), commit(0), send(alice, 1, 10), send(alice, 1, 40000)}

	check := func(who string, r *receiver) {
		t.Helper()
		for i, w := range want {
			d := r.next(t)
			if !bytes.Equal(d.GetPayload(), w) || !bytes.Equal(d.GetGroupId(), gid) {
				t.Fatalf("%s's delivery %d is a %v of %d bytes, want entry %d of %d bytes", who, i, d.GetKind(), len(d.GetPayload()), i, len(w))
			}
			r.ack(t, d.GetMessageId())
		}
	}
	check("bob (live)", bobLive)
	carolLater := e.receive(t, carol)
	check("carol (backlog)", carolLater)

	removal := commit(1, carol)
	if d := bobLive.next(t); !bytes.Equal(d.GetPayload(), removal) {
		t.Fatalf("bob got a %v, want the commit removing carol", d.GetKind())
	}
	if d := carolLater.next(t); !bytes.Equal(d.GetPayload(), removal) {
		t.Fatalf("carol got a %v, want the commit removing her", d.GetKind())
	}
	_, err := e.msg.SendGroupMessage(carol.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: gid, Epoch: 2, PrivateMessage: mlsframe.PrivateMessage(gid, 2, mlsframe.Application, 10), ClientMessageId: clientID()})
	wantErr(t, err, codes.PermissionDenied, "NOT_GROUP_MEMBER")
	_, err = e.msg.SubmitCommit(carol.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: 2, Commit: mlsframe.PrivateMessage(gid, 2, mlsframe.Commit, 10), GroupInfo: []byte("g")})
	wantErr(t, err, codes.PermissionDenied, "NOT_GROUP_MEMBER")
	bobLive.none(t, 300*time.Millisecond)
	info := must(e.msg.GetGroupInfo(alice.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: gid}))
	if info.GetEpoch() != 2 || len(info.GetMembers()) != 2 {
		t.Fatalf("after the refused calls the group is at epoch %d with %d devices, want 2 and 2", info.GetEpoch(), len(info.GetMembers()))
	}
	// Messages after her removal do not reach carol.
	send(alice, 2, 20)
	bobLive.next(t)
	carolLater.none(t, 300*time.Millisecond)
}
