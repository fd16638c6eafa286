package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/client/content"
	"github.com/guardyn/guardyn/libs/crypto/mls"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
)

// Group chats are MLS groups (libs/crypto/mls) in which every device is a leaf: a member on
// two devices has two leaves and gets every message on both. The server is the Delivery
// Service (services/messaging): it orders commits, one per epoch, and stores each message
// once. A group has a local name on each device; the creator tells the members its name in
// the group's first message after each add.

// Key package policy: how many unclaimed MLS KeyPackages a device keeps on the server.
const (
	KeyPackageBatch    = 10
	KeyPackageLowWater = 5
	keyPackageLifetime = 90 * 24 * time.Hour
)

// maxCommitAttempts bounds how often a commit that lost its epoch to another member is
// rebuilt on the state that won.
const maxCommitAttempts = 5

// catchUpWait bounds how long a commit waits for another process's listener to apply
// the commits it lost to.
const catchUpWait = 30 * time.Second

// Errors of the group API.
var (
	// ErrNoGroup reports a group name this device does not know.
	ErrNoGroup = errors.New("client: no such group")
	// ErrGroupExists reports a group name already in use on this device.
	ErrGroupExists = errors.New("client: a group with this name exists")
	// ErrRemovedFromGroup reports an operation on a group this device was removed from.
	ErrRemovedFromGroup = errors.New("client: you were removed from this group")
	// ErrNoKeyPackages reports an account none of whose devices has a key package to claim.
	ErrNoKeyPackages = errors.New("client: the account has no MLS key packages yet (its devices upload them when they register or listen)")
)

// mlsDevice is this device's MLS signature key, credential and unclaimed key packages.
type mlsDevice struct {
	// Suite is the cipher suite of SigPriv and KeyPackages; 0 is legacyGroupSuite.
	Suite       uint16              `json:"suite,omitempty"`
	SigPriv     []byte              `json:"sig_priv"`
	Credential  []byte              `json:"credential"`
	KeyPackages []storedKeyPackage  `json:"key_packages,omitempty"`
	Groups      map[string]*myGroup `json:"groups,omitempty"`
	// ExternalSender is the delivery service's external sender (RFC 9420 §12.1.8.1
	// ExternalSender bytes), pinned the first time the server showed it (CreateGroup,
	// FetchWelcome). This device's groups list it in their external_senders extension
	// and accept external proposals (the service's Removes of deleted devices) signed by
	// no other key.
	ExternalSender []byte `json:"external_sender,omitempty"`
}

// pinExternalSender keeps the first well-formed external sender the server shows.
func (d *mlsDevice) pinExternalSender(b []byte) {
	if d.ExternalSender != nil || len(b) == 0 {
		return
	}
	if _, err := mls.ParseExternalSender(b); err == nil {
		d.ExternalSender = bytes.Clone(b)
	}
}

// trustedExternalSenders is the signature key of the pinned external sender, or none
// (non-nil: no external proposal is accepted) before one is pinned.
func (d *mlsDevice) trustedExternalSenders() [][]byte {
	if d == nil || d.ExternalSender == nil {
		return [][]byte{}
	}
	es, err := mls.ParseExternalSender(d.ExternalSender)
	if err != nil {
		return [][]byte{}
	}
	return [][]byte{es.SignatureKey}
}

// openGroup restores a group's state with this device's validator and trusted external
// senders (neither is part of the stored state).
func (s *state) openGroup(st []byte) (*mls.Group, error) {
	g, err := mls.UnmarshalState(st, s.credentialValidator())
	if err != nil {
		return nil, err
	}
	g.SetTrustedExternalSenders(s.MLS.trustedExternalSenders())
	return g, nil
}

func (d *mlsDevice) suite() mls.CipherSuite {
	if d.Suite == 0 {
		return legacyGroupSuite
	}
	return mls.CipherSuite(d.Suite)
}

type storedKeyPackage struct {
	Message  []byte `json:"message"`
	InitPriv []byte `json:"init_priv"`
	EncPriv  []byte `json:"enc_priv"`
}

// myGroup is one group on this device, under its local name.
type myGroup struct {
	ID      []byte `json:"id"`
	State   []byte `json:"state,omitempty"`
	Removed bool   `json:"removed,omitempty"`
	// Named is set once the group's name came from a member (or this device chose it).
	Named bool `json:"named,omitempty"`
	// Names caches the usernames of member accounts by user id.
	Names map[string]string `json:"names,omitempty"`
}

// groupText is the plaintext of a group application message.
type groupText struct {
	Kind string    `json:"k"` // "text", "name" or "file"
	ID   string    `json:"id,omitempty"`
	Body string    `json:"b"`
	Sent time.Time `json:"t"`
	// File is the file of a "file" message, with a capability per member account.
	File *content.GroupFile `json:"f,omitempty"`
}

const maxGroupName = 64

// parseGroupText decodes a group application message.
func parseGroupText(b []byte) (*groupText, error) {
	var m groupText
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("client: group message: %w", err)
	}
	if (m.Kind == "file") != (m.File != nil) {
		return nil, fmt.Errorf("client: group message: a file goes with kind \"file\" only")
	}
	switch m.Kind {
	case "text", "file":
		if m.Kind == "text" {
			if err := CheckText(m.Body); err != nil {
				return nil, err
			}
		} else if m.Body != "" {
			return nil, fmt.Errorf("client: group file message with a body")
		}
		if _, err := content.ParseID(m.ID); err != nil {
			return nil, fmt.Errorf("client: group message id: %w", err)
		}
	case "name":
		if err := checkGroupName(m.Body); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("client: group message of unknown kind %q", m.Kind)
	}
	return &m, nil
}

// checkGroupName accepts names that work as a CLI argument: 1 to 64 letters, digits,
// '-', '_' or '.'.
func checkGroupName(name string) error {
	if name == "" || len(name) > maxGroupName || strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return fmt.Errorf("client: group name %q: use 1 to %d letters, digits, '-', '_' or '.'", name, maxGroupName)
	}
	return nil
}

// mlsState returns this device's MLS identity, creating it on first use. An identity of
// another suite (made before groupSuite changed) is replaced, with its unclaimed key
// packages: groups already joined keep their own signature key in their state.
func (s *state) mlsState() (*mlsDevice, *mls.Identity, error) {
	if s.MLS == nil || s.MLS.suite() != groupSuite {
		id, err := s.identity()
		if err != nil {
			return nil, nil, err
		}
		sigPriv, cred, err := newMLSIdentity(id, s.UserID, s.DeviceID)
		if err != nil {
			return nil, nil, err
		}
		if s.MLS == nil {
			s.MLS = &mlsDevice{}
		}
		s.MLS.Suite, s.MLS.SigPriv, s.MLS.Credential, s.MLS.KeyPackages = uint16(groupSuite), sigPriv, cred, nil
	}
	if s.MLS.Groups == nil {
		s.MLS.Groups = make(map[string]*myGroup)
	}
	mid, err := mls.IdentityFromKey(groupSuite, s.MLS.Credential, s.MLS.SigPriv)
	if err != nil {
		return nil, nil, fmt.Errorf("client: MLS identity: %w", err)
	}
	return s.MLS, mid, nil
}

// ReplenishKeyPackages uploads fresh MLS key packages when fewer than KeyPackageLowWater
// of this device's are unclaimed, and returns how many it uploaded.
func (c *Client) ReplenishKeyPackages(ctx context.Context) (int, error) {
	uploaded := 0
	err := c.cycle(func(s *state) error {
		actx, err := c.bearer(ctx, s)
		if err != nil {
			return err
		}
		count, err := c.auth.CountKeyPackages(actx, &authv1.CountKeyPackagesRequest{})
		if err != nil {
			return fmt.Errorf("client: count key packages: %w", err)
		}
		if count.GetCount() >= KeyPackageLowWater {
			return nil
		}
		dev, mid, err := s.mlsState()
		if err != nil {
			return err
		}
		n := KeyPackageBatch - int(count.GetCount())
		now := c.now()
		req := &authv1.UploadKeyPackagesRequest{}
		for range n {
			kp, err := mid.NewKeyPackage(uint64(now.Add(-time.Hour).Unix()), uint64(now.Add(keyPackageLifetime).Unix()))
			if err != nil {
				return fmt.Errorf("client: new key package: %w", err)
			}
			initPriv, encPriv := kp.PrivateKeys()
			dev.KeyPackages = append(dev.KeyPackages, storedKeyPackage{Message: kp.Bytes(), InitPriv: initPriv, EncPriv: encPriv})
			req.KeyPackages = append(req.KeyPackages, kp.Bytes())
		}
		// The server forgets claimed packages; keep the newest few hundred private halves.
		if extra := len(dev.KeyPackages) - 10*KeyPackageBatch; extra > 0 {
			dev.KeyPackages = slices.Delete(dev.KeyPackages, 0, extra)
		}
		if _, err := c.auth.UploadKeyPackages(actx, req); err != nil {
			return fmt.Errorf("client: upload key packages: %w", err)
		}
		uploaded = n
		return nil
	})
	return uploaded, err
}

// claimed is one device's claimed key package.
type claimed struct {
	addr       *commonv1.DeviceAddress
	keyPackage []byte
}

// claimKeyPackages claims a key package of every device of the named accounts (this
// device excluded), pinning each account's identity as a message to it would.
func (c *Client) claimKeyPackages(ctx context.Context, s *state, usernames []string) ([]claimed, error) {
	actx, err := c.bearer(ctx, s)
	if err != nil {
		return nil, err
	}
	var out []claimed
	for _, name := range usernames {
		name = strings.ToLower(name)
		if name == s.Username {
			if _, err := c.syncOwnDevices(ctx, s); err != nil {
				return nil, err
			}
		} else if _, err := c.recipientDevices(ctx, s, name); err != nil {
			return nil, err
		}
		userID := s.Contacts[name].UserID
		resp, err := c.auth.ClaimKeyPackages(actx, &authv1.ClaimKeyPackagesRequest{UserId: userID})
		if err != nil {
			return nil, fmt.Errorf("client: claim key packages of %s: %w", name, err)
		}
		n := 0
		for _, kp := range resp.GetKeyPackages() {
			if userID == s.UserID && kp.GetDeviceId() == s.DeviceID {
				continue
			}
			out = append(out, claimed{addr: &commonv1.DeviceAddress{UserId: userID, DeviceId: kp.GetDeviceId()}, keyPackage: kp.GetKeyPackage()})
			n++
		}
		if n == 0 && name != s.Username {
			return nil, fmt.Errorf("%w: %s", ErrNoKeyPackages, name)
		}
	}
	return out, nil
}

// loadGroup restores the named group.
func (s *state) loadGroup(name string) (*myGroup, *mls.Group, error) {
	if s.MLS == nil || s.MLS.Groups[name] == nil {
		return nil, nil, fmt.Errorf("%w: %q", ErrNoGroup, name)
	}
	lg := s.MLS.Groups[name]
	if lg.Removed {
		return lg, nil, fmt.Errorf("%w: %q", ErrRemovedFromGroup, name)
	}
	g, err := s.openGroup(lg.State)
	if err != nil {
		return nil, nil, fmt.Errorf("client: group %q state: %w", name, err)
	}
	return lg, g, nil
}

func (lg *myGroup) save(g *mls.Group) error {
	st, err := g.MarshalState()
	if err != nil {
		return fmt.Errorf("client: save group state: %w", err)
	}
	// The old bytes are not cleared: a Group restored from them may still share them.
	lg.State = st
	return nil
}

// groupByID finds a group by its MLS group id.
func (s *state) groupByID(gid []byte) (string, *myGroup) {
	if s.MLS == nil {
		return "", nil
	}
	for name, g := range s.MLS.Groups {
		if bytes.Equal(g.ID, gid) {
			return name, g
		}
	}
	return "", nil
}

// CreateGroup creates group name with every device of the named accounts and this
// account's other devices: one commit adds them all, and their Welcome goes through the
// server. It tells the members the group's name in the group's first message.
func (c *Client) CreateGroup(ctx context.Context, name string, usernames ...string) error {
	if err := checkGroupName(name); err != nil {
		return err
	}
	err := c.cycle(func(s *state) error {
		dev, mid, err := s.mlsState()
		if err != nil {
			return err
		}
		if dev.Groups[name] != nil {
			return fmt.Errorf("%w: %q", ErrGroupExists, name)
		}
		gid := make([]byte, 16)
		rand.Read(gid)
		g, err := mls.NewGroup(mid, gid, s.credentialValidator())
		if err != nil {
			return fmt.Errorf("client: new group: %w", err)
		}
		// Handshakes go encrypted: the server sees only their group, epoch and type.
		g.PrivateHandshake = true
		// The GroupInfo carries the tree: the service reads from it which leaf a removed
		// device has, to propose its removal.
		gi, err := g.GroupInfo(true)
		if err != nil {
			return err
		}
		actx, err := c.bearer(ctx, s)
		if err != nil {
			return err
		}
		resp, err := c.msg.CreateGroup(actx, &messagingv1.CreateGroupRequest{GroupId: gid,
			Members: []*commonv1.DeviceAddress{{UserId: s.UserID, DeviceId: s.DeviceID}}, GroupInfo: gi})
		if err != nil {
			return fmt.Errorf("client: create group: %w", err)
		}
		dev.pinExternalSender(resp.GetExternalSender())
		lg := &myGroup{ID: gid, Named: true}
		dev.Groups[name] = lg
		return lg.save(g)
	})
	if err != nil {
		return err
	}
	return c.GroupAdd(ctx, name, append(slices.Clone(usernames), "")...)
}

// GroupAdd adds every device of the named accounts to the group. An empty username
// stands for this account's other devices (not yet members).
func (c *Client) GroupAdd(ctx context.Context, name string, usernames ...string) error {
	return c.commitGroup(ctx, name, func(s *state, g *mls.Group) (*commitPlan, error) {
		var names []string
		for _, u := range usernames {
			if u == "" {
				u = s.Username
			}
			names = append(names, u)
		}
		claims, err := c.claimKeyPackages(ctx, s, names)
		if err != nil {
			return nil, err
		}
		members := leafDevices(g)
		p := &commitPlan{}
		for _, cl := range claims {
			if _, in := members[deviceAddr{cl.addr.GetUserId(), cl.addr.GetDeviceId()}]; in {
				continue
			}
			p.opts.Add = append(p.opts.Add, cl.keyPackage)
			p.opts.InlineTree = true // joiners need the tree; the server keeps none
			p.added = append(p.added, cl.addr)
		}
		return p, nil
	}, true)
}

// GroupRemove removes every device of the named accounts from the group.
func (c *Client) GroupRemove(ctx context.Context, name string, usernames ...string) error {
	return c.commitGroup(ctx, name, func(s *state, g *mls.Group) (*commitPlan, error) {
		p := &commitPlan{}
		for _, u := range usernames {
			u = strings.ToLower(u)
			ct := s.Contacts[u]
			if ct == nil {
				return nil, fmt.Errorf("%w: %s", ErrUnknownContact, u)
			}
			found := false
			for d, leaf := range leafDevices(g) {
				if d.user == ct.UserID && !(d.user == s.UserID && d.device == s.DeviceID) {
					p.opts.Remove = append(p.opts.Remove, leaf)
					p.removed = append(p.removed, &commonv1.DeviceAddress{UserId: d.user, DeviceId: d.device})
					found = true
				}
			}
			if !found {
				return nil, fmt.Errorf("client: %s is not a member of %q", u, name)
			}
		}
		slices.Sort(p.opts.Remove)
		return p, nil
	}, false)
}

// GroupUpdate refreshes this device's leaf and path keys (post-compromise security).
func (c *Client) GroupUpdate(ctx context.Context, name string) error {
	return c.commitGroup(ctx, name, func(*state, *mls.Group) (*commitPlan, error) {
		return &commitPlan{opts: mls.CommitOptions{UpdatePath: true}}, nil
	}, false)
}

// commitPlan is one commit: what MLS does and what the server is told.
type commitPlan struct {
	opts           mls.CommitOptions
	added, removed []*commonv1.DeviceAddress
}

type deviceAddr struct {
	user   string
	device uint32
}

// leafDevices maps each member device of g to its leaf index.
func leafDevices(g *mls.Group) map[deviceAddr]uint32 {
	out := make(map[deviceAddr]uint32)
	for leaf, identity := range g.Members() {
		if cr, err := parseCredential(identity); err == nil {
			out[deviceAddr{cr.UserID, cr.DeviceID}] = leaf
		}
	}
	return out
}

// commitGroup builds a commit with plan on the group's current state and submits it. When
// another member's commit won the epoch, it applies what it missed (fetching its own
// deliveries, or waiting for this profile's listener to) and builds the commit again on
// the new state, up to maxCommitAttempts times. With announce, it then sends the group's
// name so that added devices learn it.
func (c *Client) commitGroup(ctx context.Context, name string, plan func(*state, *mls.Group) (*commitPlan, error), announce bool) error {
	for attempt := 1; ; attempt++ {
		var conflict uint64
		var empty bool
		err := c.cycle(func(s *state) error {
			lg, g, err := s.loadGroup(name)
			if err != nil {
				return err
			}
			p, err := plan(s, g)
			if err != nil {
				return err
			}
			if announce && len(p.added) == 0 && len(p.opts.Add) == 0 {
				empty = true
				return nil
			}
			epoch := g.Epoch()
			if err := s.addExternalSender(g, &p.opts); err != nil {
				return err
			}
			before := leafDevices(g)
			res, err := g.Commit(p.opts)
			if err != nil {
				return fmt.Errorf("client: commit to %q: %w", name, err)
			}
			// Merged before the server accepts it: if it refuses, this cycle saves nothing
			// and the state stays at the old epoch.
			if err := g.MergePendingCommit(); err != nil {
				return err
			}
			// Proposals the commit included by reference (the service's Removes of
			// deleted devices) removed devices too: tell the server.
			after := leafDevices(g)
			for d := range before {
				addr := &commonv1.DeviceAddress{UserId: d.user, DeviceId: d.device}
				if _, in := after[d]; !in && !slices.ContainsFunc(p.removed, func(a *commonv1.DeviceAddress) bool {
					return a.GetUserId() == d.user && a.GetDeviceId() == d.device
				}) {
					p.removed = append(p.removed, addr)
				}
			}
			gi, err := g.GroupInfo(true)
			if err != nil {
				return err
			}
			actx, err := c.bearer(ctx, s)
			if err != nil {
				return err
			}
			req := &messagingv1.SubmitCommitRequest{GroupId: lg.ID, Epoch: epoch, Commit: res.Commit, GroupInfo: gi, Added: p.added, Removed: p.removed}
			if len(p.added) > 0 {
				req.Welcome, req.WelcomeRecipients = res.Welcome, p.added
			}
			if _, err := c.msg.SubmitCommit(actx, req); err != nil {
				if cur, ok := epochConflict(err); ok {
					conflict = cur
				}
				return fmt.Errorf("client: submit commit to %q: %w", name, err)
			}
			return lg.save(g)
		})
		if conflict > 0 && attempt < maxCommitAttempts {
			if err := c.catchUp(ctx, name, conflict); err != nil {
				return err
			}
			continue
		}
		if err != nil || empty && !announce {
			return err
		}
		if announce {
			return c.sendGroup(ctx, name, groupText{Kind: "name", Body: name, Sent: c.now()})
		}
		return nil
	}
}

// addExternalSender makes the first commit of a group this device created list the
// pinned delivery service in the group's external_senders extension. Only the first: a
// later one could reach a member that pinned no key yet (it joined before servers
// published one), which would refuse the commit and fall out of the group.
func (s *state) addExternalSender(g *mls.Group, opts *mls.CommitOptions) error {
	if s.MLS.ExternalSender == nil || g.CipherSuite() != groupSuite || g.Epoch() != 0 {
		return nil
	}
	listed, err := g.ExternalSenders()
	if err != nil || len(listed) > 0 {
		return err
	}
	es, err := mls.ParseExternalSender(s.MLS.ExternalSender)
	if err != nil {
		return err
	}
	exts := append(g.Extensions(), mls.ExternalSendersExtension([]mls.ExternalSender{es}))
	opts.GroupContextExtensions = exts
	return nil
}

// epochConflict reports the group's current epoch from an EPOCH_CONFLICT or
// EPOCH_MISMATCH error.
func epochConflict(err error) (uint64, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Aborted && st.Code() != codes.FailedPrecondition {
		return 0, false
	}
	for _, d := range st.Details() {
		if ec, ok := d.(*messagingv1.EpochConflict); ok {
			return ec.GetCurrentEpoch(), true
		}
	}
	return 0, false
}

// catchUp applies the group's deliveries until it reaches epoch: it fetches them itself,
// or, when this profile's listener runs in another process, waits for it to.
func (c *Client) catchUp(ctx context.Context, name string, epoch uint64) error {
	err := c.Listen(ctx, true, func(Event) {})
	if err != nil && !errors.Is(err, ErrAlreadyListening) {
		return err
	}
	deadline := time.Now().Add(catchUpWait)
	for {
		s, err := c.view()
		if err != nil {
			return err
		}
		_, g, err := s.loadGroup(name)
		if err != nil {
			return err
		}
		if g.Epoch() >= epoch {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("client: group %q is at epoch %d; the server is at %d", name, g.Epoch(), epoch)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// SendGroup sends a text message to every other device of the group.
func (c *Client) SendGroup(ctx context.Context, name, text string) (content.ID, error) {
	if err := CheckText(text); err != nil {
		return content.ID{}, err
	}
	id := content.NewID()
	return id, c.sendGroup(ctx, name, groupText{Kind: "text", ID: id.String(), Body: text, Sent: c.now()})
}

// sendGroup encrypts m for the group's current epoch and sends it; when this device is
// behind, it catches up and sends again.
func (c *Client) sendGroup(ctx context.Context, name string, m groupText) error {
	plain, err := json.Marshal(m)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		var behind uint64
		err := c.cycle(func(s *state) error {
			lg, g, err := s.loadGroup(name)
			if err != nil {
				return err
			}
			ct, err := g.ProtectApplication(plain, nil)
			if err != nil {
				return fmt.Errorf("client: encrypt for %q: %w", name, err)
			}
			actx, err := c.bearer(ctx, s)
			if err != nil {
				return err
			}
			cid := make([]byte, 16)
			rand.Read(cid)
			if _, err := c.msg.SendGroupMessage(actx, &messagingv1.SendGroupMessageRequest{GroupId: lg.ID, Epoch: g.Epoch(), PrivateMessage: ct, ClientMessageId: cid}); err != nil {
				if cur, ok := epochConflict(err); ok && cur > g.Epoch() {
					behind = cur
				}
				if status.Code(err) == codes.PermissionDenied {
					return fmt.Errorf("%w: %q", ErrRemovedFromGroup, name)
				}
				return fmt.Errorf("client: send to %q: %w", name, err)
			}
			switch m.Kind {
			case "text":
				s.appendLog(LogEntry{ID: m.ID, Peer: "#" + name, Outgoing: true, Device: s.DeviceID, Kind: content.KindText, Body: m.Body, Sent: m.Sent})
			case "file":
				s.appendLog(LogEntry{ID: m.ID, Peer: "#" + name, Outgoing: true, Device: s.DeviceID, Kind: content.KindFile, Sent: m.Sent, File: m.File.For(s.UserID)})
			}
			// The sender ratchet advanced: save it.
			return lg.save(g)
		})
		if behind > 0 && attempt < maxCommitAttempts {
			if err := c.catchUp(ctx, name, behind); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

// GroupMember is one member device of a group as this device sees it.
type GroupMember struct {
	Username    string
	UserID      string
	DeviceID    uint32
	Fingerprint string
	// Status compares the leaf's identity key with what this device pinned: "this device",
	// "verified" (pinned and trusted), "unverified" (a device learned of since the last
	// Trust, or not yet looked up) or "CHANGED" (not the pinned key: do not trust).
	Status string
}

// Groups lists the names of this device's groups.
func (c *Client) Groups() ([]string, error) {
	s, err := c.view()
	if err != nil {
		return nil, err
	}
	var out []string
	if s.MLS != nil {
		for name := range s.MLS.Groups {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// IsGroup reports whether name is a group on this device.
func (c *Client) IsGroup(name string) bool {
	s, err := c.view()
	return err == nil && s.MLS != nil && s.MLS.Groups[name] != nil
}

// GroupMembers lists the group's member devices with their safety-number status.
func (c *Client) GroupMembers(ctx context.Context, name string) ([]GroupMember, error) {
	var out []GroupMember
	err := c.cycle(func(s *state) error {
		lg, g, err := s.loadGroup(name)
		if err != nil {
			return err
		}
		for _, leaf := range slices.Sorted(mapsKeys(g.Members())) {
			cr, err := parseCredential(g.Members()[leaf])
			if err != nil {
				return err
			}
			m := GroupMember{UserID: cr.UserID, DeviceID: cr.DeviceID, Fingerprint: Fingerprint(cr.IdentityKey)}
			m.Username = c.userName(ctx, s, lg, cr.UserID)
			m.Status = s.leafStatus(cr)
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

func mapsKeys(m map[uint32][]byte) func(func(uint32) bool) {
	return func(yield func(uint32) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// leafStatus is the safety-number status of a member leaf.
func (s *state) leafStatus(cr *mlsCredential) string {
	if cr.UserID == s.UserID && cr.DeviceID == s.DeviceID {
		return "this device"
	}
	_, ct := s.contactByUserID(cr.UserID)
	if ct == nil || ct.Devices[cr.DeviceID] == nil || ct.Devices[cr.DeviceID].IdentityKey == nil {
		return "unverified"
	}
	d := ct.Devices[cr.DeviceID]
	switch {
	case !bytes.Equal(d.IdentityKey, cr.IdentityKey):
		return "CHANGED"
	case d.Unverified:
		return "unverified"
	}
	return "verified"
}

// userName returns the username of an account, from the contacts, the group's cache or
// the server (pinning nothing).
func (c *Client) userName(ctx context.Context, s *state, lg *myGroup, userID string) string {
	if name, _ := s.contactByUserID(userID); name != "" {
		return name
	}
	if n := lg.Names[userID]; n != "" {
		return n
	}
	name, _, err := c.lookup(ctx, s, &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_UserId{UserId: userID}})
	if err != nil {
		return "account " + userID
	}
	if lg.Names == nil {
		lg.Names = make(map[string]string)
	}
	lg.Names[userID] = name
	return name
}

// processGroup handles one group delivery inside a Listen cycle.
func (c *Client) processGroup(ctx context.Context, s *state, d *messagingv1.Delivery, b *batch) error {
	received := d.GetServerTime().AsTime()
	if d.GetKind() == messagingv1.DeliveryKind_DELIVERY_KIND_WELCOME {
		return c.joinFromWelcome(ctx, s, d, b)
	}
	name, lg := s.groupByID(d.GetGroupId())
	if lg == nil {
		b.events = append(b.events, Event{Kind: EventUndecryptable, Received: received,
			Err: fmt.Errorf("a %s for a group this device is not in dropped", d.GetKind())})
		return nil
	}
	if lg.Removed {
		return nil // sent before this device's removal was known to the sender: unreadable
	}
	g, err := s.openGroup(lg.State)
	if err != nil {
		return fmt.Errorf("client: group %q state: %w", name, err)
	}
	if d.GetEpoch() < g.Epoch() && d.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_MESSAGE {
		return nil // a handshake of an epoch this device already left (its own commit won)
	}
	r, err := g.Process(d.GetPayload())
	if err != nil {
		b.events = append(b.events, Event{Kind: EventUndecryptable, Group: name, Received: received, Err: fmt.Errorf("group %q: %w", name, err)})
		return nil
	}
	if err := lg.save(g); err != nil {
		return err
	}
	members := g.Members()
	sender := ""
	senderDevice := uint32(0)
	if cr, err := parseCredential(members[r.Sender]); err == nil {
		sender, senderDevice = c.userName(ctx, s, lg, cr.UserID), cr.DeviceID
	}
	switch {
	case r.Removed:
		lg.Removed = true
		lg.State = nil
		b.events = append(b.events, Event{Kind: EventGroupRemoved, Group: name, Peer: name, From: sender, FromDevice: senderDevice, Received: received})
	case r.NewEpoch:
		b.events = append(b.events, Event{Kind: EventGroupChanged, Group: name, Peer: name, From: sender, FromDevice: senderDevice, Received: received, Body: fmt.Sprintf("epoch %d, %d devices", g.Epoch(), len(members))})
	case r.Application != nil:
		m, err := parseGroupText(r.Application)
		if err != nil {
			b.events = append(b.events, Event{Kind: EventUndecryptable, Group: name, Received: received, Err: err})
			return nil
		}
		if m.Kind == "name" {
			// Only a device that joined under a provisional name takes it, and only if
			// no other group of this device has it.
			if lg.Named {
				return nil
			}
			if s.MLS.Groups[m.Body] == nil {
				delete(s.MLS.Groups, name)
				s.MLS.Groups[m.Body] = lg
				name = m.Body
			}
			lg.Named = true
			b.events = append(b.events, Event{Kind: EventGroupJoined, Group: name, Peer: name, From: sender, FromDevice: senderDevice, Received: received})
			return nil
		}
		id, _ := content.ParseID(m.ID)
		outgoing := sender == s.Username
		if m.Kind == "file" {
			// This account's capability; the sender's own devices read as the owner.
			f := m.File.For(s.UserID)
			s.appendLog(LogEntry{ID: m.ID, Peer: "#" + name, From: sender, Outgoing: outgoing, Device: senderDevice, Kind: content.KindFile, Sent: m.Sent, File: f})
			b.events = append(b.events, Event{Kind: EventFile, Group: name, Peer: name, From: sender, FromDevice: senderDevice, Outgoing: outgoing, ID: id, File: f, Sent: m.Sent, Received: received})
			return nil
		}
		s.appendLog(LogEntry{ID: m.ID, Peer: "#" + name, From: sender, Outgoing: outgoing, Device: senderDevice, Kind: content.KindText, Body: m.Body, Sent: m.Sent})
		b.events = append(b.events, Event{Kind: EventMessage, Group: name, Peer: name, From: sender, FromDevice: senderDevice, Outgoing: outgoing, ID: id, Body: m.Body, Sent: m.Sent, Received: received})
	}
	return nil
}

// joinFromWelcome fetches the Welcome that added this device and joins with the key
// package it names. Until a member tells the group's name, the group is named after its
// id.
func (c *Client) joinFromWelcome(ctx context.Context, s *state, d *messagingv1.Delivery, b *batch) error {
	if _, lg := s.groupByID(d.GetGroupId()); lg != nil && !lg.Removed {
		return nil // joined already
	}
	actx, err := c.bearer(ctx, s)
	if err != nil {
		return err
	}
	w, err := c.msg.FetchWelcome(actx, &messagingv1.FetchWelcomeRequest{GroupId: d.GetGroupId()})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return nil
		}
		return fmt.Errorf("client: fetch Welcome: %w", err)
	}
	dev, _, err := s.mlsState()
	if err != nil {
		return err
	}
	dev.pinExternalSender(w.GetExternalSender())
	var g *mls.Group
	joinErr := errors.New("no key package stored")
	for i, skp := range dev.KeyPackages {
		kp, err := mls.RestoreKeyPackage(skp.Message, skp.InitPriv, skp.EncPriv, dev.SigPriv)
		if err != nil {
			joinErr = err
			continue
		}
		if g, joinErr = mls.Join(kp, w.GetWelcome(), s.credentialValidator(), &mls.JoinOptions{TrustedExternalSenders: dev.trustedExternalSenders()}); joinErr == nil {
			g.PrivateHandshake = true
			dev.KeyPackages = slices.Delete(dev.KeyPackages, i, i+1)
			b.consumedKeyPackage = true
			break
		}
	}
	if g == nil {
		b.events = append(b.events, Event{Kind: EventUndecryptable, Received: d.GetServerTime().AsTime(), Err: fmt.Errorf("a Welcome this device cannot join with any of its key packages: %w", joinErr)})
		return nil
	}
	name := "group-" + hex.EncodeToString(d.GetGroupId())[:8]
	// A re-added device keeps the group's local name.
	for n, old := range dev.Groups {
		if bytes.Equal(old.ID, d.GetGroupId()) {
			name = n
			delete(dev.Groups, n)
		}
	}
	lg := &myGroup{ID: d.GetGroupId(), Named: !strings.HasPrefix(name, "group-")}
	dev.Groups[name] = lg
	if lg.Named {
		b.events = append(b.events, Event{Kind: EventGroupJoined, Group: name, Peer: name, Received: d.GetServerTime().AsTime()})
	}
	return lg.save(g)
}
