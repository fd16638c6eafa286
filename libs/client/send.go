package client

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/client/content"
	"github.com/guardyn/guardyn/libs/crypto/envelope"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/session"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// maxDevicesPerAccount is the API's limit on an account's devices; a server claiming more is
// not believed.
const maxDevicesPerAccount = 16

// maxUnavailableRetries bounds the identical repeats of a SendMessage the server did not
// answer.
const maxUnavailableRetries = 3

// maxSendAttempts bounds the retries of one send after STALE_DEVICE_LIST answers: one per
// device-list change racing with the send is plenty.
const maxSendAttempts = 4

// Send encrypts text for every device of username and sends it, then sends a copy to this
// account's other devices so they show the conversation too. It returns the message id.
func (c *Client) Send(ctx context.Context, username, text string) (content.ID, error) {
	if err := CheckText(text); err != nil {
		return content.ID{}, err
	}
	m := content.Message{ID: content.NewID(), Kind: content.KindText, Body: text, Sent: c.now()}
	username = strings.ToLower(username)
	if err := c.sendTo(ctx, username, false, m); err != nil {
		return m.ID, err
	}
	m.To = username
	if err := c.sendTo(ctx, "", true, m); err != nil {
		return m.ID, fmt.Errorf("client: message sent to %s, but not copied to your other devices: %w", username, err)
	}
	return m.ID, nil
}

// CheckText refuses a text message nobody should receive: empty or only white space, not
// UTF-8, or longer than content.MaxBodySize bytes.
func CheckText(text string) error {
	switch {
	case strings.TrimSpace(text) == "":
		return ErrEmptyMessage
	case !utf8.ValidString(text):
		return fmt.Errorf("%w: not valid UTF-8", ErrBadText)
	case len(text) > content.MaxBodySize:
		return fmt.Errorf("%w: %d bytes, at most %d (32 KiB)", ErrBadText, len(text), content.MaxBodySize)
	}
	return nil
}

// Typing tells username's online devices that this user is typing. It goes through
// SendEphemeral, so the server never stores it and offline devices never see it.
func (c *Client) Typing(ctx context.Context, username string) error {
	m := content.Message{ID: content.NewID(), Kind: content.KindTyping, Sent: c.now()}
	return c.sendTo(ctx, strings.ToLower(username), false, m)
}

// sendReceipts acknowledges messages to their sender's devices, up to content.MaxRefs per
// receipt, so a backlog costs one receipt rather than one per message.
func (c *Client) sendReceipts(ctx context.Context, username string, refs []content.ID) error {
	for len(refs) > 0 {
		n := min(len(refs), content.MaxRefs)
		m := content.Message{ID: content.NewID(), Kind: content.KindReceipt, Sent: c.now(), Refs: refs[:n]}
		if err := c.sendTo(ctx, username, false, m); err != nil {
			return err
		}
		refs = refs[n:]
	}
	return nil
}

// sendTo delivers m to every current device of username (or, with self, to this account's
// other devices). Stored kinds go through the ratchet sessions; typing indicators are sealed
// directly to the device identity keys (see deliveryEnvelopes). A STALE_DEVICE_LIST answer
// updates the device list from its detail and the send is retried. New devices are sent to
// (and flagged unverified) unless the client is in strict mode.
func (c *Client) sendTo(ctx context.Context, username string, self bool, m content.Message) error {
	ephemeral := m.Kind == content.KindTyping
	logged := false
	for range maxSendAttempts {
		var (
			envs      []*messagingv1.DeviceEnvelope
			recipient string
			actx      context.Context
			skip      bool
		)
		err := c.cycle(func(s *state) error {
			if err := s.registered(); err != nil {
				return err
			}
			if self {
				username = s.Username
			} else if username == s.Username {
				return ErrSelf
			}
			m.From = s.Username
			var err error
			if actx, err = c.bearer(ctx, s); err != nil {
				return err
			}
			ct, err := c.recipientDevices(ctx, s, username)
			if err != nil {
				return err
			}
			if c.requireVerified {
				if err := c.requireVerifiedDevices(ctx, s, username); err != nil {
					return err
				}
				// A text is copied to this account's other devices next: refuse now
				// rather than after the contact has it.
				if !self && (m.Kind == content.KindText || m.Kind == content.KindFile) {
					if err := c.requireVerifiedDevices(ctx, s, s.Username); err != nil {
						return err
					}
				}
				ct = s.Contacts[username]
			}
			if len(ct.Devices) == 0 {
				skip = self // no other devices of our own: nothing to copy
				if !self {
					return fmt.Errorf("client: %s has no devices", username)
				}
				return nil
			}
			if envs, err = c.deliveryEnvelopes(ctx, s, username, ct, m); err != nil {
				return err
			}
			recipient = ct.UserID
			if !logged && !self && (m.Kind == content.KindText || m.Kind == content.KindFile) {
				s.appendLog(LogEntry{ID: m.ID.String(), Peer: username, Outgoing: true, Device: s.DeviceID, Kind: m.Kind, Body: m.Body, Sent: m.Sent, File: m.File})
			}
			return nil
		})
		if err != nil || skip {
			return err
		}
		logged = true
		if ephemeral {
			_, err = c.msg.SendEphemeral(actx, &messagingv1.SendEphemeralRequest{RecipientUserId: recipient, Envelopes: envs})
		} else {
			err = c.sendMessage(actx, &messagingv1.SendMessageRequest{RecipientUserId: recipient, ClientMessageId: m.ID[:], Envelopes: envs})
		}
		if err == nil {
			return nil
		}
		if mismatch := staleDetail(err); mismatch != nil {
			if err := c.cycle(func(s *state) error { return s.applyMismatch(username, mismatch) }); err != nil {
				return err
			}
			continue
		}
		if Reason(err) == "USER_NOT_FOUND" && !self {
			// The account may have been deleted and the username registered again.
			if rerr := c.cycle(func(s *state) error { return c.refreshContact(ctx, s, username) }); rerr != nil {
				return rerr
			}
		}
		return fmt.Errorf("client: send to %s: %w", username, err)
	}
	return fmt.Errorf("client: send to %s: device list kept changing after %d attempts", username, maxSendAttempts)
}

// requireVerifiedDevices fails with an UnverifiedDevicesError when username's account has
// unverified devices. The pinned list may be stale (an unverified device removed since), so
// it asks the server before refusing.
func (c *Client) requireVerifiedDevices(ctx context.Context, s *state, username string) error {
	if len(s.unverified(username)) == 0 {
		return nil
	}
	if err := c.refreshContact(ctx, s, username); err != nil {
		return err
	}
	if nd := s.unverified(username); len(nd) > 0 {
		return &UnverifiedDevicesError{Username: username, Devices: nd}
	}
	return nil
}

// sendMessage calls SendMessage, repeating the identical request when the server cannot be
// reached: the outcome of the first call is then unknown, and the same client message id
// with the same envelopes makes a repeat a no-op if the first was stored.
func (c *Client) sendMessage(ctx context.Context, req *messagingv1.SendMessageRequest) error {
	for attempt := 1; ; attempt++ {
		_, err := c.msg.SendMessage(ctx, req)
		if status.Code(err) != codes.Unavailable || attempt == maxUnavailableRetries {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}

// recipientDevices returns the pinned contact for username with an identity key for every
// device, looking the account up when it is new or has devices whose keys are unknown.
func (c *Client) recipientDevices(ctx context.Context, s *state, username string) (*contact, error) {
	ct := s.Contacts[username]
	needLookup := ct == nil || (username == s.Username && len(ct.Devices) == 0)
	if ct != nil {
		for _, d := range ct.Devices {
			if d.IdentityKey == nil {
				needLookup = true
			}
		}
	}
	if needLookup {
		if err := c.refreshContact(ctx, s, username); err != nil {
			return nil, err
		}
		ct = s.Contacts[username]
	}
	if ct.Pending != nil {
		return nil, ct.pendingError(username)
	}
	return ct, nil
}

// deliveryEnvelopes seals m for every device of ct. Stored messages are encrypted with the
// device's session (started from a fresh key bundle when there is none). Typing indicators
// skip the ratchet: they are lossy by design, and running them through the ratchet would
// start sessions and burn skipped-message keys for signals nobody may ever receive; the
// envelope alone still encrypts them to the device and authenticates the sender.
func (c *Client) deliveryEnvelopes(ctx context.Context, s *state, username string, ct *contact, m content.Message) ([]*messagingv1.DeviceEnvelope, error) {
	ephemeral := m.Kind == content.KindTyping
	if !ephemeral {
		if err := c.startSessions(ctx, s, username, ct); err != nil {
			return nil, err
		}
	}
	plaintext, err := content.Encode(m)
	if err != nil {
		return nil, err
	}
	cert, err := c.certificate(ctx, s)
	if err != nil {
		return nil, err
	}
	id, err := s.identity()
	if err != nil {
		return nil, err
	}
	sender := envelope.Sender{Certificate: cert, IdentityKey: id.ECDH()}
	var envs []*messagingv1.DeviceEnvelope
	for _, devID := range ct.sortedDevices() {
		dev := ct.Devices[devID]
		ctype, payload := envelope.ContentTyping, plaintext
		if !ephemeral {
			sess, err := session.Unmarshal(dev.Sessions[0])
			if err != nil {
				return nil, fmt.Errorf("client: session with %s device %d: %w", username, devID, err)
			}
			if payload, err = sess.Encrypt(nil, plaintext); err != nil {
				return nil, fmt.Errorf("client: encrypt for %s device %d: %w", username, devID, err)
			}
			if dev.Sessions[0], err = sess.MarshalBinary(); err != nil {
				return nil, fmt.Errorf("client: save session: %w", err)
			}
			ctype = envelope.ContentSessionMessage
			if session.IsPreKeyMessage(payload) {
				ctype = envelope.ContentPreKeyMessage
			}
		}
		peer, err := ecdh.P256().NewPublicKey(dev.IdentityKey)
		if err != nil {
			return nil, fmt.Errorf("client: identity key of %s device %d: %w", username, devID, err)
		}
		sealed, err := envelope.Seal(sender, envelope.Recipient{IdentityKey: peer, DeviceID: devID}, ctype, payload)
		if err != nil {
			return nil, fmt.Errorf("client: seal for %s device %d: %w", username, devID, err)
		}
		envs = append(envs, &messagingv1.DeviceEnvelope{DeviceId: devID, SealedEnvelope: sealed})
	}
	return envs, nil
}

// startSessions runs PQXDH with every device of ct that has no session yet, from key
// bundles whose identity keys must match the pinned ones.
func (c *Client) startSessions(ctx context.Context, s *state, username string, ct *contact) error {
	var missing []uint32
	for _, devID := range ct.sortedDevices() {
		dropOutdatedSessions(ct.Devices[devID])
		if len(ct.Devices[devID].Sessions) == 0 {
			missing = append(missing, devID)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	actx, err := c.bearer(ctx, s)
	if err != nil {
		return err
	}
	resp, err := c.auth.GetKeyBundles(actx, &authv1.GetKeyBundlesRequest{UserId: ct.UserID, DeviceIds: missing})
	if err != nil {
		return fmt.Errorf("client: key bundles of %s: %w", username, err)
	}
	if len(resp.GetDevicesWithoutPrekeys()) > 0 {
		return fmt.Errorf("%w: %s device(s) %v", ErrNoPreKeys, username, resp.GetDevicesWithoutPrekeys())
	}
	id, err := s.identity()
	if err != nil {
		return err
	}
	for _, b := range resp.GetBundles() {
		dev := ct.Devices[b.GetDeviceId()]
		if dev == nil || len(dev.Sessions) > 0 {
			continue
		}
		if !keysEqual(dev.IdentityKey, b.GetIdentityKey()) {
			snap := ct.snapshot()
			snap.Keys[b.GetDeviceId()] = b.GetIdentityKey()
			if changed := s.observe(username, snap); changed != nil {
				return changed
			}
			return fmt.Errorf("client: key bundle of %s device %d does not match its pinned identity key", username, b.GetDeviceId())
		}
		bundle, err := bundleFromProto(b)
		if err != nil {
			return err
		}
		sess, err := session.Initiate(id, bundle, sessionConfig)
		if err != nil {
			return fmt.Errorf("client: start session with %s device %d: %w", username, b.GetDeviceId(), err)
		}
		enc, err := sess.MarshalBinary()
		if err != nil {
			return fmt.Errorf("client: save session: %w", err)
		}
		dev.Sessions = [][]byte{enc}
	}
	for _, devID := range missing {
		if len(ct.Devices[devID].Sessions) == 0 {
			return fmt.Errorf("%w: %s device %d", ErrNoPreKeys, username, devID)
		}
	}
	return nil
}

// dropOutdatedSessions forgets sessions of a format this version refuses (PQXDH v1 and ratchet
// wire v1, whose message keys gave deterministic AES-GCM nonces): the device then starts a
// new session with a fresh key bundle, and the peer accepts it as a new handshake.
func dropOutdatedSessions(dev *peerDevice) {
	dev.Sessions = slices.DeleteFunc(dev.Sessions, func(enc []byte) bool {
		_, err := session.Unmarshal(enc)
		return errors.Is(err, session.ErrUnsupportedVersion)
	})
}

func keysEqual(a, b []byte) bool {
	ka, err := keys.ParseIdentityKey(a)
	if err != nil {
		return false
	}
	kb, err := keys.ParseIdentityKey(b)
	if err != nil {
		return false
	}
	return ka.Equal(kb)
}

// applyMismatch updates the device list of username from a STALE_DEVICE_LIST detail:
// removed devices and their sessions are dropped, new ones added without a key (fetched,
// and pinned as unverified, before the retry).
func (s *state) applyMismatch(username string, m *messagingv1.DeviceListMismatch) error {
	ct := s.Contacts[username]
	if ct == nil {
		return nil
	}
	if len(m.GetCurrentDeviceIds()) > maxDevicesPerAccount || len(m.GetMissingDeviceIds()) > maxDevicesPerAccount {
		return fmt.Errorf("client: server lists %d devices for %s, more than an account may have (%d)", len(m.GetCurrentDeviceIds()), username, maxDevicesPerAccount)
	}
	for _, id := range m.GetExtraDeviceIds() {
		delete(ct.Devices, id)
	}
	for _, id := range m.GetMissingDeviceIds() {
		if ct.Devices[id] == nil {
			ct.Devices[id] = &peerDevice{}
		}
	}
	return nil
}

// staleDetail returns the DeviceListMismatch of a STALE_DEVICE_LIST error, or nil.
func staleDetail(err error) *messagingv1.DeviceListMismatch {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if m, ok := d.(*messagingv1.DeviceListMismatch); ok {
			return m
		}
	}
	return nil
}
