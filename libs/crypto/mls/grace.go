package mls

import (
	"slices"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/framing"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/secrettree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// DefaultPreviousEpochRetention is how long a group keeps the previous
// epoch's decryption state after a commit unless SetPreviousEpochRetention
// says otherwise: long enough for application messages sent concurrently
// with the commit, short enough that a compromise of the device soon after
// exposes few old messages.
const DefaultPreviousEpochRetention = time.Minute

// previousEpoch is what decrypting and authenticating an application
// message of the epoch before the current one takes. RFC 9420 lets members
// keep unconsumed secrets "for some reasonable amount of time to handle
// out-of-order message delivery" (Section 9.2) and asks applications to
// define how long (Section 15.3). Nothing else of that epoch is kept: its
// handshake messages are refused.
type previousEpoch struct {
	epoch            uint64
	groupContext     []byte
	tree             *tree.Tree
	secrets          *secrettree.Tree
	senderDataSecret []byte
	expires          time.Time
}

// clone returns a copy whose secrets are independent of p's.
func (p *previousEpoch) clone() *previousEpoch {
	c := *p
	c.secrets = p.secrets.Clone()
	c.senderDataSecret = slices.Clone(p.senderDataSecret)
	return &c
}

// erase zeroes the epoch's secrets.
func (p *previousEpoch) erase() {
	p.secrets.Erase()
	clear(p.senderDataSecret)
}

// SetPreviousEpochRetention sets how long, after each commit, application
// messages of the epoch just left are still decrypted (Delivery Services
// may deliver messages sent concurrently with a commit after it). Zero
// disables the window: the previous epoch's secrets are erased at once.
// Expiry is checked against the group's clock (SetClock) when messages are
// processed and at the next commit, which also ends the window. The window
// is not part of the stored state.
func (g *Group) SetPreviousEpochRetention(d time.Duration) {
	if d <= 0 {
		g.retention = noRetention
		g.dropPrevious()
		return
	}
	g.retention = d
}

// noRetention is the internal value of a disabled window; the zero value
// means DefaultPreviousEpochRetention.
const noRetention = time.Duration(-1)

func (g *Group) retentionWindow() time.Duration {
	if g.retention == 0 {
		return DefaultPreviousEpochRetention
	}
	return max(g.retention, 0)
}

func (g *Group) clock() time.Time {
	if g.now == nil {
		return time.Now()
	}
	return g.now()
}

// dropPrevious erases the previous epoch's state.
func (g *Group) dropPrevious() {
	if g.previous != nil {
		g.previous.erase()
		g.previous = nil
	}
}

// retire erases the current epoch's secrets as the group leaves it,
// keeping the decryption state of application messages when the retention
// window is open.
func (g *Group) retire() *previousEpoch {
	var p *previousEpoch
	if window := g.retentionWindow(); window > 0 {
		p = &previousEpoch{
			epoch: g.gc.Epoch, groupContext: g.gcBytes, tree: g.tree, secrets: g.secrets,
			senderDataSecret: slices.Clone(g.epoch.SenderDataSecret), expires: g.clock().Add(window),
		}
	} else {
		g.secrets.Erase()
	}
	g.epoch.Erase()
	return p
}

// openPrevious decrypts and authenticates an application message of the
// previous epoch; ok is false when the message is not one this window
// covers.
func (g *Group) openPrevious(pm *wire.PrivateMessage) (ac *wire.AuthenticatedContent, ok bool, err error) {
	p := g.previous
	if p != nil && !g.clock().Before(p.expires) {
		g.dropPrevious()
		return nil, false, nil
	}
	if p == nil || pm.Epoch != p.epoch || pm.ContentType != wire.ContentApplication || string(pm.GroupID) != string(g.gc.GroupID) {
		return nil, false, nil
	}
	ac, err = framing.UnprotectPrivate(g.s, pm, p.secrets, p.senderDataSecret, func(ac *wire.AuthenticatedContent) error {
		leaf := p.tree.Leaf(treemath.LeafIndex(ac.Content.Sender.Index))
		if leaf == nil {
			return ErrUnknownSender
		}
		return framing.VerifySignature(g.s, ac, leaf.SignatureKey, p.groupContext)
	})
	if err != nil {
		return nil, true, err
	}
	return ac, true, nil
}
