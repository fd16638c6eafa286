package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/guardyn/guardyn/libs/client/content"
	"github.com/guardyn/guardyn/libs/client/vault"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
)

// Profile describes the local device.
type Profile struct {
	Username, UserID, DeviceName string
	DeviceID                     uint32
	// Fingerprint is this device's identity key fingerprint (see Fingerprint).
	Fingerprint string
	// LinkPending is set while the device waits for its link to be approved.
	LinkPending bool
}

// Whoami describes the local device from the profile alone.
func (c *Client) Whoami() (Profile, error) {
	s, err := c.view()
	if err != nil {
		return Profile{}, err
	}
	id, err := s.identity()
	if err != nil {
		return Profile{}, err
	}
	return Profile{
		Username: s.Username, UserID: s.UserID, DeviceName: s.DeviceName, DeviceID: s.DeviceID,
		Fingerprint: Fingerprint(id.Public().Bytes()), LinkPending: s.Link != nil,
	}, nil
}

// Device is one device of the caller's account.
type Device struct {
	ID          uint32
	Name        string
	Fingerprint string
	Created     time.Time
	// Current marks the device this profile is.
	Current bool
	// Unverified marks a device this device did not approve and that was added after it
	// joined the account (see NewDevice), until Trust of one's own username.
	Unverified bool
}

// Devices lists the account's devices as the server knows them and pins the identity keys
// of ones this device had not seen, flagging them Unverified (this device did not approve
// them).
func (c *Client) Devices(ctx context.Context) ([]Device, error) {
	var out []Device
	err := c.cycle(func(s *state) error {
		devs, err := c.syncOwnDevices(ctx, s)
		if err != nil {
			return err
		}
		own := s.Contacts[s.Username]
		for _, d := range devs {
			pinned := own.Devices[d.GetDeviceId()]
			out = append(out, Device{
				ID: d.GetDeviceId(), Name: d.GetName(), Fingerprint: Fingerprint(d.GetIdentityKey()),
				Created: d.GetCreatedAt().AsTime(), Current: d.GetDeviceId() == s.DeviceID,
				Unverified: pinned != nil && pinned.Unverified,
			})
		}
		return nil
	})
	return out, err
}

// syncOwnDevices refreshes the account's own contact entry (its other devices) from
// ListDevices.
func (c *Client) syncOwnDevices(ctx context.Context, s *state) ([]*authv1.Device, error) {
	actx, err := c.bearer(ctx, s)
	if err != nil {
		return nil, err
	}
	resp, err := c.auth.ListDevices(actx, &authv1.ListDevicesRequest{})
	if err != nil {
		return nil, fmt.Errorf("client: list devices: %w", err)
	}
	snap, err := snapshotOf(s, s.UserID, resp.GetDevices())
	if err != nil {
		return nil, fmt.Errorf("client: list devices: %w", err)
	}
	s.observe(s.Username, snap)
	return resp.GetDevices(), nil
}

// PendingLink is a new device asking to join the account.
type PendingLink struct {
	ID, DeviceName string
	// Fingerprint of the new device's identity key: compare it with the one the new device
	// shows before approving.
	Fingerprint      string
	Created, Expires time.Time
}

// PendingLinks lists the account's undecided device links.
func (c *Client) PendingLinks(ctx context.Context) ([]PendingLink, error) {
	var out []PendingLink
	err := c.cycle(func(s *state) error {
		actx, err := c.bearer(ctx, s)
		if err != nil {
			return err
		}
		resp, err := c.auth.ListPendingDeviceLinks(actx, &authv1.ListPendingDeviceLinksRequest{})
		if err != nil {
			return fmt.Errorf("client: list pending links: %w", err)
		}
		for _, l := range resp.GetLinks() {
			out = append(out, PendingLink{
				ID: l.GetLinkId(), DeviceName: l.GetDeviceName(), Fingerprint: Fingerprint(l.GetIdentityKey()),
				Created: l.GetCreatedAt().AsTime(), Expires: l.GetExpiresAt().AsTime(),
			})
		}
		return nil
	})
	return out, err
}

// Approve approves a pending link and pins the new device's identity key as one of the
// account's devices, verified since this device approved it. It returns the new device id.
func (c *Client) Approve(ctx context.Context, linkID string) (uint32, error) {
	var devID uint32
	err := c.cycle(func(s *state) error {
		actx, err := c.bearer(ctx, s)
		if err != nil {
			return err
		}
		resp, err := c.auth.ApproveDeviceLink(actx, &authv1.ApproveDeviceLinkRequest{LinkId: linkID})
		if err != nil {
			return fmt.Errorf("client: approve link %s: %w", linkID, err)
		}
		devID = resp.GetDeviceId()
		if _, err := c.syncOwnDevices(ctx, s); err != nil {
			return err
		}
		if d := s.Contacts[s.Username].Devices[devID]; d != nil {
			d.Unverified = false
		}
		return nil
	})
	return devID, err
}

// Reject refuses a pending link.
func (c *Client) Reject(ctx context.Context, linkID string) error {
	return c.cycle(func(s *state) error {
		actx, err := c.bearer(ctx, s)
		if err != nil {
			return err
		}
		if _, err := c.auth.RejectDeviceLink(actx, &authv1.RejectDeviceLinkRequest{LinkId: linkID}); err != nil {
			return fmt.Errorf("client: reject link %s: %w", linkID, err)
		}
		return nil
	})
}

// RemoveDevice removes a device of the account (possibly this one).
func (c *Client) RemoveDevice(ctx context.Context, deviceID uint32) error {
	return c.cycle(func(s *state) error {
		actx, err := c.bearer(ctx, s)
		if err != nil {
			return err
		}
		if _, err := c.auth.RemoveDevice(actx, &authv1.RemoveDeviceRequest{DeviceId: deviceID}); err != nil {
			return fmt.Errorf("client: remove device %d: %w", deviceID, err)
		}
		if own := s.Contacts[s.Username]; own != nil {
			delete(own.Devices, deviceID)
		}
		return nil
	})
}

// Export returns everything the server stores about the account (no message content).
func (c *Client) Export(ctx context.Context) (*authv1.ExportAccountDataResponse, error) {
	var out *authv1.ExportAccountDataResponse
	err := c.cycle(func(s *state) error {
		actx, err := c.bearer(ctx, s)
		if err != nil {
			return err
		}
		out, err = c.auth.ExportAccountData(actx, &authv1.ExportAccountDataRequest{})
		if err != nil {
			return fmt.Errorf("client: export account data: %w", err)
		}
		return nil
	})
	return out, err
}

// DeleteAccount deletes the account on the server, then this profile's local state.
// confirm must repeat the username.
func (c *Client) DeleteAccount(ctx context.Context, confirm string) error {
	err := c.cycle(func(s *state) error {
		actx, err := c.bearer(ctx, s)
		if err != nil {
			return err
		}
		if _, err := c.auth.DeleteAccount(actx, &authv1.DeleteAccountRequest{ConfirmUsername: confirm}); err != nil {
			return fmt.Errorf("client: delete account: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.vault.Destroy()
}

// History returns the local message log, oldest first; peer filters by conversation when
// not empty. An entry logged twice (a crash between writing the history and the state
// makes a message be processed again) is shown once.
func (c *Client) History(peer string) ([]LogEntry, error) {
	records, err := c.vault.History()
	if err != nil {
		return nil, err
	}
	type key struct {
		id, ref string
		kind    content.Kind
	}
	seen := make(map[key]bool, len(records))
	var out []LogEntry
	for _, r := range records {
		var e LogEntry
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, fmt.Errorf("client: decode history entry: %w", err)
		}
		k := key{e.ID, e.Ref, e.Kind}
		if seen[k] || (peer != "" && e.Peer != peer) {
			continue
		}
		seen[k] = true
		out = append(out, e)
	}
	return out, nil
}

// LinkRequest is a started device link, waiting for an existing device to approve it.
type LinkRequest struct {
	ID string
	// Fingerprint of this new device's identity key, for the approving device to compare.
	Fingerprint string
	Expires     time.Time
}

// StartLink creates a profile for a new device of an existing account and asks to join it.
// Approve it from an existing device, then call WaitLink.
func StartLink(ctx context.Context, cfg Config, username, deviceName string) (*Client, LinkRequest, error) {
	username = strings.ToLower(username)
	if vault.Exists(cfg.storage()) {
		return nil, LinkRequest{}, fmt.Errorf("%w in %s", ErrProfileExists, cfg.where())
	}
	s, id, err := newState(username, deviceName)
	if err != nil {
		return nil, LinkRequest{}, err
	}
	authc := authv1.NewAuthServiceClient(cfg.Conn)
	if s.TrustRoot, err = fetchTrustRoot(ctx, authc); err != nil {
		return nil, LinkRequest{}, err
	}
	ik := id.Public().Bytes()
	sig, err := id.Sign(keys.ContextDeviceLink, deviceLinkStatement(username, ik, deviceName))
	if err != nil {
		return nil, LinkRequest{}, fmt.Errorf("client: sign device link: %w", err)
	}
	resp, err := authc.StartDeviceLink(ctx, &authv1.StartDeviceLinkRequest{Username: username, IdentityKey: ik, DeviceName: deviceName, Signature: sig})
	if err != nil {
		return nil, LinkRequest{}, fmt.Errorf("client: start device link: %w", err)
	}
	s.Link = &pendingLink{ID: resp.GetLinkId(), Expires: resp.GetExpiresAt().AsTime()}
	b, err := s.encode()
	if err != nil {
		return nil, LinkRequest{}, err
	}
	v, err := vault.Create(cfg.storage(), cfg.Passphrase, cfg.params(), b)
	if err != nil {
		return nil, LinkRequest{}, err
	}
	return newClient(cfg, v), LinkRequest{ID: s.Link.ID, Fingerprint: Fingerprint(ik), Expires: s.Link.Expires}, nil
}

// WaitLink polls the pending link every poll interval (0 means one second) until it is
// decided. On approval it logs in, uploads prekeys and pins the account's other devices.
// On rejection or expiry it deletes the local profile and returns ErrLinkRejected or
// ErrLinkExpired.
func (c *Client) WaitLink(ctx context.Context, poll time.Duration) error {
	if poll <= 0 {
		poll = defaultLinkPoll
	}
	for {
		var decided bool
		var final error
		err := c.cycle(func(s *state) error {
			if s.Link == nil {
				decided = true
				return nil
			}
			id, err := s.identity()
			if err != nil {
				return err
			}
			sig, err := id.Sign(contextDeviceLinkStatus, deviceLinkStatusStatement(s.Link.ID))
			if err != nil {
				return fmt.Errorf("client: sign link status: %w", err)
			}
			resp, err := c.auth.GetDeviceLinkStatus(ctx, &authv1.GetDeviceLinkStatusRequest{LinkId: s.Link.ID, Signature: sig})
			if err != nil {
				switch Reason(err) {
				case "LINK_NOT_FOUND":
					decided, final = true, ErrLinkExpired
					return nil
				case "RATE_LIMITED":
					return nil // polling too fast: wait and ask again
				}
				return fmt.Errorf("client: link status: %w", err)
			}
			switch resp.GetState() {
			case authv1.DeviceLinkState_DEVICE_LINK_STATE_APPROVED:
				s.UserID, s.DeviceID, s.Link = resp.GetUserId(), resp.GetDeviceId(), nil
				decided = true
				if err := c.login(ctx, s); err != nil {
					return err
				}
				_, err := c.syncOwnDevices(ctx, s)
				return err
			case authv1.DeviceLinkState_DEVICE_LINK_STATE_REJECTED:
				decided, final = true, ErrLinkRejected
			}
			return nil
		})
		if err != nil {
			return err
		}
		if final != nil {
			return errors.Join(final, c.vault.Destroy())
		}
		if decided {
			if err := c.uploadInitialPreKeys(ctx); err != nil {
				return err
			}
			_, err := c.ReplenishKeyPackages(ctx)
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}
