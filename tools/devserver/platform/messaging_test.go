package platform_test

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

func wantErr(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || server.Reason(err) != reason {
		t.Fatalf("got %v (reason %q), want %v/%s", err, server.Reason(err), code, reason)
	}
}

func TestBacklogThenLiveThenAck(t *testing.T) { backlogThenLiveThenAck(t, start(t)) }

func backlogThenLiveThenAck(t *testing.T, e *env) {
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	for i := range 3 {
		if _, err := e.send(t, alice, bob, fmt.Appendf(nil, "offline %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	r := e.receive(t, bob)
	var ids [][]byte
	for i := range 3 {
		d := r.next(t)
		if want := fmt.Sprintf("offline %d", i); string(d.GetPayload()) != want || d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_MESSAGE {
			t.Fatalf("backlog %d = %q (%v), want %q in order", i, d.GetPayload(), d.GetKind(), want)
		}
		ids = append(ids, d.GetMessageId())
	}
	select {
	case <-r.backlog:
	case <-time.After(5 * time.Second):
		t.Fatal("backlog_complete never came")
	}
	if _, err := e.send(t, alice, bob, []byte("live")); err != nil {
		t.Fatal(err)
	}
	live := r.next(t)
	if string(live.GetPayload()) != "live" {
		t.Fatalf("live delivery = %q", live.GetPayload())
	}
	ids = append(ids, live.GetMessageId())
	if _, err := e.msg.AckMessages(bob.ctx(t), &messagingv1.AckMessagesRequest{MessageIds: ids}); err != nil {
		t.Fatal(err)
	}
	r.cancel()
	// Acknowledged messages are gone from the server: a new stream has an empty backlog.
	r2 := e.receive(t, bob)
	select {
	case <-r2.backlog:
	case d := <-r2.deliveries:
		t.Fatalf("acknowledged message delivered again: %q", d.GetPayload())
	case <-time.After(5 * time.Second):
		t.Fatal("backlog_complete never came")
	}
}

func TestUnackedMessagesComeBackAndSendsAreIdempotent(t *testing.T) {
	unackedMessagesComeBackAndSendsAreIdempotent(t, start(t))
}

func unackedMessagesComeBackAndSendsAreIdempotent(t *testing.T, e *env) {
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	req := &messagingv1.SendMessageRequest{RecipientUserId: bob.UserID, ClientMessageId: clientID(),
		Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1, SealedEnvelope: []byte("once")}}}
	first := must(e.msg.SendMessage(alice.ctx(t), req))
	again := must(e.msg.SendMessage(alice.ctx(t), req))
	if !bytes.Equal(first.GetStored()[0].GetMessageId(), again.GetStored()[0].GetMessageId()) {
		t.Fatal("a retried send got a different message id")
	}
	r := e.receive(t, bob)
	d := r.next(t)
	<-r.backlog
	r.none(t, 300*time.Millisecond)
	r.cancel()
	// Not acked: it comes back on the next stream.
	r2 := e.receive(t, bob)
	if d2 := r2.next(t); !bytes.Equal(d2.GetMessageId(), d.GetMessageId()) {
		t.Fatalf("redelivered %x, want %x", d2.GetMessageId(), d.GetMessageId())
	}
}

func TestStaleDeviceList(t *testing.T) {
	e := start(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	bob2 := e.link(t, bob)
	_, err := e.send(t, alice, bob, []byte("x"), 1)
	wantErr(t, err, codes.FailedPrecondition, "STALE_DEVICE_LIST")
	var mismatch *messagingv1.DeviceListMismatch
	for _, d := range status.Convert(err).Details() {
		if m, ok := d.(*messagingv1.DeviceListMismatch); ok {
			mismatch = m
		}
	}
	if mismatch == nil || fmt.Sprint(mismatch.GetMissingDeviceIds()) != "[2]" || fmt.Sprint(mismatch.GetCurrentDeviceIds()) != "[1 2]" {
		t.Fatalf("mismatch detail = %v", mismatch)
	}
	_, err = e.send(t, alice, bob, []byte("x"), 1, 2, 3)
	wantErr(t, err, codes.FailedPrecondition, "STALE_DEVICE_LIST")
	if _, err := e.send(t, alice, bob, []byte("to both"), 1, 2); err != nil {
		t.Fatal(err)
	}
	if d := e.receive(t, bob2).next(t); string(d.GetPayload()) != "to both" {
		t.Fatalf("second device got %q", d.GetPayload())
	}
	// Writing to one's own account addresses every device but the sender.
	if _, err := e.send(t, bob, bob, []byte("sync"), 2); err != nil {
		t.Fatal(err)
	}
	_, err = e.send(t, bob, bob, []byte("sync"), 1, 2)
	wantErr(t, err, codes.InvalidArgument, "MALFORMED_REQUEST")

	// After bob removes his second device, senders that still address it are told.
	must(e.auth.RemoveDevice(bob.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: 2}))
	_, err = e.send(t, alice, bob, []byte("x"), 1, 2)
	wantErr(t, err, codes.FailedPrecondition, "STALE_DEVICE_LIST")
}

func TestEphemeralIsNeverStored(t *testing.T) {
	e := start(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	ephemeral := func(payload string) *messagingv1.SendEphemeralRequest {
		return &messagingv1.SendEphemeralRequest{RecipientUserId: bob.UserID, Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1, SealedEnvelope: []byte(payload)}}}
	}
	// Offline: not stored. The live event still travels through NATS back to this
	// instance, so a stream that opens within that round trip may get it live, which is
	// harmless for a typing indicator; what must never happen is that it is kept.
	must(e.msg.SendEphemeral(alice.ctx(t), ephemeral("offline")))
	r := e.receive(t, bob)
	<-r.backlog
	// Online: delivered, without a message id.
	must(e.msg.SendEphemeral(alice.ctx(t), ephemeral("online")))
	for {
		d := r.next(t)
		if d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_EPHEMERAL || len(d.GetMessageId()) != 0 {
			t.Fatalf("ephemeral delivery = %v", d)
		}
		if string(d.GetPayload()) == "online" {
			break
		}
		if string(d.GetPayload()) != "offline" {
			t.Fatalf("ephemeral delivery = %v", d)
		}
	}
	// "online" went straight to the local stream; "offline", still on its NATS round trip,
	// may come after it. Nothing else may.
	for quiet := time.After(200 * time.Millisecond); ; {
		var d *messagingv1.Delivery
		select {
		case d = <-r.deliveries:
		case <-quiet:
		}
		if d == nil {
			break
		}
		if d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_EPHEMERAL || string(d.GetPayload()) != "offline" {
			t.Fatalf("unexpected delivery %v", d)
		}
	}
	r.cancel()
	r2 := e.receive(t, bob)
	<-r2.backlog
	r2.none(t, 200*time.Millisecond)
}

func TestOneStreamPerDevice(t *testing.T) {
	e := start(t)
	bob := e.register(t, "bob")
	first := e.receive(t, bob)
	<-first.backlog
	second := e.receive(t, bob)
	<-second.backlog
	select {
	case err := <-first.errs:
		wantErr(t, err, codes.Aborted, "STREAM_SUPERSEDED")
	case <-time.After(5 * time.Second):
		t.Fatal("the first stream was not superseded")
	}
}

func TestRemovedDeviceLosesStreamAndInbox(t *testing.T) {
	e := start(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	bob2 := e.link(t, bob)
	r := e.receive(t, bob2)
	<-r.backlog
	must(e.send(t, alice, bob, []byte("queued"), 1, 2))
	r.next(t)
	must(e.auth.RemoveDevice(bob.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: 2}))
	select {
	case err := <-r.errs:
		wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	case <-time.After(10 * time.Second):
		t.Fatal("the removed device's stream did not end")
	}
	// Its token no longer works anywhere.
	_, err := e.msg.AckMessages(bob2.ctx(t), &messagingv1.AckMessagesRequest{})
	wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
}

func TestUnackedWindowIsBounded(t *testing.T) {
	acks := map[string]func(t *testing.T, e *env, bob *device, r *receiver, ids [][]byte){
		"AckMessages": func(t *testing.T, e *env, bob *device, _ *receiver, ids [][]byte) {
			must(e.msg.AckMessages(bob.ctx(t), &messagingv1.AckMessagesRequest{MessageIds: ids}))
		},
		"on the stream": func(t *testing.T, _ *env, _ *device, r *receiver, ids [][]byte) { r.ack(t, ids...) },
	}
	for name, ack := range acks {
		t.Run(name, func(t *testing.T) {
			e := start(t)
			alice, bob := e.register(t, "alice"), e.register(t, "bob")
			r := e.receive(t, bob)
			<-r.backlog
			const n = 1100 // beyond the default window of 1024
			for i := range n {
				must(e.send(t, alice, bob, fmt.Appendf(nil, "m%d", i)))
			}
			var got [][]byte
			for len(got) < 1024 {
				got = append(got, r.next(t).GetMessageId())
			}
			r.none(t, 300*time.Millisecond)
			ack(t, e, bob, r, got[:500])
			for range n - 1024 {
				r.next(t)
			}
		})
	}
}

// TestAcksOnTheStream acknowledges on the Receive stream itself: acknowledged messages
// are gone when the device reconnects, the others come back.
func TestAcksOnTheStream(t *testing.T) {
	e := start(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	r := e.receive(t, bob)
	<-r.backlog
	var ids [][]byte
	for i := range 5 {
		must(e.send(t, alice, bob, fmt.Appendf(nil, "m%d", i)))
		ids = append(ids, r.next(t).GetMessageId())
	}
	r.ack(t, ids[0], ids[1])
	r.ack(t, ids[3], ids[3]) // a repeated id is ignored
	// The stream answers no acknowledgement, but it reads them in order: once a
	// malformed one has ended it, the ones before it are applied.
	r.ack(t, []byte("short"))
	select {
	case err := <-r.errs:
		wantErr(t, err, codes.InvalidArgument, "LIMIT_EXCEEDED")
	case <-time.After(10 * time.Second):
		t.Fatal("the stream survived a malformed acknowledgement")
	}
	again := e.receive(t, bob)
	<-again.backlog
	var left [][]byte
	for len(again.deliveries) > 0 {
		left = append(left, (<-again.deliveries).GetMessageId())
	}
	if len(left) != 2 || !bytes.Equal(left[0], ids[2]) || !bytes.Equal(left[1], ids[4]) {
		t.Fatalf("after acknowledging messages 0, 1 and 3 the inbox holds %x, want messages 2 and 4", left)
	}
}

// TestBadAcksOnTheStreamEndIt sends malformed acknowledgements on the stream: each ends
// the stream with its reason and deletes nothing.
func TestBadAcksOnTheStreamEndIt(t *testing.T) {
	e := start(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	tooMany := make([][]byte, 1001)
	for i := range tooMany {
		tooMany[i] = clientID()
	}
	cases := []struct {
		name   string
		ids    func(got []byte) [][]byte
		code   codes.Code
		reason string
	}{
		{"short id", func(got []byte) [][]byte { return [][]byte{got, got[:15]} }, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"long id", func(got []byte) [][]byte { return [][]byte{got, append(got, 0)} }, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"too many ids", func(got []byte) [][]byte { return append(tooMany[:1000:1000], got) }, codes.InvalidArgument, "LIMIT_EXCEEDED"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.receive(t, bob)
			<-r.backlog
			must(e.send(t, alice, bob, []byte("x")))
			got := r.next(t).GetMessageId()
			r.ack(t, c.ids(got)...)
			select {
			case err := <-r.errs:
				wantErr(t, err, c.code, c.reason)
			case <-time.After(10 * time.Second):
				t.Fatal("the stream survived a malformed acknowledgement")
			}
			// Nothing was deleted: the message comes back on the next stream, and a
			// valid acknowledgement then clears it for the next case.
			again := e.receive(t, bob)
			if d := again.next(t); !bytes.Equal(d.GetMessageId(), got) {
				t.Fatalf("redelivered %x, want %x", d.GetMessageId(), got)
			}
			must(e.msg.AckMessages(bob.ctx(t), &messagingv1.AckMessagesRequest{MessageIds: [][]byte{got}}))
			again.cancel()
		})
	}
}

// TestIdleStreamsGiveBackTheirGoroutines checks what keeps an idle device cheap
// (docs/perf-idle.md): sending and reading acknowledgements run on goroutines that exist
// only while a stream has work, so a stream that had traffic and went quiet is back to
// its handler alone. The server runs in this process, so its goroutines can be counted
// by the function they run.
func TestIdleStreamsGiveBackTheirGoroutines(t *testing.T) {
	e := startWith(t, func(c *platform.Config) { c.Limits = ratelimit.Policy{} })
	alice := e.register(t, "alice")
	const n = 40
	devices := make([]*device, n)
	receivers := make([]*receiver, n)
	for i := range devices {
		devices[i] = e.register(t, fmt.Sprintf("idle%d", i))
		receivers[i] = e.receive(t, devices[i])
		<-receivers[i].backlog
	}
	workers := func() (pumps, readers int) {
		buf := make([]byte, 16<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return strings.Count(stacks, "messaging.(*liveStream).pump("), strings.Count(stacks, "messaging.(*liveStream).readAcks(")
	}
	// expect polls the stacks until ok accepts the workers they show: a pump lingers for
	// a second after its last work, and a loaded machine may take longer to start or end one.
	expect := func(when, want string, ok func(pumps, readers int) bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			p, r := workers()
			if ok(p, r) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d pumps and %d ack readers, want %s", when, p, r, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	none := func(p, r int) bool { return p == 0 && r == 0 }

	expect("after the backlogs", "none", none)
	got := make([][]byte, n)
	for i, d := range devices {
		must(e.send(t, alice, d, []byte("hello")))
		got[i] = receivers[i].next(t).GetMessageId()
	}
	// Every stream awaits an acknowledgement, so each keeps its ack reader. Its pump may
	// already have lingered out: the 40 sends take more than pumpLinger on a loaded
	// machine, and an idle pump ending is what this test wants.
	expect(fmt.Sprintf("with a delivery awaiting acknowledgement on each of %d streams", n),
		fmt.Sprintf("at most %d and %d", n, n), func(p, r int) bool { return p <= n && r == n })
	for i, r := range receivers {
		r.ack(t, got[i])
	}
	expect("after the acknowledgements", "none", none)
}

func TestInboxCap(t *testing.T) {
	e := startWith(t, func(c *platform.Config) { c.InboxLimit = 5 })
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	for range 5 {
		must(e.send(t, alice, bob, []byte("x")))
	}
	_, err := e.send(t, alice, bob, []byte("x"))
	wantErr(t, err, codes.ResourceExhausted, "INBOX_FULL")
}

func TestGroupDeliveryService(t *testing.T) {
	e := start(t)
	alice, bob, carol := e.register(t, "alice"), e.register(t, "bob"), e.register(t, "carol")
	gid := clientID()
	addr := func(d *device) *commonv1.DeviceAddress {
		return &commonv1.DeviceAddress{UserId: d.UserID, DeviceId: d.ID}
	}
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: []*commonv1.DeviceAddress{addr(alice), addr(bob)}, GroupInfo: []byte("gi0")}))
	_, err := e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: []*commonv1.DeviceAddress{addr(alice)}})
	wantErr(t, err, codes.AlreadyExists, "GROUP_EXISTS")

	bobStream := e.receive(t, bob)
	<-bobStream.backlog
	commit := &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: 0, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 0), GroupInfo: []byte("gi1"),
		Welcome: mlsframe.Welcome(mlsframe.Ref(1)), WelcomeRecipients: []*commonv1.DeviceAddress{addr(carol)}, Added: []*commonv1.DeviceAddress{addr(carol)}}
	if resp := must(e.msg.SubmitCommit(alice.ctx(t), commit)); resp.GetEpoch() != 1 {
		t.Fatalf("epoch after commit = %d", resp.GetEpoch())
	}
	// The losing commit of the same epoch is refused, naming the current epoch.
	_, err = e.msg.SubmitCommit(bob.ctx(t), &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: 0, Commit: []byte("commit-b"), GroupInfo: []byte("gi1b")})
	wantErr(t, err, codes.Aborted, "EPOCH_CONFLICT")
	if c, ok := status.Convert(err).Details()[1].(*messagingv1.EpochConflict); !ok || c.GetCurrentEpoch() != 1 {
		t.Fatalf("conflict detail = %v", status.Convert(err).Details())
	}
	if d := bobStream.next(t); d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT || !bytes.Equal(d.GetPayload(), commit.GetCommit()) || !bytes.Equal(d.GetGroupId(), gid) {
		t.Fatalf("bob got %v", d)
	}
	carolStream := e.receive(t, carol)
	if d := carolStream.next(t); d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_WELCOME || len(d.GetPayload()) != 0 || d.GetEpoch() != 1 {
		t.Fatalf("carol got %v", d)
	}
	if w := must(e.msg.FetchWelcome(carol.ctx(t), &messagingv1.FetchWelcomeRequest{GroupId: gid})); !bytes.Equal(w.GetWelcome(), commit.GetWelcome()) {
		t.Fatalf("fetched welcome %q", w.GetWelcome())
	}
	// Application messages: current and previous epoch accepted, others refused.
	for _, epoch := range []uint64{1, 0} {
		must(e.msg.SendGroupMessage(alice.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: gid, Epoch: epoch, PrivateMessage: mlsframe.PrivateMessage(gid, epoch, mlsframe.Application, 0), ClientMessageId: clientID()}))
	}
	_, err = e.msg.SendGroupMessage(alice.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: gid, Epoch: 5, PrivateMessage: []byte("hi"), ClientMessageId: clientID()})
	wantErr(t, err, codes.FailedPrecondition, "EPOCH_MISMATCH")
	for range 2 {
		if d := carolStream.next(t); d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE {
			t.Fatalf("carol got %v", d)
		}
	}
	info := must(e.msg.GetGroupInfo(carol.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: gid}))
	if info.GetEpoch() != 1 || string(info.GetGroupInfo()) != "gi1" || len(info.GetMembers()) != 3 {
		t.Fatalf("group info = %v", info)
	}
	// Non-members can neither write nor read.
	dave := e.register(t, "dave")
	_, err = e.msg.SendGroupMessage(dave.ctx(t), &messagingv1.SendGroupMessageRequest{GroupId: gid, Epoch: 1, PrivateMessage: []byte("x"), ClientMessageId: clientID()})
	wantErr(t, err, codes.PermissionDenied, "NOT_GROUP_MEMBER")
	_, err = e.msg.GetGroupInfo(dave.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: gid})
	wantErr(t, err, codes.NotFound, "GROUP_NOT_FOUND")
}

func TestBundleFetchesAreRateLimited(t *testing.T) {
	e := startWith(t, func(c *platform.Config) {
		c.Limits = platform.DefaultPolicy()
		c.Limits["bundles"] = ratelimit.Config{Rate: 0.001, Burst: 3, MaxKeys: 100}
	})
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	for range 3 {
		must(e.auth.GetKeyBundles(alice.ctx(t), &authv1.GetKeyBundlesRequest{UserId: bob.UserID}))
	}
	_, err := e.auth.GetKeyBundles(alice.ctx(t), &authv1.GetKeyBundlesRequest{UserId: bob.UserID})
	wantErr(t, err, codes.ResourceExhausted, "RATE_LIMITED")
	// Another caller has its own budget.
	carol := e.register(t, "carol")
	must(e.auth.GetKeyBundles(carol.ctx(t), &authv1.GetKeyBundlesRequest{UserId: bob.UserID}))
}

func TestSendStreamEndsWhenItsDeviceIsRemoved(t *testing.T) {
	e := start(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	alice2 := e.link(t, alice)
	stream := must(e.msg.SendStream(alice2.ctx(t)))
	send := func(id uint64) error {
		return stream.Send(&messagingv1.SendStreamRequest{RequestId: id, Message: rawdeviceSend(bob, "x")})
	}
	if err := send(1); err != nil {
		t.Fatal(err)
	}
	if resp := must(stream.Recv()); resp.GetSent() == nil {
		t.Fatalf("first send failed: %v", resp.GetError())
	}
	must(e.auth.RemoveDevice(alice.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: alice2.ID}))
	// The removal reaches messaging's directory through NATS; the stream ends at the
	// next send after it.
	deadline := time.Now().Add(10 * time.Second)
	for id := uint64(2); time.Now().Before(deadline); id++ {
		// Send fails once the server has ended the stream; Recv then reports why.
		_ = send(id)
		if _, err := stream.Recv(); err != nil {
			wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("a removed device kept sending on its open stream")
}

func rawdeviceSend(to *device, body string) *messagingv1.SendMessageRequest {
	return rawdevice.SendRequest(to.UserID, []byte(body), to.ID)
}

// TestSendStreamBatchKeepsEachSendsSemantics writes a burst of sends before reading any
// answer, so the server stores them in batches: each send must still get its own answer,
// a retry inside a batch must be stored once, a bad send must not sink its neighbours,
// and the inbox cap must count the sends of the same batch.
func TestSendStreamBatchKeepsEachSendsSemantics(t *testing.T) {
	const limit = 20
	e := startWith(t, func(c *platform.Config) { c.Limits = ratelimit.Policy{}; c.InboxLimit = limit })
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	stream := must(e.msg.SendStream(alice.ctx(t)))
	retried := rawdeviceSend(bob, "retried")
	const n = 40
	for id := uint64(1); id <= n; id++ {
		req := rawdeviceSend(bob, fmt.Sprintf("m%d", id))
		switch id {
		case 2, 3:
			req = retried
		case 5:
			req = rawdevice.SendRequest("nobody", []byte("x"), 1)
		}
		if err := stream.Send(&messagingv1.SendStreamRequest{RequestId: id, Message: req}); err != nil {
			t.Fatal(err)
		}
	}
	must(0, stream.CloseSend())
	sent, full := map[uint64][]byte{}, 0
	for range n {
		resp := must(stream.Recv())
		switch {
		case resp.GetSent() != nil:
			sent[resp.GetRequestId()] = resp.GetSent().GetStored()[0].GetMessageId()
		case resp.GetRequestId() == 5:
			if resp.GetError().GetReason() != "USER_NOT_FOUND" {
				t.Errorf("send to nobody: %v", resp.GetError())
			}
		case resp.GetError().GetReason() == "INBOX_FULL":
			full++
		default:
			t.Errorf("request %d: %v", resp.GetRequestId(), resp.GetError())
		}
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("after the last answer: %v, want EOF", err)
	}
	if sent[2] == nil || !bytes.Equal(sent[2], sent[3]) {
		t.Errorf("a retried send got ids %x and %x, want one id", sent[2], sent[3])
	}
	// 39 valid sends, two of them the same message: 38 distinct messages for an inbox
	// of 20. The retry may be counted twice against the cap, never stored twice.
	if stored := len(sent); stored < limit-1 || stored > limit+1 || full != n-1-stored {
		t.Errorf("%d sends stored, %d refused as INBOX_FULL, inbox limit %d", stored, full, limit)
	}
	r := e.receive(t, bob)
	<-r.backlog
	got := map[string]bool{}
	for range len(r.deliveries) {
		got[string((<-r.deliveries).GetMessageId())] = true
	}
	distinct := map[string]bool{}
	for _, id := range sent {
		distinct[string(id)] = true
	}
	if len(got) != len(distinct) || len(got) > limit {
		t.Errorf("bob's inbox holds %d messages; %d distinct sends were acknowledged, limit %d", len(got), len(distinct), limit)
	}
}
