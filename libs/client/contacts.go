package client

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/safetynumber"
	"github.com/guardyn/guardyn/libs/crypto/session"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
)

// observe compares what the server says about an account now with what this device pinned
// under name, trusting on first use: unknown accounts are pinned, new devices of known ones
// pinned as unverified (see pinNew), removed devices forgotten. A new key for a known
// device, or the username now naming another account, is recorded as the contact's pending
// identity and reported; nothing pinned changes until Trust.
func (s *state) observe(name string, snap identitySnapshot) *IdentityChangedError {
	c := s.Contacts[name]
	if c == nil {
		c = &contact{UserID: snap.UserID, Devices: make(map[uint32]*peerDevice)}
		for id, k := range snap.Keys {
			c.Devices[id] = &peerDevice{IdentityKey: k}
		}
		s.Contacts[name] = c
		return nil
	}
	if c.UserID != snap.UserID {
		c.Pending = &snap
		return &IdentityChangedError{Username: name, AccountReplaced: true}
	}
	var changed []uint32
	for _, id := range slices.Sorted(maps.Keys(snap.Keys)) {
		k := snap.Keys[id]
		d := c.Devices[id]
		switch {
		case d == nil || d.IdentityKey == nil:
			s.pinNew(name, c, id, k)
		case !bytes.Equal(d.IdentityKey, k):
			changed = append(changed, id)
		}
	}
	for id := range c.Devices {
		if _, ok := snap.Keys[id]; !ok {
			delete(c.Devices, id)
		}
	}
	if len(changed) > 0 {
		slices.Sort(changed)
		c.Pending = &snap
		return &IdentityChangedError{Username: name, Devices: changed}
	}
	return nil
}

// pendingError describes a contact's pending identity change.
func (c *contact) pendingError(name string) *IdentityChangedError {
	if c.Pending.UserID != c.UserID {
		return &IdentityChangedError{Username: name, AccountReplaced: true}
	}
	var changed []uint32
	for id, k := range c.Pending.Keys {
		if d := c.Devices[id]; d != nil && d.IdentityKey != nil && !bytes.Equal(d.IdentityKey, k) {
			changed = append(changed, id)
		}
	}
	slices.Sort(changed)
	return &IdentityChangedError{Username: name, Devices: changed}
}

// snapshot returns the contact's pinned identity.
func (c *contact) snapshot() identitySnapshot {
	snap := identitySnapshot{UserID: c.UserID, Keys: make(map[uint32][]byte, len(c.Devices))}
	for id, d := range c.Devices {
		if d.IdentityKey != nil {
			snap.Keys[id] = d.IdentityKey
		}
	}
	return snap
}

// lookup asks the server for an account's current identity, by username or user id, and
// returns its username with the snapshot (without the calling device when it is one's own
// account).
func (c *Client) lookup(ctx context.Context, s *state, req *authv1.LookupIdentityRequest) (string, identitySnapshot, error) {
	actx, err := c.bearer(ctx, s)
	if err != nil {
		return "", identitySnapshot{}, err
	}
	resp, err := c.auth.LookupIdentity(actx, req)
	if err != nil {
		return "", identitySnapshot{}, fmt.Errorf("client: look up %s: %w", lookupName(req), err)
	}
	snap, err := snapshotOf(s, resp.GetUserId(), resp.GetDevices())
	if err != nil {
		return "", identitySnapshot{}, fmt.Errorf("client: look up %s: %w", lookupName(req), err)
	}
	return resp.GetUsername(), snap, nil
}

// deviceKey is a device id with its identity key, as LookupIdentity and ListDevices list
// them.
type deviceKey interface {
	GetDeviceId() uint32
	GetIdentityKey() []byte
}

// snapshotOf checks a server's list of an account's device keys (at most
// maxDevicesPerAccount valid P-256 keys) and returns it without the calling device.
func snapshotOf[D deviceKey](s *state, userID string, devices []D) (identitySnapshot, error) {
	if len(devices) > maxDevicesPerAccount {
		return identitySnapshot{}, fmt.Errorf("server lists %d devices, more than an account may have (%d)", len(devices), maxDevicesPerAccount)
	}
	snap := identitySnapshot{UserID: userID, Keys: make(map[uint32][]byte, len(devices))}
	for _, d := range devices {
		if userID == s.UserID && d.GetDeviceId() == s.DeviceID {
			continue
		}
		if _, err := keys.ParseIdentityKey(d.GetIdentityKey()); err != nil {
			return identitySnapshot{}, fmt.Errorf("identity key of device %d: %w", d.GetDeviceId(), err)
		}
		snap.Keys[d.GetDeviceId()] = d.GetIdentityKey()
	}
	return snap, nil
}

func lookupName(req *authv1.LookupIdentityRequest) string {
	if u := req.GetUsername(); u != "" {
		return fmt.Sprintf("user %q", u)
	}
	return fmt.Sprintf("account %s", req.GetUserId())
}

// refreshContact looks name up and observes the result, returning an IdentityChangedError
// when it differs from what is pinned.
func (c *Client) refreshContact(ctx context.Context, s *state, name string) error {
	if name == s.Username {
		_, err := c.syncOwnDevices(ctx, s)
		return err
	}
	got, snap, err := c.lookup(ctx, s, &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_Username{Username: name}})
	if err != nil {
		return err
	}
	if changed := s.observe(got, snap); changed != nil {
		return changed
	}
	return nil
}

// SafetyNumber is the number two users compare to check their end-to-end encryption.
type SafetyNumber struct {
	// Number is 60 digits in 12 groups of 5, computed from both accounts' current devices.
	Number string
	// Changed is non-nil when the contact's current keys differ from the pinned ones.
	Changed *IdentityChangedError
	// NewDevices lists the contact's devices that appeared since the last Trust or first
	// contact: the number changed since then because of them.
	NewDevices []NewDevice
}

// SafetyNumber computes the safety number of this account and username's from both
// accounts' current device keys, as the server lists them now. Both users see the same
// number only if nobody substituted a key; Changed reports keys that differ from the ones
// this device pinned.
func (c *Client) SafetyNumber(ctx context.Context, username string) (SafetyNumber, error) {
	username = strings.ToLower(username)
	var out SafetyNumber
	err := c.cycle(func(s *state) error {
		if err := s.registered(); err != nil {
			return err
		}
		if username == s.Username {
			return ErrSelf
		}
		own, err := c.syncOwnDevices(ctx, s)
		if err != nil {
			return err
		}
		local := safetynumber.Party{UserID: s.UserID}
		for _, d := range own {
			local.IdentityKeys = append(local.IdentityKeys, d.GetIdentityKey())
		}
		name, snap, err := c.lookup(ctx, s, &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_Username{Username: username}})
		if err != nil {
			return err
		}
		out.Changed = s.observe(name, snap)
		if out.Changed == nil && s.Contacts[name].Pending != nil {
			out.Changed = s.Contacts[name].pendingError(name)
		}
		out.NewDevices = s.unverified(name)
		remote := safetynumber.Party{UserID: snap.UserID, IdentityKeys: slices.Collect(maps.Values(snap.Keys))}
		n, err := safetynumber.Compute(local, remote)
		if err != nil {
			return fmt.Errorf("client: safety number: %w", err)
		}
		out.Number = n.String()
		return nil
	})
	return out, err
}

// Trust accepts username's current identity as the server lists it now (after the user
// compared safety numbers): it pins the current keys, drops sessions with keys that
// changed, clears the pending change so sends work again, and marks new devices verified.
// username may be this device's own account, to accept devices another device approved.
// It fails with ErrNothingToTrust when nothing changed.
func (c *Client) Trust(ctx context.Context, username string) error {
	username = strings.ToLower(username)
	return c.cycle(func(s *state) error {
		if err := s.registered(); err != nil {
			return err
		}
		ct := s.Contacts[username]
		if ct == nil {
			return fmt.Errorf("%w %q", ErrUnknownContact, username)
		}
		name, snap, err := c.lookup(ctx, s, &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_Username{Username: username}})
		if err != nil {
			return err
		}
		if s.observe(name, snap) == nil && ct.Pending == nil && len(s.unverified(name)) == 0 {
			return fmt.Errorf("%w for %s", ErrNothingToTrust, username)
		}
		next := &contact{UserID: snap.UserID, Devices: make(map[uint32]*peerDevice, len(snap.Keys))}
		for id, k := range snap.Keys {
			d := &peerDevice{IdentityKey: k}
			if old := ct.Devices[id]; old != nil && ct.UserID == snap.UserID {
				d.Sessions = sessionsWith(old.Sessions, k)
			}
			next.Devices[id] = d
		}
		s.Contacts[username] = next
		return nil
	})
}

// sessionsWith keeps the sessions whose peer is identityKey: sessions with a replaced key
// must not be used again, while ones with the now trusted key stay valid.
func sessionsWith(sessions [][]byte, identityKey []byte) [][]byte {
	var keep [][]byte
	for _, enc := range sessions {
		if sess, err := session.Unmarshal(enc); err == nil && bytes.Equal(sess.RemoteIdentity().Bytes(), identityKey) {
			keep = append(keep, enc)
		}
	}
	return keep
}
