package auth

import (
	"context"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
)

// maxPendingLinks bounds the undecided links of one account, so a stranger who knows a
// username cannot flood its devices with link requests.
const maxPendingLinks = 5

// StartDeviceLink records a new device's request to join an account.
func (s *Server) StartDeviceLink(ctx context.Context, req *authv1.StartDeviceLinkRequest) (*authv1.StartDeviceLinkResponse, error) {
	if err := s.allow("link", peerKey(ctx)); err != nil {
		return nil, err
	}
	if err := checkUsername(req.GetUsername()); err != nil {
		return nil, err
	}
	if err := checkDeviceName(req.GetDeviceName()); err != nil {
		return nil, err
	}
	ik, err := parseIdentityKey(req.GetIdentityKey())
	if err != nil {
		return nil, err
	}
	statement := DeviceLinkStatement(req.GetUsername(), req.GetIdentityKey(), req.GetDeviceName())
	if ik.Verify(keys.ContextDeviceLink, statement, req.GetSignature()) != nil {
		return nil, server.Error(codes.InvalidArgument, reasonBadSignature, "device link proof does not verify under the identity key")
	}
	now := s.now()
	link := linkRecord{
		ID: newID(16), Username: req.GetUsername(), IdentityKey: ik.Bytes(), DeviceName: req.GetDeviceName(),
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.LinkTTL), State: linkPending,
	}
	tooMany := server.Error(codes.ResourceExhausted, reasonRateLimited, "too many pending device links for this account")
	err = s.update(ctx, "start device link", func(tx kv.Tx) error {
		account, err := lookupAccount(tx, req.GetUsername())
		if isNotFound(err) {
			// Record a link nobody can ever approve, so the call does not reveal
			// which usernames exist; it expires like any other, and the same cap on
			// pending links applies, per username, so the cap does not tell either.
			pending, err := s.pendingLinksOfName(tx, req.GetUsername())
			if err != nil {
				return err
			}
			if pending >= maxPendingLinks {
				return abort(tooMany)
			}
			if err := tx.Put(linkNameKey(req.GetUsername(), link.ID), nil); err != nil {
				return err
			}
			return putJSON(tx, linkKey(link.ID), link)
		} else if err != nil {
			return err
		}
		link.UserID = account.UserID
		pending, err := s.pendingLinks(tx, account.UserID)
		if err != nil {
			return err
		}
		if len(pending) >= maxPendingLinks {
			return abort(tooMany)
		}
		if err := tx.Put(linkIndexKey(account.UserID, link.ID), nil); err != nil {
			return err
		}
		return putJSON(tx, linkKey(link.ID), link)
	})
	if err != nil {
		return nil, err
	}
	return &authv1.StartDeviceLinkResponse{LinkId: link.ID, ExpiresAt: ts(link.ExpiresAt)}, nil
}

// pendingLinks returns the undecided, unexpired links of an account.
func (s *Server) pendingLinks(tx kv.Tx, user string) ([]linkRecord, error) {
	idx, err := kv.ScanPrefix(tx, linkIndexPrefix(user), 0)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []linkRecord
	for _, p := range idx {
		var l linkRecord
		err := getJSON(tx, linkKey(string(p.Key[len(linkIndexPrefix(user)):])), &l)
		if isNotFound(err) {
			continue
		} else if err != nil {
			return nil, err
		}
		if l.State == linkPending && now.Before(l.ExpiresAt) {
			out = append(out, l)
		}
	}
	return out, nil
}

// linkNameKey indexes the links asked for a username that has no account:
//
//	auth/linkname/<username>/<link id> → ""
func linkNameKey(username, id string) []byte {
	return []byte(prefix + "linkname/" + username + "/" + id)
}

// pendingLinksOfName counts the unexpired links asked for a username that has no
// account, forgetting index entries whose link is gone.
func (s *Server) pendingLinksOfName(tx kv.Tx, username string) (int, error) {
	p := linkNameKey(username, "")
	idx, err := kv.ScanPrefix(tx, p, 0)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range idx {
		var l linkRecord
		err := getJSON(tx, linkKey(string(e.Key[len(p):])), &l)
		if isNotFound(err) {
			if err := tx.Delete(e.Key); err != nil {
				return 0, err
			}
			continue
		} else if err != nil {
			return 0, err
		}
		if l.State == linkPending && s.now().Before(l.ExpiresAt) {
			n++
		}
	}
	return n, nil
}

// ListPendingDeviceLinks lists the caller's account's undecided links.
func (s *Server) ListPendingDeviceLinks(ctx context.Context, _ *authv1.ListPendingDeviceLinksRequest) (*authv1.ListPendingDeviceLinksResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("account", p.UserID); err != nil {
		return nil, err
	}
	var links []linkRecord
	if err := s.view(ctx, "list device links", func(tx kv.Tx) error {
		links, err = s.pendingLinks(tx, p.UserID)
		return err
	}); err != nil {
		return nil, err
	}
	resp := &authv1.ListPendingDeviceLinksResponse{}
	for _, l := range links {
		resp.Links = append(resp.Links, &authv1.PendingDeviceLink{
			LinkId: l.ID, IdentityKey: l.IdentityKey, DeviceName: l.DeviceName,
			CreatedAt: ts(l.CreatedAt), ExpiresAt: ts(l.ExpiresAt),
		})
	}
	return resp, nil
}

// decideLink loads the caller's pending link and lets decide change it.
func (s *Server) decideLink(ctx context.Context, op, linkID string, decide func(tx kv.Tx, p callerAccount, l *linkRecord) error) error {
	p, err := caller(ctx)
	if err != nil {
		return err
	}
	if err := s.allow("account", p.UserID); err != nil {
		return err
	}
	return s.update(ctx, op, func(tx kv.Tx) error {
		var l linkRecord
		err := getJSON(tx, linkKey(linkID), &l)
		if isNotFound(err) || (err == nil && (l.UserID != p.UserID || (l.State == linkPending && !s.now().Before(l.ExpiresAt)))) {
			return abort(server.Error(codes.NotFound, reasonLinkNotFound, "no pending device link %q", linkID))
		} else if err != nil {
			return err
		}
		if l.State != linkPending {
			return abort(server.Error(codes.FailedPrecondition, reasonLinkAlreadyDecided, "device link %q was already decided", linkID))
		}
		if err := decide(tx, callerAccount{p.UserID}, &l); err != nil {
			return err
		}
		// The index entry stays until Sweep deletes the link, so that deleting the
		// account finds decided links too.
		return putJSON(tx, linkKey(l.ID), l)
	})
}

type callerAccount struct{ userID string }

// ApproveDeviceLink adds the linking device to the caller's account.
func (s *Server) ApproveDeviceLink(ctx context.Context, req *authv1.ApproveDeviceLinkRequest) (*authv1.ApproveDeviceLinkResponse, error) {
	var deviceID uint32
	err := s.decideLink(ctx, "approve device link", req.GetLinkId(), func(tx kv.Tx, c callerAccount, l *linkRecord) error {
		account, err := loadAccount(tx, c.userID)
		if err != nil {
			return err
		}
		devs, err := loadDevices(tx, c.userID)
		if err != nil {
			return err
		}
		if len(devs) >= MaxDevices {
			return abort(server.Error(codes.FailedPrecondition, reasonDeviceLimitReached, "the account already has %d devices", len(devs)))
		}
		deviceID = account.NextDeviceID
		account.NextDeviceID++
		if err := putJSON(tx, accountKey(c.userID), account); err != nil {
			return err
		}
		dev := deviceRecord{ID: deviceID, Name: l.DeviceName, IdentityKey: l.IdentityKey, CreatedAt: s.now()}
		if err := putJSON(tx, deviceKey(c.userID, deviceID), dev); err != nil {
			return err
		}
		l.State, l.DeviceID = linkApproved, deviceID
		return nil
	})
	if err != nil {
		return nil, err
	}
	p, _ := caller(ctx)
	s.publish(ctx, "devices changed", func(e Events) error { return e.DevicesChanged(ctx, p.UserID) })
	return &authv1.ApproveDeviceLinkResponse{DeviceId: deviceID}, nil
}

// RejectDeviceLink refuses a pending link.
func (s *Server) RejectDeviceLink(ctx context.Context, req *authv1.RejectDeviceLinkRequest) (*authv1.RejectDeviceLinkResponse, error) {
	err := s.decideLink(ctx, "reject device link", req.GetLinkId(), func(_ kv.Tx, _ callerAccount, l *linkRecord) error {
		l.State = linkRejected
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &authv1.RejectDeviceLinkResponse{}, nil
}

// GetDeviceLinkStatus tells the linking device whether it was approved.
func (s *Server) GetDeviceLinkStatus(ctx context.Context, req *authv1.GetDeviceLinkStatusRequest) (*authv1.GetDeviceLinkStatusResponse, error) {
	if err := s.allow("link-status", req.GetLinkId()); err != nil {
		return nil, err
	}
	notFound := server.Error(codes.NotFound, reasonLinkNotFound, "no device link %q", req.GetLinkId())
	var l linkRecord
	if err := s.view(ctx, "device link status", func(tx kv.Tx) error {
		err := getJSON(tx, linkKey(req.GetLinkId()), &l)
		if isNotFound(err) {
			return abort(notFound)
		}
		return err
	}); err != nil {
		return nil, err
	}
	ik, err := keys.ParseIdentityKey(l.IdentityKey)
	if err != nil {
		return nil, s.internal(ctx, "device link status", err)
	}
	if ik.Verify(ContextDeviceLinkStatus, DeviceLinkStatusStatement(req.GetLinkId()), req.GetSignature()) != nil {
		return nil, server.Error(codes.InvalidArgument, reasonBadSignature, "signature does not verify under the link's identity key")
	}
	resp := &authv1.GetDeviceLinkStatusResponse{}
	switch {
	case l.State == linkApproved:
		resp.State, resp.UserId, resp.DeviceId = authv1.DeviceLinkState_DEVICE_LINK_STATE_APPROVED, l.UserID, l.DeviceID
	case l.State == linkRejected:
		resp.State = authv1.DeviceLinkState_DEVICE_LINK_STATE_REJECTED
	case !s.now().Before(l.ExpiresAt):
		return nil, notFound
	default:
		resp.State = authv1.DeviceLinkState_DEVICE_LINK_STATE_PENDING
	}
	return resp, nil
}
