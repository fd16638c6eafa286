package messaging

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/crypto/mls"
	"github.com/guardyn/guardyn/libs/kv"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// The delivery service is an external sender of every group (RFC 9420, Section 12.1.8.1):
// when a device is removed or an account deleted, it signs a Remove proposal for the
// device's leaf in each group the device is in, and the next member to commit includes
// it. Its signature key is an Ed25519 key of the suite groups are created on
// (mls.DefaultCipherSuite), made on first use and kept in the service's kv store (in its
// data dir, beside the groups it acts on); CreateGroup publishes it, and clients accept
// external proposals signed by no other key.
//
//	msg/ds/external-sender → the Ed25519 private key (RFC 8032 seed)

const externalSenderKey = "msg/ds/external-sender"

// externalSenderName is the basic credential identity of the service's external sender.
var externalSenderName = []byte("guardyn delivery service")

// externalSender returns the service's external-sender identity, creating and storing it
// the first time. Concurrent first calls agree: the key is created in a write
// transaction that keeps a key already stored.
func (s *Server) externalSender(ctx context.Context) (*mls.Identity, error) {
	var priv []byte
	err := s.groupTx(ctx, "external sender key", false, func(tx kv.Tx) error {
		var err error
		priv, err = tx.Get([]byte(externalSenderKey))
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if priv == nil {
		fresh, err := mls.NewIdentity(mls.DefaultCipherSuite, externalSenderName)
		if err != nil {
			return nil, s.internal(ctx, "external sender key", err)
		}
		err = s.groupTx(ctx, "external sender key", true, func(tx kv.Tx) error {
			var err error
			priv, err = tx.Get([]byte(externalSenderKey))
			if errors.Is(err, kv.ErrNotFound) {
				priv = fresh.SignaturePrivateKey()
				return tx.Put([]byte(externalSenderKey), priv)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	id, err := mls.IdentityFromKey(mls.DefaultCipherSuite, externalSenderName, priv)
	if err != nil {
		return nil, s.internal(ctx, "external sender key", fmt.Errorf("stored key: %w", err))
	}
	return id, nil
}

// dsPrincipal is the sender of the service's own proposals, for their delivery ids.
var dsPrincipal = authn.Principal{UserID: "delivery-service"}

// groupScanBatch is how many group records one read of the registry returns.
const groupScanBatch = 256

// proposeRemovals sends, to every group one of user's devices is in, an external Remove
// proposal of each such device's leaf, signed by the service, for the group's current
// epoch (its GroupInfo's); the remaining members receive it as a group proposal and the next committer
// includes it. The leaves come from the ratchet tree of the group's stored GroupInfo
// (clients upload it with the tree) and the device each leaf's credential names. A
// group whose GroupInfo does not show the device's leaf gets nothing (logged): its
// members remove the device by hand. A store failure is returned, so that the event is
// retried; proposals are deterministic (Ed25519), so a retry repeats the same ones.
func (s *Server) proposeRemovals(ctx context.Context, user string, devices []uint32) error {
	gone := make([]member, len(devices))
	for i, d := range devices {
		gone[i] = member{user, d}
	}
	var ds *mls.Identity
	start := []byte("msg/group/")
	end := []byte("msg/group0") // '0' follows '/'
	for {
		var page []kv.Pair
		err := s.groupTx(ctx, "scan groups", false, func(tx kv.Tx) error {
			var err error
			page, err = tx.Scan(start, end, groupScanBatch)
			return err
		})
		if err != nil {
			return err
		}
		for _, kvp := range page {
			var g groupRecord
			if err := json.Unmarshal(kvp.Value, &g); err != nil {
				return s.internal(ctx, "scan groups", err)
			}
			if !slices.ContainsFunc(gone, g.has) {
				continue
			}
			if ds == nil {
				if ds, err = s.externalSender(ctx); err != nil {
					return err
				}
			}
			if err := s.proposeGroupRemovals(ctx, ds, kvp.Key[len("msg/group/"):], &g, gone); err != nil {
				return err
			}
		}
		if len(page) < groupScanBatch {
			return nil
		}
		start = append(slices.Clone(page[len(page)-1].Key), 0)
	}
}

// reproposeRemovals proposes again, for the epoch a commit just opened, the removal of
// every member device of the group that no longer exists. The proposals the auth event
// made are for the epoch it found: a member that committed before holding them made
// them stale, and without this the deleted devices' leaves would stay in the group
// until a member removed them by hand. Called after the commit's fan-out, so members
// hold the commit before the proposals of its epoch. A proposal is deterministic
// (Ed25519) and its delivery id derives from its bytes, so one proposal per device per
// epoch reaches each member however often this runs (a retried commit, a concurrent
// auth event). It runs only when a member device is gone: the check is one directory
// read per member account, as the commit's fan-out already makes. Failures are logged,
// not returned: the commit is accepted, and the next commit proposes again.
func (s *Server) reproposeRemovals(ctx context.Context, gid []byte) {
	g, err := s.loadGroupView(ctx, gid)
	if err != nil {
		s.log.WarnContext(ctx, "messaging: cannot check a committed group for removed devices", "err", err)
		return
	}
	current, err := s.existing(ctx, g.Members)
	if err != nil {
		s.log.WarnContext(ctx, "messaging: cannot check a committed group for removed devices", "err", err)
		return
	}
	if len(current) == len(g.Members) {
		return
	}
	gone := slices.DeleteFunc(slices.Clone(g.Members), func(m member) bool { return slices.Contains(current, m) })
	ds, err := s.externalSender(ctx)
	if err == nil {
		err = s.proposeGroupRemovals(ctx, ds, []byte(hex.EncodeToString(gid)), g, gone)
	}
	if err != nil {
		s.log.WarnContext(ctx, "messaging: cannot propose again the removal of deleted devices; the next commit retries", "err", err)
	}
}

// proposeGroupRemovals proposes the removal of the leaves of gone in one group.
func (s *Server) proposeGroupRemovals(ctx context.Context, ds *mls.Identity, hexID []byte, g *groupRecord, gone []member) error {
	gid, err := hex.DecodeString(string(hexID))
	if err != nil {
		return s.internal(ctx, "group key", err)
	}
	index, epoch, ok := externalSenderIndexIn(g.GroupInfo, ds.SignaturePublicKey())
	if !ok {
		// A group that does not list the service (created before it published a key, or
		// by another client) would refuse the proposal: its members remove by hand.
		s.log.Info("messaging: a removed device's group does not list the service as external sender", "group", string(hexID))
		return nil
	}
	leaves, err := mls.TreeMembers(g.GroupInfo, nil)
	if err != nil {
		s.log.Warn("messaging: no ratchet tree in a group's GroupInfo; its members must remove the device", "group", string(hexID), "err", err)
		return nil
	}
	var props [][]byte
	for _, leaf := range slices.Sorted(mapKeys(leaves)) {
		m, ok := deviceOfCredential(leaves[leaf])
		if !ok || !slices.Contains(gone, m) {
			continue
		}
		p, err := ds.ProposeExternal(gid, epoch, index, mls.RemoveProposal(leaf))
		if err != nil {
			s.log.Warn("messaging: cannot propose a removal in this group's suite", "group", string(hexID), "err", err)
			return nil
		}
		props = append(props, p)
	}
	to := slices.DeleteFunc(slices.Clone(g.Members), func(m member) bool { return slices.Contains(gone, m) })
	now := s.now()
	for _, p := range props {
		d := &messagingv1.Delivery{Kind: messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_PROPOSAL, Payload: p, GroupId: gid, Epoch: epoch}
		if err := s.fanOut(ctx, dsPrincipal, p, d, to, now, false); err != nil {
			return err
		}
	}
	return nil
}

// externalSenderIndexIn finds the service's key in the external_senders extension of a
// GroupInfo (MLSMessage bytes): its index is the sender index of its proposals, and the
// GroupInfo's epoch (that of the commit that uploaded it: the group's current one) their
// epoch.
func externalSenderIndexIn(groupInfo, key []byte) (index uint32, epoch uint64, ok bool) {
	info, err := mls.Inspect(groupInfo)
	if err != nil {
		return 0, 0, false
	}
	extType := mls.ExternalSendersExtension(nil).Type
	for _, e := range info.GroupContextExtensions {
		if e.Type != extType {
			continue
		}
		senders, err := mls.ParseExternalSendersExtension(e.Data)
		if err != nil {
			return 0, 0, false
		}
		for i, es := range senders {
			if bytes.Equal(es.SignatureKey, key) {
				return uint32(i), info.Epoch, true
			}
		}
	}
	return 0, 0, false
}

func mapKeys(m map[uint32][]byte) func(func(uint32) bool) {
	return func(yield func(uint32) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// deviceOfCredential reads the account and device a Guardyn client's basic credential
// names (libs/client/mlscred.go: "GMC1" || u8 len(user id) || user id || u32 device id
// || ...). The service does not verify the credential: members did when the leaf joined,
// and a wrong guess only proposes a removal the members' validation then applies to the
// leaf that really claims the device.
func deviceOfCredential(identity []byte) (member, bool) {
	rest, ok := bytes.CutPrefix(identity, []byte("GMC1"))
	if !ok || len(rest) < 1 {
		return member{}, false
	}
	n := int(rest[0])
	rest = rest[1:]
	if n == 0 || len(rest) < n+4 {
		return member{}, false
	}
	return member{string(rest[:n]), binary.BigEndian.Uint32(rest[n:])}, true
}
