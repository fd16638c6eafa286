package messaging

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
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
//	msg/welcome/<hex group id>/<user>/<device>        → welcomeRecord
//
// It never sees group secrets: commits, proposals, Welcomes and GroupInfos are opaque MLS
// messages. It only orders them: one commit per epoch, the first one wins.

type member struct {
	UserID   string `json:"u"`
	DeviceID uint32 `json:"d"`
}

type groupRecord struct {
	Epoch     uint64    `json:"epoch"`
	Members   []member  `json:"members"`
	GroupInfo []byte    `json:"group_info"`
	CreatedAt time.Time `json:"created_at"`
}

type welcomeRecord struct {
	Epoch   uint64 `json:"epoch"`
	Welcome []byte `json:"welcome"`
}

func groupKey(gid []byte) []byte { return []byte("msg/group/" + hex.EncodeToString(gid)) }
func welcomeKey(gid []byte, m member) []byte {
	return []byte("msg/welcome/" + hex.EncodeToString(gid) + "/" + m.UserID + "/" + inboxOf(m.UserID, m.DeviceID).DeviceID)
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
	return &messagingv1.CreateGroupResponse{Epoch: 0}, nil
}

// SubmitCommit accepts the first commit of an epoch and fans it out.
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
	if err := s.checkDevicesExist(ctx, append(slices.Clone(added), welcomed...)); err != nil {
		return nil, err
	}
	// Both deliveries must fit the inbox before the epoch moves: a commit accepted but
	// never delivered would split the group.
	commit := &messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT, Payload: req.GetCommit(), GroupId: req.GetGroupId(), Epoch: req.GetEpoch()}
	welcome := &messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_WELCOME, Payload: req.GetWelcome(), GroupId: req.GetGroupId(), Epoch: req.GetEpoch() + 1}
	for _, d := range []*messagingv1.Delivery{commit, welcome} {
		if proto.Size(d) > msgstore.MaxBodySize {
			return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "a %v of %d bytes does not fit an inbox", d.GetKind(), len(d.GetPayload()))
		}
	}
	var before []member
	var epoch uint64
	err = s.groupTx(ctx, "submit commit", true, func(tx kv.Tx) error {
		g, err := loadGroup(tx, req.GetGroupId())
		if err != nil {
			return err
		}
		if !g.has(self(p)) {
			return txAbort{server.Error(codes.PermissionDenied, reasonNotGroupMember, "the calling device is not a member of the group")}
		}
		if req.GetEpoch() != g.Epoch {
			return txAbort{epochError(codes.Aborted, reasonEpochConflict, g.Epoch)}
		}
		for _, r := range removed {
			if !g.has(r) {
				return txAbort{server.Error(codes.InvalidArgument, reasonMalformedRequest, "device %s/%d is not a member", r.UserID, r.DeviceID)}
			}
		}
		before = slices.Clone(g.Members)
		g.Members = slices.DeleteFunc(g.Members, func(m member) bool { return slices.Contains(removed, m) })
		for _, a := range added {
			if !g.has(a) {
				g.Members = append(g.Members, a)
			}
		}
		g.Epoch++
		g.GroupInfo = req.GetGroupInfo()
		epoch = g.Epoch
		for _, w := range welcomed {
			b, err := json.Marshal(welcomeRecord{Epoch: g.Epoch, Welcome: req.GetWelcome()})
			if err != nil {
				return err
			}
			if err := tx.Put(welcomeKey(req.GetGroupId(), w), b); err != nil {
				return err
			}
		}
		return putGroup(tx, req.GetGroupId(), g)
	})
	if err != nil {
		return nil, err
	}
	now := s.now()
	recipients := slices.DeleteFunc(before, func(m member) bool { return m == self(p) })
	if err := s.fanOut(ctx, p, req.GetCommit(), commit, recipients, now, false); err != nil {
		return nil, err
	}
	if len(welcomed) > 0 {
		if err := s.fanOut(ctx, p, req.GetWelcome(), welcome, welcomed, now, false); err != nil {
			return nil, err
		}
	}
	return &messagingv1.SubmitCommitResponse{Epoch: epoch, ServerTime: timestamppb.New(now)}, nil
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
	body, err := proto.Marshal(d)
	if err != nil {
		return s.internal(ctx, "encode delivery", err)
	}
	scope := append([]byte{byte(d.GetKind())}, d.GetGroupId()...)
	msgs := make([]msgstore.Message, 0, len(to))
	for _, m := range to {
		inbox := inboxOf(m.UserID, m.DeviceID)
		if checkCap {
			n, err := s.inboxes.Count(ctx, inbox)
			if err != nil {
				return s.internal(ctx, "count inbox", err)
			}
			if n >= s.cap {
				return server.Error(codes.ResourceExhausted, reasonInboxFull, "device %s/%d's inbox is full", m.UserID, m.DeviceID)
			}
		}
		msgs = append(msgs, msgstore.Message{
			Inbox: inbox, ID: messageID(p, scope, idempotencyKey, m.UserID, m.DeviceID), Kind: msgstore.Kind(d.GetKind()),
			Body: body, Timestamp: now, Expiry: now.Add(s.ttl),
		})
	}
	for _, batch := range appendBatches(msgs) {
		if err := s.inboxes.Append(ctx, batch); err != nil {
			return s.internal(ctx, "store group deliveries", err)
		}
		for _, m := range batch {
			wake := proto.Clone(d).(*messagingv1.Delivery)
			wake.MessageId, wake.ServerTime = append([]byte(nil), m.ID[:]...), timestamppb.New(now)
			s.wake(ctx, m.Inbox.UserID, deviceOf(m.Inbox), wake)
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
	now := s.now()
	d := &messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE, Payload: req.GetPrivateMessage(), GroupId: req.GetGroupId(), Epoch: req.GetEpoch()}
	to := slices.DeleteFunc(g.Members, func(m member) bool { return m == self(p) })
	if err := s.fanOut(ctx, p, req.GetClientMessageId(), d, to, now, true); err != nil {
		return nil, err
	}
	return &messagingv1.SendGroupMessageResponse{ServerTime: timestamppb.New(now)}, nil
}

// FetchWelcome returns the Welcome stored for the calling device.
func (s *Server) FetchWelcome(ctx context.Context, req *messagingv1.FetchWelcomeRequest) (*messagingv1.FetchWelcomeResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("group", p.UserID); err != nil {
		return nil, err
	}
	var w welcomeRecord
	err = s.groupTx(ctx, "fetch welcome", false, func(tx kv.Tx) error {
		b, err := tx.Get(welcomeKey(req.GetGroupId(), self(p)))
		if errors.Is(err, kv.ErrNotFound) {
			return txAbort{server.Error(codes.NotFound, reasonWelcomeNotFound, "no Welcome for this device and group")}
		} else if err != nil {
			return err
		}
		return json.Unmarshal(b, &w)
	})
	if err != nil {
		return nil, err
	}
	return &messagingv1.FetchWelcomeResponse{Welcome: w.Welcome, Epoch: w.Epoch}, nil
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
