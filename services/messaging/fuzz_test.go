package messaging_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	"github.com/guardyn/guardyn/libs/kv"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/msgstore"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
	"github.com/guardyn/guardyn/libs/server"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
	"github.com/guardyn/guardyn/services/messaging"
)

// Fixed accounts of the fuzz harness. The directory is a fixed map, so user ids are
// stable across fuzz worker processes and seeds stay meaningful.
const (
	aliceID = "a11ce000000000000000000000000001"
	bobID   = "b0b00000000000000000000000000002"
)

// staticDirectory is the device directory the harness serves: alice has devices 1 and 2,
// bob devices 1 to 3.
type staticDirectory map[string][]uint32

func (d staticDirectory) Devices(_ context.Context, userID string) ([]uint32, bool, error) {
	devs, ok := d[userID]
	return devs, ok, nil
}

// handlerEnv is one messaging Server called in process, with the embedded kv store, the
// embedded message store and an embedded NATS server under a temp dir. Calls carry an
// authn.Principal put in the context with authn.NewContext, standing in for the
// authentication interceptor; the field-limit validator runs first, as the server does.
type handlerEnv struct {
	svc     *messaging.Server
	groups  kv.Store
	inboxes msgstore.Store
	limits  server.Validator
	bus     *bus.Bus
	// seen are the inboxes the harness counts before and after every call: the fixed
	// devices plus (up to a bound) every device a request has addressed.
	seen map[msgstore.Inbox]bool
}

const maxSeenInboxes = 256

func newHandlerEnv(tb testing.TB) *handlerEnv {
	tb.Helper()
	dir := tb.TempDir()
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	groups, err := kvembedded.Open(filepath.Join(dir, kvembedded.FileName), kvembedded.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { groups.Close() })
	inboxes, err := msgembedded.Open(filepath.Join(dir, msgembedded.DirName), msgembedded.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { inboxes.Close() })
	b, err := bus.StartEmbedded(ctx, filepath.Join(dir, "nats"), bus.EmbeddedOptions{Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	dirMap := staticDirectory{aliceID: {1, 2}, bobID: {1, 2, 3}}
	svc, err := messaging.New(messaging.Config{
		Inboxes: inboxes, Groups: groups, Directory: dirMap, Conn: b.Conn(), Logger: quiet,
		InboxLimit: 50,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { svc.Close() })
	fieldLimits, err := protolimits.FromAPI()
	if err != nil {
		tb.Fatal(err)
	}
	e := &handlerEnv{svc: svc, groups: groups, inboxes: inboxes, limits: server.FieldLimits(fieldLimits), bus: b, seen: map[msgstore.Inbox]bool{}}
	for user, devs := range dirMap {
		for _, d := range devs {
			e.seen[inbox(user, d)] = true
		}
	}
	return e
}

func inbox(user string, device uint32) msgstore.Inbox {
	return msgstore.Inbox{UserID: user, DeviceID: strconv.FormatUint(uint64(device), 10)}
}

// asAlice is the context of a call authenticated as alice's device 1 (the interceptor's
// job, done here by authn.NewContext).
func asAlice() context.Context {
	return authn.NewContext(context.Background(), authn.Principal{UserID: aliceID, DeviceID: 1})
}

// state is everything a rejected request must leave untouched: the group registry and
// the message counts of the inboxes the harness tracks.
type state struct {
	groups  [32]byte
	inboxes map[msgstore.Inbox]int
}

func (e *handlerEnv) snapshot(tb testing.TB) state {
	tb.Helper()
	h := sha256.New()
	err := e.groups.View(context.Background(), func(tx kv.Tx) error {
		pairs, err := kv.ScanPrefix(tx, []byte("msg/"), 0)
		for _, p := range pairs {
			if bytes.HasPrefix(p.Key, []byte("msg/fanout/")) {
				continue // the commit outbox, which the replayer tidies in the background
			}
			h.Write(p.Key)
			h.Write([]byte{0})
			h.Write(p.Value)
			h.Write([]byte{0})
		}
		return err
	})
	if err != nil {
		tb.Fatalf("snapshot groups: %v", err)
	}
	s := state{inboxes: make(map[msgstore.Inbox]int, len(e.seen))}
	copy(s.groups[:], h.Sum(nil))
	for in := range e.seen {
		n, err := e.inboxes.Count(context.Background(), in)
		if err != nil {
			tb.Fatalf("count %v: %v", in, err)
		}
		s.inboxes[in] = n
	}
	return s
}

// track adds the inboxes a request addresses to the counted set.
func (e *handlerEnv) track(user string, devices ...uint32) {
	for _, d := range devices {
		in := inbox(user, d)
		if len(e.seen) < maxSeenInboxes && in.Validate() == nil && d != 0 {
			e.seen[in] = true
		}
	}
}

func (e *handlerEnv) trackAddresses(addrs ...[]*commonv1.DeviceAddress) {
	for _, list := range addrs {
		for _, a := range list {
			e.track(a.GetUserId(), a.GetDeviceId())
		}
	}
}

// messagingRPCs are the fuzzed methods, with the reasons their proto documents.
var messagingRPCs = []struct {
	name    string
	newReq  func() proto.Message
	reasons []string
}{
	{"SendMessage", func() proto.Message { return &messagingv1.SendMessageRequest{} },
		[]string{"LIMIT_EXCEEDED", "MALFORMED_REQUEST", "USER_NOT_FOUND", "STALE_DEVICE_LIST", "INBOX_FULL", "RATE_LIMITED"}},
	{"SendEphemeral", func() proto.Message { return &messagingv1.SendEphemeralRequest{} },
		[]string{"LIMIT_EXCEEDED", "MALFORMED_REQUEST", "USER_NOT_FOUND", "STALE_DEVICE_LIST", "RATE_LIMITED"}},
	{"AckMessages", func() proto.Message { return &messagingv1.AckMessagesRequest{} },
		[]string{"LIMIT_EXCEEDED", "RATE_LIMITED"}},
	{"CreateGroup", func() proto.Message { return &messagingv1.CreateGroupRequest{} },
		[]string{"LIMIT_EXCEEDED", "MALFORMED_REQUEST", "DEVICE_NOT_FOUND", "GROUP_EXISTS", "RATE_LIMITED"}},
	{"SubmitCommit", func() proto.Message { return &messagingv1.SubmitCommitRequest{} },
		[]string{"LIMIT_EXCEEDED", "MALFORMED_REQUEST", "GROUP_NOT_FOUND", "DEVICE_NOT_FOUND", "NOT_GROUP_MEMBER", "EPOCH_CONFLICT", "INBOX_FULL", "RATE_LIMITED"}},
	{"SendGroupMessage", func() proto.Message { return &messagingv1.SendGroupMessageRequest{} },
		[]string{"LIMIT_EXCEEDED", "MALFORMED_REQUEST", "GROUP_NOT_FOUND", "NOT_GROUP_MEMBER", "EPOCH_MISMATCH", "INBOX_FULL", "RATE_LIMITED"}},
}

// reasonCodes is the one gRPC code of each reason (common.proto, docs/api.md).
var reasonCodes = map[string]codes.Code{
	"LIMIT_EXCEEDED":    codes.InvalidArgument,
	"MALFORMED_REQUEST": codes.InvalidArgument,
	"USER_NOT_FOUND":    codes.NotFound,
	"STALE_DEVICE_LIST": codes.FailedPrecondition,
	"INBOX_FULL":        codes.ResourceExhausted,
	"RATE_LIMITED":      codes.ResourceExhausted,
	"GROUP_EXISTS":      codes.AlreadyExists,
	"GROUP_NOT_FOUND":   codes.NotFound,
	"NOT_GROUP_MEMBER":  codes.PermissionDenied,
	"EPOCH_CONFLICT":    codes.Aborted,
	"EPOCH_MISMATCH":    codes.FailedPrecondition,
	"DEVICE_NOT_FOUND":  codes.NotFound,
}

// call runs one request through the field-limit validator and the handler, as the gRPC
// server would.
func (e *handlerEnv) call(ctx context.Context, req proto.Message) error {
	if err := e.limits(req); err != nil {
		return err
	}
	var err error
	switch r := req.(type) {
	case *messagingv1.SendMessageRequest:
		_, err = e.svc.SendMessage(ctx, r)
	case *messagingv1.SendEphemeralRequest:
		_, err = e.svc.SendEphemeral(ctx, r)
	case *messagingv1.AckMessagesRequest:
		_, err = e.svc.AckMessages(ctx, r)
	case *messagingv1.CreateGroupRequest:
		_, err = e.svc.CreateGroup(ctx, r)
	case *messagingv1.SubmitCommitRequest:
		_, err = e.svc.SubmitCommit(ctx, r)
	case *messagingv1.SendGroupMessageRequest:
		_, err = e.svc.SendGroupMessage(ctx, r)
	default:
		return errors.New("harness: unexpected request type")
	}
	return err
}

// fuzzGroup is the group the harness creates up front, with alice/1 and bob/1 in it.
var fuzzGroup = []byte("fuzz-group-0")

func addr(user string, device uint32) *commonv1.DeviceAddress {
	return &commonv1.DeviceAddress{UserId: user, DeviceId: device}
}

// messagingSeeds are valid and near-valid requests, by index into messagingRPCs.
func messagingSeeds() map[int][]proto.Message {
	id := bytes.Repeat([]byte{7}, 16)
	env := func(d uint32) *messagingv1.DeviceEnvelope {
		return &messagingv1.DeviceEnvelope{DeviceId: d, SealedEnvelope: []byte("sealed")}
	}
	return map[int][]proto.Message{
		0: {
			&messagingv1.SendMessageRequest{RecipientUserId: bobID, ClientMessageId: id, Envelopes: []*messagingv1.DeviceEnvelope{env(1), env(2), env(3)}},
			&messagingv1.SendMessageRequest{RecipientUserId: aliceID, ClientMessageId: id, Envelopes: []*messagingv1.DeviceEnvelope{env(2)}},
			&messagingv1.SendMessageRequest{RecipientUserId: bobID, ClientMessageId: id, Envelopes: []*messagingv1.DeviceEnvelope{env(1), env(2)}},
			&messagingv1.SendMessageRequest{RecipientUserId: bobID, ClientMessageId: id[:15], Envelopes: []*messagingv1.DeviceEnvelope{env(1), env(1)}},
			&messagingv1.SendMessageRequest{RecipientUserId: "nobody", ClientMessageId: id, Envelopes: []*messagingv1.DeviceEnvelope{env(1)}},
		},
		1: {
			&messagingv1.SendEphemeralRequest{RecipientUserId: bobID, Envelopes: []*messagingv1.DeviceEnvelope{env(1), env(2), env(3)}},
			&messagingv1.SendEphemeralRequest{RecipientUserId: aliceID, Envelopes: []*messagingv1.DeviceEnvelope{env(1), env(2)}},
		},
		2: {
			&messagingv1.AckMessagesRequest{MessageIds: [][]byte{id, bytes.Repeat([]byte{1}, 16)}},
			&messagingv1.AckMessagesRequest{MessageIds: [][]byte{id[:3]}},
		},
		3: {
			&messagingv1.CreateGroupRequest{GroupId: []byte("g1"), Members: []*commonv1.DeviceAddress{addr(aliceID, 1), addr(bobID, 2)}, GroupInfo: []byte("gi")},
			&messagingv1.CreateGroupRequest{GroupId: fuzzGroup, Members: []*commonv1.DeviceAddress{addr(aliceID, 1)}},
			&messagingv1.CreateGroupRequest{GroupId: []byte("g2"), Members: []*commonv1.DeviceAddress{addr(aliceID, 1), addr(aliceID, 1)}},
			&messagingv1.CreateGroupRequest{GroupId: []byte("g3"), Members: []*commonv1.DeviceAddress{addr(bobID, 0)}},
		},
		4: {
			&messagingv1.SubmitCommitRequest{GroupId: fuzzGroup, Epoch: 0, Commit: mlsframe.PrivateMessage(fuzzGroup, 0, mlsframe.Commit, 0), GroupInfo: []byte("gi1"),
				Welcome: mlsframe.Welcome(mlsframe.Ref(1)), WelcomeRecipients: []*commonv1.DeviceAddress{addr(bobID, 3)}, Added: []*commonv1.DeviceAddress{addr(bobID, 3)}},
			&messagingv1.SubmitCommitRequest{GroupId: fuzzGroup, Epoch: 0, Commit: mlsframe.PrivateMessage(fuzzGroup, 0, mlsframe.Commit, 0), GroupInfo: []byte("gi1"), Removed: []*commonv1.DeviceAddress{addr(bobID, 1)}},
			&messagingv1.SubmitCommitRequest{GroupId: fuzzGroup, Epoch: 9, Commit: []byte("c"), GroupInfo: []byte("g")},
			&messagingv1.SubmitCommitRequest{GroupId: fuzzGroup, Epoch: 0, Commit: []byte("c"), GroupInfo: []byte("g"), Removed: []*commonv1.DeviceAddress{addr(bobID, 2)}},
			&messagingv1.SubmitCommitRequest{GroupId: fuzzGroup, Commit: []byte("c"), GroupInfo: []byte("g"), Welcome: []byte("w")},
		},
		5: {
			&messagingv1.SendGroupMessageRequest{GroupId: fuzzGroup, Epoch: 0, PrivateMessage: mlsframe.PrivateMessage(fuzzGroup, 0, mlsframe.Application, 0), ClientMessageId: id},
			&messagingv1.SendGroupMessageRequest{GroupId: fuzzGroup, Epoch: 7, PrivateMessage: []byte("pm"), ClientMessageId: id},
			&messagingv1.SendGroupMessageRequest{GroupId: []byte("none"), Epoch: 0, PrivateMessage: []byte("pm"), ClientMessageId: id},
		},
	}
}

// FuzzMessagingHandlers unmarshals fuzz bytes into a request of one of six RPCs and calls
// the real handler in process as alice/1 (the context carries an authn.Principal in place
// of the interceptor). It asserts that nothing panics, that every error is a gRPC status
// with a documented reason and its documented code, and that a rejected request changes
// neither the group registry nor any tracked inbox.
func FuzzMessagingHandlers(f *testing.F) {
	for i, reqs := range messagingSeeds() {
		for _, r := range reqs {
			b, err := proto.Marshal(r)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), b)
		}
	}
	e := newHandlerEnv(f)
	if _, err := e.svc.CreateGroup(asAlice(), &messagingv1.CreateGroupRequest{
		GroupId: fuzzGroup, Members: []*commonv1.DeviceAddress{addr(aliceID, 1), addr(bobID, 1)}, GroupInfo: []byte("gi0"),
	}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		rpc := messagingRPCs[int(which)%len(messagingRPCs)]
		req := rpc.newReq()
		if proto.Unmarshal(data, req) != nil {
			return // the gRPC codec rejects it before any handler runs
		}
		switch r := req.(type) {
		case *messagingv1.SendMessageRequest:
			for _, env := range r.GetEnvelopes() {
				e.track(r.GetRecipientUserId(), env.GetDeviceId())
			}
		case *messagingv1.CreateGroupRequest:
			e.trackAddresses(r.GetMembers())
		case *messagingv1.SubmitCommitRequest:
			e.trackAddresses(r.GetAdded(), r.GetRemoved(), r.GetWelcomeRecipients())
		}
		before := e.snapshot(t)
		err := e.call(asAlice(), req)
		if err == nil {
			return
		}
		checkStatus(t, rpc.name, err, rpc.reasons)
		after := e.snapshot(t)
		if before.groups != after.groups {
			t.Fatalf("%s rejected with %v but changed the group registry", rpc.name, err)
		}
		if !maps.Equal(before.inboxes, after.inboxes) {
			t.Fatalf("%s rejected with %v but changed inbox counts: before %v, after %v", rpc.name, err, before.inboxes, after.inboxes)
		}
	})
}

// checkStatus fails unless err is a status whose reason is one of reasons, with its code.
func checkStatus(t *testing.T, rpc string, err error, reasons []string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s returned a non-status error %T: %v", rpc, err, err)
	}
	reason := server.Reason(err)
	if !slices.Contains(reasons, reason) {
		t.Fatalf("%s returned %v/%q (%s), not a documented reason %v", rpc, st.Code(), reason, st.Message(), reasons)
	}
	if want := reasonCodes[reason]; st.Code() != want {
		t.Fatalf("%s returned reason %s with code %v, want %v", rpc, reason, st.Code(), want)
	}
}
