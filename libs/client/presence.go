package client

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/guardyn/guardyn/libs/client/content"
	"github.com/guardyn/guardyn/libs/crypto/presencestatus"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
)

// Presence is a contact's presence as the server lets this account see it.
type Presence struct {
	Username string
	// Status is "online", "away", "busy", "offline", or "hidden" when the contact does not
	// show it to this account (or this account hides its own: hiding is symmetric).
	Status string
	// LastSeen is when the contact was last online, to the minute; zero when hidden or
	// never seen.
	LastSeen time.Time
	// Text is the contact's status text, opened with the key they shared; empty when none
	// is set or its key has not arrived (TextLocked).
	Text       string
	TextLocked bool
}

// Statuses a user can set.
var statuses = map[string]presencev1.PresenceStatus{
	"online":  presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE,
	"away":    presencev1.PresenceStatus_PRESENCE_STATUS_AWAY,
	"busy":    presencev1.PresenceStatus_PRESENCE_STATUS_BUSY,
	"offline": presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE,
}

func statusName(st presencev1.PresenceStatus) string {
	for name, v := range statuses {
		if v == st {
			return name
		}
	}
	return "hidden"
}

// SetStatus shows this device as online, away, busy or offline until its heartbeats stop
// (an open Listen counts as one), with an optional status text that only the contacts this
// account shares its status key with can read (SetPresencePrivacy shares it).
func (c *Client) SetStatus(ctx context.Context, status, text string) error {
	st, ok := statuses[strings.ToLower(status)]
	if !ok {
		return fmt.Errorf("client: status %q: want online, away, busy or offline", status)
	}
	req := &presencev1.SetStatusRequest{Status: st}
	var actx context.Context
	err := c.cycle(func(s *state) error {
		var err error
		if actx, err = c.bearer(ctx, s); err != nil {
			return err
		}
		if text == "" {
			return nil
		}
		key, err := s.statusKey(false)
		if err != nil {
			return err
		}
		req.SealedStatus, err = presencestatus.Seal(key, s.UserID, text)
		return err
	})
	if err != nil {
		return err
	}
	_, err = c.presence.SetStatus(actx, req)
	return err
}

// statusKey returns this account's status key, a new one when there is none or fresh is
// set.
func (s *state) statusKey(fresh bool) (*presencestatus.Key, error) {
	if s.StatusKey == nil || fresh {
		k := presencestatus.GenerateKey()
		s.StatusKey = &statusKey{ID: k.ID(), Key: k.Bytes()}
	}
	return presencestatus.NewKey(s.StatusKey.ID, s.StatusKey.Key)
}

// shareStatusKey sends this account's status key to usernames over their sessions, after a
// new key if the last sharing reached someone no longer among them.
func (c *Client) shareStatusKey(ctx context.Context, usernames []string) error {
	var body string
	err := c.cycle(func(s *state) error {
		dropped := false
		for _, old := range s.PresenceShared {
			if !slices.Contains(usernames, old) {
				dropped = true
			}
		}
		key, err := s.statusKey(dropped)
		if err != nil {
			return err
		}
		body = content.FormatStatusKey(key.ID(), key.Bytes())
		s.PresenceShared = slices.Clone(usernames)
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range usernames {
		m := content.Message{ID: content.NewID(), Kind: content.KindStatusKey, Body: body, Sent: c.now()}
		if err := c.sendTo(ctx, name, false, m); err != nil {
			return fmt.Errorf("client: share status key with %s: %w", name, err)
		}
	}
	return nil
}

// SetPresencePrivacy sets who sees this account's presence: "everyone", "nobody", or
// "contacts" with the usernames allowed (the server learns their account ids, nothing else
// of the address book).
func (c *Client) SetPresencePrivacy(ctx context.Context, visibility string, usernames []string) error {
	vis, ok := map[string]presencev1.PresenceVisibility{
		"everyone": presencev1.PresenceVisibility_PRESENCE_VISIBILITY_EVERYONE,
		"contacts": presencev1.PresenceVisibility_PRESENCE_VISIBILITY_CONTACTS,
		"nobody":   presencev1.PresenceVisibility_PRESENCE_VISIBILITY_NOBODY,
	}[strings.ToLower(visibility)]
	if !ok {
		return fmt.Errorf("client: visibility %q: want everyone, contacts or nobody", visibility)
	}
	actx, err := c.freshBearer(ctx)
	if err != nil {
		return err
	}
	ids, err := c.userIDs(actx, usernames)
	if err != nil {
		return err
	}
	if _, err = c.presence.SetPresencePrivacy(actx, &presencev1.SetPresencePrivacyRequest{Visibility: vis, AllowedUserIds: ids}); err != nil {
		return err
	}
	if vis != presencev1.PresenceVisibility_PRESENCE_VISIBILITY_CONTACTS {
		usernames = nil // nobody gets the key; under everyone, texts are for contacts named later
	}
	lower := make([]string, len(usernames))
	for i, n := range usernames {
		lower[i] = strings.ToLower(n)
	}
	return c.shareStatusKey(ctx, lower)
}

// userIDs resolves usernames to account ids.
func (c *Client) userIDs(actx context.Context, usernames []string) ([]string, error) {
	ids := make([]string, 0, len(usernames))
	for _, name := range usernames {
		resp, err := c.auth.LookupIdentity(actx, &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_Username{Username: strings.ToLower(name)}})
		if err != nil {
			return nil, fmt.Errorf("client: look up %s: %w", name, err)
		}
		ids = append(ids, resp.GetUserId())
	}
	return ids, nil
}

// presenceOf converts p, opening its status text with the keys name shared.
func (c *Client) presenceOf(name string, p *presencev1.Presence) Presence {
	out := Presence{Username: name, Status: statusName(p.GetStatus())}
	if p.GetLastSeen() != nil {
		out.LastSeen = p.GetLastSeen().AsTime()
	}
	sealed := p.GetSealedStatus()
	if len(sealed) == 0 {
		return out
	}
	out.TextLocked = true
	id, err := presencestatus.KeyID(sealed)
	s, verr := c.view()
	if err != nil || verr != nil || s.Contacts[name] == nil {
		return out
	}
	for _, k := range s.Contacts[name].StatusKeys {
		if k.ID != id {
			continue
		}
		key, err := presencestatus.NewKey(k.ID, k.Key)
		if err != nil {
			break
		}
		if text, err := presencestatus.Open(key, p.GetUserId(), sealed); err == nil {
			out.Text, out.TextLocked = text, false
		}
	}
	return out
}

// GetPresence returns the presence of each username, in order.
func (c *Client) GetPresence(ctx context.Context, usernames []string) ([]Presence, error) {
	actx, err := c.freshBearer(ctx)
	if err != nil {
		return nil, err
	}
	ids, err := c.userIDs(actx, usernames)
	if err != nil {
		return nil, err
	}
	resp, err := c.presence.GetLastSeen(actx, &presencev1.GetLastSeenRequest{UserIds: ids})
	if err != nil {
		return nil, err
	}
	out := make([]Presence, 0, len(ids))
	for i, p := range resp.GetPresences() {
		out = append(out, c.presenceOf(strings.ToLower(usernames[i]), p))
	}
	return out, nil
}

// WatchPresence calls handle with the presence of each username, then with every change,
// until ctx ends or, with once, after the first change following the initial states.
func (c *Client) WatchPresence(ctx context.Context, usernames []string, once bool, handle func(Presence)) error {
	actx, err := c.freshBearer(ctx)
	if err != nil {
		return err
	}
	ids, err := c.userIDs(actx, usernames)
	if err != nil {
		return err
	}
	names := make(map[string]string, len(ids))
	for i, id := range ids {
		names[id] = strings.ToLower(usernames[i])
	}
	stream, err := c.presence.WatchPresence(actx, &presencev1.WatchPresenceRequest{UserIds: ids})
	if err != nil {
		return err
	}
	initial := make(map[string]bool, len(ids))
	for {
		r, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		id := r.GetPresence().GetUserId()
		handle(c.presenceOf(names[id], r.GetPresence()))
		if initial[id] && once {
			return nil
		}
		initial[id] = true
	}
}

// RegisterWebPush makes this device's push target a Web Push subscription (RFC 8030): its
// endpoint URL and its p256dh and auth keys (RFC 8291), as a browser's PushSubscription
// gives them.
func (c *Client) RegisterWebPush(ctx context.Context, endpoint string, p256dh, auth []byte) error {
	actx, err := c.freshBearer(ctx)
	if err != nil {
		return err
	}
	_, err = c.push.RegisterPushTarget(actx, &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{
		WebPush: &notificationv1.WebPushTarget{Endpoint: endpoint, P256Dh: p256dh, Auth: auth},
	}})
	return err
}

// UnregisterPush removes this device's push target.
func (c *Client) UnregisterPush(ctx context.Context) error {
	actx, err := c.freshBearer(ctx)
	if err != nil {
		return err
	}
	_, err = c.push.UnregisterPushTarget(actx, &notificationv1.UnregisterPushTargetRequest{})
	return err
}

// PushTarget says that a device of this account has a push target.
type PushTarget struct {
	DeviceID   uint32
	Platform   string // "apns", "fcm" or "web-push"
	Registered time.Time
}

// PushTargets lists which devices of this account have a push target.
func (c *Client) PushTargets(ctx context.Context) ([]PushTarget, error) {
	actx, err := c.freshBearer(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := c.push.ListPushTargets(actx, &notificationv1.ListPushTargetsRequest{})
	if err != nil {
		return nil, err
	}
	var out []PushTarget
	for _, t := range resp.GetTargets() {
		name := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(t.GetPlatform().String(), "PUSH_PLATFORM_")), "_", "-")
		out = append(out, PushTarget{DeviceID: t.GetDeviceId(), Platform: name, Registered: t.GetRegisteredAt().AsTime()})
	}
	return out, nil
}
