package messaging

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/server"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// The MLS delivery service keeps its registry in the kv store under "msg/":
//
//	msg/group/<hex group id>                          → groupRecord
//	msg/welcome/<hex group id>/<user>/<device>        → welcomeRecord (a reference)
//	msg/welcome-body/<hex group id>/<epoch>           → the Welcome, stored once per commit
//	msg/welcome-state/…, msg/welcomex/…               → when it is deleted (welcomes.go)
//	msg/fanout/<hex group id>/<epoch>                 → outbox entry: fanOutRecord
//
// It never sees group secrets: commits, proposals, Welcomes and GroupInfos are opaque MLS
// messages, and handshakes arrive as PrivateMessage, so it cannot read which proposals a
// commit carries. It only orders them: one commit per epoch, the first one wins. The
// membership it keeps is what committers declare (added, removed), which is what decides
// where commits and Welcomes go.

type member struct {
	UserID   string `json:"u"`
	DeviceID uint32 `json:"d"`
}

type groupRecord struct {
	Epoch     uint64    `json:"epoch"`
	Members   []member  `json:"members"`
	GroupInfo []byte    `json:"group_info"`
	CreatedAt time.Time `json:"created_at"`
	// Last is the commit that moved the group to Epoch, so that its committer's retry
	// (the response was lost) succeeds instead of meeting EPOCH_CONFLICT.
	Last *lastCommit `json:"last,omitempty"`
}

type lastCommit struct {
	Hash []byte    `json:"hash"` // SHA-256 of the commit message
	By   member    `json:"by"`
	At   time.Time `json:"at"`
}

// welcomeRecord points a device at the Welcome that added it; the Welcome itself is
// stored once under welcomeBodyKey. Records written before that carry it inline.
type welcomeRecord struct {
	Epoch   uint64 `json:"epoch"`
	Welcome []byte `json:"welcome,omitempty"`
	// Fetched is when the device first fetched the Welcome (welcomes.go).
	Fetched time.Time `json:"fetched,omitzero"`
}

func groupKey(gid []byte) []byte { return []byte("msg/group/" + hex.EncodeToString(gid)) }
func welcomeKey(gid []byte, m member) []byte {
	return []byte("msg/welcome/" + hex.EncodeToString(gid) + "/" + m.UserID + "/" + inboxOf(m.UserID, m.DeviceID).DeviceID)
}
func welcomeBodyKey(gid []byte, epoch uint64) []byte {
	return fmt.Appendf(nil, "msg/welcome-body/%x/%020d", gid, epoch)
}

func (g *groupRecord) has(m member) bool { return slices.Contains(g.Members, m) }

// txAbort carries a status error out of a kv transaction unchanged.
type txAbort struct{ err error }

func (e txAbort) Error() string { return e.err.Error() }

func (s *Server) groupTx(ctx context.Context, op string, write bool, fn func(kv.Tx) error) error {
	run := s.groups.View
	if write {
		run = s.groups.Update
	}
	err := run(ctx, fn)
	var a txAbort
	switch {
	case err == nil:
		return nil
	case errors.As(err, &a):
		return a.err
	default:
		return s.internal(ctx, op, err)
	}
}

// loadGroup returns the group or a GROUP_NOT_FOUND abort.
func loadGroup(tx kv.Tx, gid []byte) (*groupRecord, error) {
	b, err := tx.Get(groupKey(gid))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, txAbort{server.Error(codes.NotFound, reasonGroupNotFound, "no such group")}
	} else if err != nil {
		return nil, err
	}
	var g groupRecord
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

func putGroup(tx kv.Tx, gid []byte, g *groupRecord) error {
	b, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return tx.Put(groupKey(gid), b)
}

func membersOf(addrs []*commonv1.DeviceAddress) ([]member, error) {
	out := make([]member, 0, len(addrs))
	for _, a := range addrs {
		m := member{a.GetUserId(), a.GetDeviceId()}
		if m.UserID == "" || m.DeviceID == 0 {
			return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "a device address needs a user id and a non-zero device id")
		}
		if slices.Contains(out, m) {
			return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "device %s/%d is listed twice", m.UserID, m.DeviceID)
		}
		out = append(out, m)
	}
	return out, nil
}

func addresses(ms []member) []*commonv1.DeviceAddress {
	out := make([]*commonv1.DeviceAddress, len(ms))
	for i, m := range ms {
		out[i] = &commonv1.DeviceAddress{UserId: m.UserID, DeviceId: m.DeviceID}
	}
	return out
}

func self(p authn.Principal) member { return member{p.UserID, p.DeviceID} }

func epochError(code codes.Code, reason string, current uint64) error {
	st, _ := status.FromError(server.Error(code, reason, "the group is at epoch %d", current))
	withDetail, err := st.WithDetails(&messagingv1.EpochConflict{CurrentEpoch: current})
	if err != nil {
		return st.Err()
	}
	return withDetail.Err()
}

// CreateGroup registers a group at epoch 0.
func (s *Server) CreateGroup(ctx context.Context, req *messagingv1.CreateGroupRequest) (*messagingv1.CreateGroupResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("group", p.UserID); err != nil {
		return nil, err
	}
	if len(req.GetGroupId()) == 0 {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "group id is empty")
	}
	members, err := membersOf(req.GetMembers())
	if err != nil {
		return nil, err
	}
	if !slices.Contains(members, self(p)) {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "the calling device must be a member")
	}
	if err := s.checkDevicesExist(ctx, members); err != nil {
		return nil, err
	}
	err = s.groupTx(ctx, "create group", true, func(tx kv.Tx) error {
		if _, err := tx.Get(groupKey(req.GetGroupId())); err == nil {
			return txAbort{server.Error(codes.AlreadyExists, reasonGroupExists, "a group with this id exists")}
		} else if !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		return putGroup(tx, req.GetGroupId(), &groupRecord{Members: members, GroupInfo: req.GetGroupInfo(), CreatedAt: s.now()})
	})
	if err != nil {
		return nil, err
	}
	ds, err := s.externalSender(ctx)
	if err != nil {
		return nil, err
	}
	return &messagingv1.CreateGroupResponse{Epoch: 0, ExternalSender: ds.ExternalSender().Bytes()}, nil
}

// SubmitCommit accepts the first commit of an epoch and fans it out.
//
// The epoch advance and the fan-out it owes are one kv transaction: the fan-out is an
// outbox entry (fanOutRecord) that is delivered right after the commit and, should the
// process die first, by the replayer after the restart. Nothing the RPC accepted is lost
// and the group cannot split between the stores.
func (s *Server) SubmitCommit(ctx context.Context, req *messagingv1.SubmitCommitRequest) (*messagingv1.SubmitCommitResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("group", p.UserID); err != nil {
		return nil, err
	}
	if len(req.GetCommit()) == 0 || len(req.GetGroupInfo()) == 0 {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "commit and group_info are required")
	}
	if (len(req.GetWelcome()) == 0) != (len(req.GetWelcomeRecipients()) == 0) {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "a Welcome needs recipients and recipients need a Welcome")
	}
	added, err := membersOf(req.GetAdded())
	if err != nil {
		return nil, err
	}
	removed, err := membersOf(req.GetRemoved())
	if err != nil {
		return nil, err
	}
	welcomed, err := membersOf(req.GetWelcomeRecipients())
	if err != nil {
		return nil, err
	}
	if !sameMembers(added, welcomed) {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "welcome_recipients must be exactly the added devices, and a commit that adds devices needs a Welcome")
	}
	commit := &messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT, Payload: req.GetCommit(), GroupId: req.GetGroupId(), Epoch: req.GetEpoch()}
	commitSize := proto.Size(commit)
	if commitSize > msgstore.MaxBodySize {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "a %v of %d bytes does not fit an inbox", commit.GetKind(), len(commit.GetPayload()))
	}
	hash := sha256.Sum256(req.GetCommit())
	id := fanOutID(req.GetGroupId(), req.GetEpoch())

	// Everything that can refuse the commit is checked before the transaction, against
	// the epoch's membership (which only a commit changes, and the transaction checks
	// the epoch again).
	g, err := s.loadGroupView(ctx, req.GetGroupId())
	if err != nil {
		return nil, err
	}
	if g.isRetry(req.GetEpoch(), hash[:], self(p)) {
		return s.committed(ctx, id, g.Epoch, g.Last.At), nil
	}
	if !g.has(self(p)) {
		return nil, server.Error(codes.PermissionDenied, reasonNotGroupMember, "the calling device is not a member of the group")
	}
	if req.GetEpoch() != g.Epoch {
		return nil, epochError(codes.Aborted, reasonEpochConflict, g.Epoch)
	}
	if err := g.checkChange(added, removed); err != nil {
		return nil, err
	}
	if err := s.checkDevicesExist(ctx, added); err != nil {
		return nil, err
	}
	if err := checkHandshake(req.GetCommit(), req.GetGroupId(), req.GetEpoch(), true); err != nil {
		return nil, err
	}
	if len(added) > 0 {
		if err := checkWelcome(req.GetWelcome(), len(added)); err != nil {
			return nil, err
		}
	}
	recipients := slices.DeleteFunc(slices.Clone(g.Members), func(m member) bool { return m == self(p) })
	notice := &messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_WELCOME, GroupId: req.GetGroupId(), Epoch: req.GetEpoch() + 1}
	// The commit is stored once in the group log; each recipient gets a fixed-size notice.
	total := int64(commitSize) + int64(logNoticeHeader+len(req.GetGroupId())+len(msgstore.ID{}))*int64(len(recipients)) + int64(proto.Size(notice)+len(msgstore.ID{}))*int64(len(added)) +
		int64(len(req.GetWelcome())) + int64(len(req.GetGroupInfo()))
	if total > s.commitBytes {
		return nil, server.Error(codes.InvalidArgument, reasonLimitExceeded, "the commit would store %d bytes for %d devices; the limit is %d", total, len(recipients)+len(added), s.commitBytes)
	}
	// Inbox caps hold for handshakes too; a removed device's full inbox cannot block the
	// commit that removes it.
	if err := s.checkInboxCaps(ctx, append(slices.DeleteFunc(slices.Clone(recipients), func(m member) bool { return slices.Contains(removed, m) }), added...)); err != nil {
		return nil, err
	}

	rec := fanOutRecord{Sender: self(p), GroupID: req.GetGroupId(), Epoch: req.GetEpoch(), Commit: req.GetCommit(), To: recipients, Welcomed: added, At: s.now()}
	entry, err := json.Marshal(rec)
	if err != nil {
		return nil, s.internal(ctx, "encode fan-out", err)
	}
	err = s.groupTx(ctx, "submit commit", true, func(tx kv.Tx) error {
		g, err := loadGroup(tx, req.GetGroupId())
		if err != nil {
			return err
		}
		if g.isRetry(req.GetEpoch(), hash[:], self(p)) {
			return txAbort{errRetried{g}}
		}
		if req.GetEpoch() != g.Epoch {
			return txAbort{epochError(codes.Aborted, reasonEpochConflict, g.Epoch)}
		}
		g.Members = slices.DeleteFunc(g.Members, func(m member) bool { return slices.Contains(removed, m) })
		g.Members = append(g.Members, added...)
		g.Epoch++
		g.GroupInfo = req.GetGroupInfo()
		g.Last = &lastCommit{Hash: hash[:], By: self(p), At: rec.At}
		if len(added) > 0 {
			// The Welcome expires with its notices (fanOut's expiry of rec.At).
			if err := putWelcome(tx, req.GetGroupId(), g.Epoch, req.GetWelcome(), added, rec.At.Add(s.ttl), rec.At); err != nil {
				return err
			}
		}
		if err := s.fanouts.Add(tx, id, entry); err != nil {
			return err
		}
		return putGroup(tx, req.GetGroupId(), g)
	})
	var retried errRetried
	if errors.As(err, &retried) {
		return s.committed(ctx, id, retried.g.Epoch, retried.g.Last.At), nil
	}
	if err != nil {
		return nil, err
	}
	resp := s.committed(ctx, id, req.GetEpoch()+1, rec.At)
	s.reproposeRemovals(ctx, req.GetGroupId())
	return resp, nil
}

// errRetried ends a commit transaction that found its own commit already accepted.
type errRetried struct{ g *groupRecord }

func (errRetried) Error() string { return "commit already accepted" }

// committed runs the fan-out of an accepted commit, unless it ran already, and answers
// the committer. A failed fan-out is not the committer's failure: the entry is durable
// and the replayer retries it.
func (s *Server) committed(ctx context.Context, id string, epoch uint64, at time.Time) *messagingv1.SubmitCommitResponse {
	if err := s.fanouts.Deliver(ctx, id); err != nil {
		s.log.WarnContext(ctx, "messaging: commit fan-out failed; the replayer retries it", "fanout", id, "err", err)
	}
	return &messagingv1.SubmitCommitResponse{Epoch: epoch, ServerTime: timestamppb.New(at)}
}

// isRetry reports whether the commit that moved the group to its epoch was this one,
// from this device.
func (g *groupRecord) isRetry(epoch uint64, hash []byte, by member) bool {
	return g.Last != nil && epoch+1 == g.Epoch && g.Last.By == by && bytes.Equal(g.Last.Hash, hash)
}

// checkChange refuses membership changes that do not fit the group: removing a
// non-member, adding a member, both at once, or growing past MaxGroupDevices.
func (g *groupRecord) checkChange(added, removed []member) error {
	for _, r := range removed {
		if !g.has(r) {
			return server.Error(codes.InvalidArgument, reasonMalformedRequest, "device %s/%d is not a member", r.UserID, r.DeviceID)
		}
	}
	for _, a := range added {
		if g.has(a) || slices.Contains(removed, a) {
			return server.Error(codes.InvalidArgument, reasonMalformedRequest, "device %s/%d is a member already", a.UserID, a.DeviceID)
		}
	}
	if n := len(g.Members) - len(removed) + len(added); n > MaxGroupDevices {
		return server.Error(codes.InvalidArgument, reasonLimitExceeded, "the group would have %d devices; the limit is %d", n, MaxGroupDevices)
	}
	return nil
}

// sameMembers reports whether a and b hold the same devices (each lists a device once).
func sameMembers(a, b []member) bool {
	if len(a) != len(b) {
		return false
	}
	for _, m := range a {
		if !slices.Contains(b, m) {
			return false
		}
	}
	return true
}

// checkInboxCaps refuses a fan-out to a device whose inbox is full.
func (s *Server) checkInboxCaps(ctx context.Context, to []member) error {
	for _, m := range to {
		n, err := s.inboxes.Count(ctx, inboxOf(m.UserID, m.DeviceID))
		if err != nil {
			return s.internal(ctx, "count inbox", err)
		}
		if n >= s.cap {
			return server.Error(codes.ResourceExhausted, reasonInboxFull, "device %s/%d's inbox is full", m.UserID, m.DeviceID)
		}
	}
	return nil
}

// loadGroupView loads a group in a read-only transaction.
func (s *Server) loadGroupView(ctx context.Context, gid []byte) (*groupRecord, error) {
	var g *groupRecord
	err := s.groupTx(ctx, "load group", false, func(tx kv.Tx) error {
		var err error
		g, err = loadGroup(tx, gid)
		return err
	})
	return g, err
}

// fanOut stores delivery for every recipient device that still exists and wakes them.
// The message id of each copy derives from the idempotency key (the client message id,
// or the payload itself for handshakes) within the scope of the delivery's kind and group.
func (s *Server) fanOut(ctx context.Context, p authn.Principal, idempotencyKey []byte, d *messagingv1.Delivery, to []member, now time.Time, checkCap bool) error {
	to, err := s.existing(ctx, to)
	if err != nil {
		return err
	}
	if len(to) == 0 {
		return nil
	}
	scope := logScope(d)
	msgs := make([]msgstore.Message, 0, len(to)+1)
	if checkCap {
		if err := s.checkInboxCaps(ctx, to); err != nil {
			return err
		}
	}
	// A delivery with a payload is stored once in the group log, and each inbox gets a
	// notice of it (grouplog.go); a payload-free Welcome notice is its own copy. The entry
	// goes ahead of its notices in the same Append: one durable write for all, and a
	// Receive stream that reads a notice finds its entry (the first batch holds it).
	kind, expiry := msgstore.Kind(d.GetKind()), now.Add(s.ttl).Truncate(time.Second)
	var body []byte
	if len(d.GetPayload()) > 0 {
		id := logID(p, scope, idempotencyKey)
		entry, err := logEntry(id, d, now, expiry)
		if err != nil {
			return s.internal(ctx, "encode group log entry", err)
		}
		msgs = append(msgs, entry)
		kind, body = kindLogNotice, logNotice{ID: id, GroupID: d.GetGroupId()}.marshal()
	} else {
		var err error
		if body, err = proto.Marshal(d); err != nil {
			return s.internal(ctx, "encode delivery", err)
		}
	}
	for _, m := range to {
		inbox := inboxOf(m.UserID, m.DeviceID)
		msgs = append(msgs, msgstore.Message{
			Inbox: inbox, ID: messageID(p, scope, idempotencyKey, m.UserID, m.DeviceID), Kind: kind,
			Body: body, Timestamp: now, Expiry: expiry,
		})
	}
	batches := appendBatches(msgs)
	for _, batch := range batches {
		if err := s.inboxes.Append(ctx, batch); err != nil {
			return s.internal(ctx, "store group deliveries", err)
		}
	}
	for _, batch := range batches {
		for _, m := range batch {
			if m.Kind == kindLogEntry {
				continue
			}
			// The wake-ups share the payload (nobody writes to it): one copy of a 256 KiB
			// message for 1000 devices, not 1000.
			s.wake(ctx, m.Inbox.UserID, deviceOf(m.Inbox), &messagingv1.Delivery{
				Kind: d.GetKind(), Payload: d.GetPayload(), GroupId: d.GetGroupId(), Epoch: d.GetEpoch(),
				MessageId: append([]byte(nil), m.ID[:]...), ServerTime: timestamppb.New(now),
			})
		}
	}
	return nil
}

// appendBatches cuts msgs into Append calls within the store's limits on messages and
// bytes per call.
func appendBatches(msgs []msgstore.Message) [][]msgstore.Message {
	var batches [][]msgstore.Message
	start, size := 0, 0
	for i, m := range msgs {
		if i > start && (i-start == msgstore.MaxBatch || size+len(m.Body) > msgstore.MaxBatchBytes) {
			batches = append(batches, msgs[start:i])
			start, size = i, 0
		}
		size += len(m.Body)
	}
	if start < len(msgs) {
		batches = append(batches, msgs[start:])
	}
	return batches
}

// existing keeps the devices that are still current members of their accounts: a device
// removed since it joined a group gets no more deliveries (its inbox is gone).
func (s *Server) existing(ctx context.Context, ms []member) ([]member, error) {
	out := ms[:0:0]
	for _, m := range ms {
		devices, found, err := s.dir.Devices(ctx, m.UserID)
		if err != nil {
			return nil, s.internal(ctx, "device directory", err)
		}
		if found && slices.Contains(devices, m.DeviceID) {
			out = append(out, m)
		}
	}
	return out, nil
}

// checkDevicesExist refuses device addresses that name no current device.
func (s *Server) checkDevicesExist(ctx context.Context, ms []member) error {
	current, err := s.existing(ctx, ms)
	if err != nil {
		return err
	}
	if len(current) == len(ms) {
		return nil
	}
	for _, m := range ms {
		if !slices.Contains(current, m) {
			return server.Error(codes.NotFound, reasonDeviceNotFound, "device %s/%d does not exist", m.UserID, m.DeviceID)
		}
	}
	return nil
}

// deviceOf recovers the device id of an inbox made by inboxOf.
func deviceOf(in msgstore.Inbox) uint32 {
	id, _ := strconv.ParseUint(in.DeviceID, 10, 32)
	return uint32(id)
}

// SubmitProposal forwards a proposal of the current epoch to the other members.
func (s *Server) SubmitProposal(ctx context.Context, req *messagingv1.SubmitProposalRequest) (*messagingv1.SubmitProposalResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.GetProposal()) == 0 {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "the proposal is empty")
	}
	g, err := s.memberView(ctx, p, req.GetGroupId())
	if err != nil {
		return nil, err
	}
	if req.GetEpoch() != g.Epoch {
		return nil, epochError(codes.Aborted, reasonEpochConflict, g.Epoch)
	}
	if err := checkHandshake(req.GetProposal(), req.GetGroupId(), g.Epoch, false); err != nil {
		return nil, err
	}
	now := s.now()
	d := &messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_PROPOSAL, Payload: req.GetProposal(), GroupId: req.GetGroupId(), Epoch: g.Epoch}
	to := slices.DeleteFunc(g.Members, func(m member) bool { return m == self(p) })
	if err := s.fanOut(ctx, p, req.GetProposal(), d, to, now, true); err != nil {
		return nil, err
	}
	return &messagingv1.SubmitProposalResponse{ServerTime: timestamppb.New(now)}, nil
}

// memberView loads a group the caller's device belongs to.
func (s *Server) memberView(ctx context.Context, p authn.Principal, gid []byte) (*groupRecord, error) {
	if err := s.allow("group", p.UserID); err != nil {
		return nil, err
	}
	var g *groupRecord
	err := s.groupTx(ctx, "load group", false, func(tx kv.Tx) error {
		var err error
		if g, err = loadGroup(tx, gid); err != nil {
			return err
		}
		if !g.has(self(p)) {
			return txAbort{server.Error(codes.PermissionDenied, reasonNotGroupMember, "the calling device is not a member of the group")}
		}
		return nil
	})
	return g, err
}

// SendGroupMessage stores an application message for the other members.
func (s *Server) SendGroupMessage(ctx context.Context, req *messagingv1.SendGroupMessageRequest) (*messagingv1.SendGroupMessageResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.GetPrivateMessage()) == 0 || len(req.GetClientMessageId()) != 16 {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "a non-empty message and a 16-byte client_message_id are required")
	}
	g, err := s.memberView(ctx, p, req.GetGroupId())
	if err != nil {
		return nil, err
	}
	if req.GetEpoch() != g.Epoch && req.GetEpoch()+1 != g.Epoch {
		return nil, epochError(codes.FailedPrecondition, reasonEpochMismatch, g.Epoch)
	}
	if err := checkApplication(req.GetPrivateMessage(), req.GetGroupId(), req.GetEpoch()); err != nil {
		return nil, err
	}
	now := s.now()
	d := &messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE, Payload: req.GetPrivateMessage(), GroupId: req.GetGroupId(), Epoch: req.GetEpoch()}
	to := slices.DeleteFunc(g.Members, func(m member) bool { return m == self(p) })
	if err := s.allowGroupBytes(p, to, len(req.GetPrivateMessage())); err != nil {
		return nil, err
	}
	if err := s.fanOut(ctx, p, req.GetClientMessageId(), d, to, now, true); err != nil {
		return nil, err
	}
	return &messagingv1.SendGroupMessageResponse{ServerTime: timestamppb.New(now)}, nil
}

// FetchWelcome returns the Welcome stored for the calling device, and counts the device
// as served: a Welcome every addressed device fetched is deleted soon after (welcomes.go).
func (s *Server) FetchWelcome(ctx context.Context, req *messagingv1.FetchWelcomeRequest) (*messagingv1.FetchWelcomeResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("group", p.UserID); err != nil {
		return nil, err
	}
	notFound := txAbort{server.Error(codes.NotFound, reasonWelcomeNotFound, "no Welcome for this device and group")}
	var w welcomeRecord
	err = s.groupTx(ctx, "fetch welcome", false, func(tx kv.Tx) error {
		w = welcomeRecord{}
		b, err := tx.Get(welcomeKey(req.GetGroupId(), self(p)))
		if errors.Is(err, kv.ErrNotFound) {
			return notFound
		} else if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &w); err != nil || len(w.Welcome) > 0 {
			return err
		}
		w.Welcome, err = tx.Get(welcomeBodyKey(req.GetGroupId(), w.Epoch))
		if errors.Is(err, kv.ErrNotFound) {
			return notFound
		}
		return err
	})
	if err == nil && w.Fetched.IsZero() {
		// Counted in a write transaction of its own, only on the first fetch: repeated
		// fetches are reads.
		err = s.groupTx(ctx, "count welcome fetch", true, func(tx kv.Tx) error {
			return fetched(tx, req.GetGroupId(), self(p), s.now())
		})
	}
	if err != nil {
		return nil, err
	}
	ds, err := s.externalSender(ctx)
	if err != nil {
		return nil, err
	}
	return &messagingv1.FetchWelcomeResponse{Welcome: w.Welcome, Epoch: w.Epoch, ExternalSender: ds.ExternalSender().Bytes()}, nil
}

// GetGroupInfo returns the group's state to a device of a member account.
func (s *Server) GetGroupInfo(ctx context.Context, req *messagingv1.GetGroupInfoRequest) (*messagingv1.GetGroupInfoResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("group", p.UserID); err != nil {
		return nil, err
	}
	var g *groupRecord
	notFound := server.Error(codes.NotFound, reasonGroupNotFound, "no such group")
	err = s.groupTx(ctx, "group info", false, func(tx kv.Tx) error {
		var err error
		if g, err = loadGroup(tx, req.GetGroupId()); err != nil {
			return err
		}
		if !slices.ContainsFunc(g.Members, func(m member) bool { return m.UserID == p.UserID }) {
			return txAbort{notFound}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &messagingv1.GetGroupInfoResponse{Epoch: g.Epoch, GroupInfo: g.GroupInfo, Members: addresses(g.Members)}, nil
}
