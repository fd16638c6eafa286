package presence

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
)

// Keys in the kv store, all under the service's namespace.
const (
	privacyPrefix  = "presence/privacy/"
	lastSeenPrefix = "presence/lastseen/"
)

// Bounds of a privacy setting, as the API documents them.
const (
	maxAllowed   = 5000
	maxUserIDLen = 64
)

// privacy is who may see an account's presence. The zero value (nothing stored) is
// PRESENCE_VISIBILITY_CONTACTS with an empty list: nobody, until the user says otherwise.
type privacy struct {
	visibility presencev1.PresenceVisibility
	allowed    map[string]struct{}
}

// allows reports whether the owner of p lets viewer see its presence.
func (p *privacy) allows(viewer string) bool {
	switch p.visibility {
	case presencev1.PresenceVisibility_PRESENCE_VISIBILITY_EVERYONE:
		return true
	case presencev1.PresenceVisibility_PRESENCE_VISIBILITY_NOBODY:
		return false
	}
	_, ok := p.allowed[viewer]
	return ok
}

func (p *privacy) list() []string {
	out := make([]string, 0, len(p.allowed))
	for id := range p.allowed {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

var errPrivacy = errors.New("malformed privacy record")

// encodePrivacy: version (1) = 1 || visibility (1) || count (2) || count × (len (1) || id).
func encodePrivacy(vis presencev1.PresenceVisibility, allowed []string) []byte {
	b := []byte{1, byte(vis), 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(len(allowed)))
	for _, id := range allowed {
		b = append(b, byte(len(id)))
		b = append(b, id...)
	}
	return b
}

func decodePrivacy(b []byte) (*privacy, error) {
	if len(b) < 4 || b[0] != 1 {
		return nil, fmt.Errorf("%w: header", errPrivacy)
	}
	vis := presencev1.PresenceVisibility(b[1])
	if vis < presencev1.PresenceVisibility_PRESENCE_VISIBILITY_EVERYONE || vis > presencev1.PresenceVisibility_PRESENCE_VISIBILITY_NOBODY {
		return nil, fmt.Errorf("%w: visibility %d", errPrivacy, b[1])
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n > maxAllowed {
		return nil, fmt.Errorf("%w: %d allowed accounts", errPrivacy, n)
	}
	p := &privacy{visibility: vis, allowed: make(map[string]struct{}, n)}
	rest := b[4:]
	for range n {
		if len(rest) < 1 || int(rest[0]) > len(rest)-1 || rest[0] == 0 || rest[0] > maxUserIDLen {
			return nil, fmt.Errorf("%w: truncated list", errPrivacy)
		}
		p.allowed[string(rest[1:1+rest[0]])] = struct{}{}
		rest = rest[1+rest[0]:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errPrivacy, len(rest))
	}
	return p, nil
}

// privacies caches privacy settings read from the kv store. Every instance drops a user's
// entry when any instance announces a change (subjectPrivacyChanged), and entries expire
// after privacyTTL in case an announcement was lost.
type privacies struct {
	store kv.Store
	now   func() time.Time

	mu      sync.RWMutex
	entries map[string]privacyEntry
}

type privacyEntry struct {
	p  *privacy
	at time.Time
}

const (
	privacyTTL        = time.Minute
	privacyCacheLimit = 1 << 16
)

func (c *privacies) get(ctx context.Context, userID string) (*privacy, error) {
	c.mu.RLock()
	e, ok := c.entries[userID]
	c.mu.RUnlock()
	if ok && c.now().Sub(e.at) < privacyTTL {
		return e.p, nil
	}
	var p *privacy
	err := c.store.View(ctx, func(tx kv.Tx) error {
		v, err := tx.Get([]byte(privacyPrefix + userID))
		if errors.Is(err, kv.ErrNotFound) {
			p = &privacy{visibility: presencev1.PresenceVisibility_PRESENCE_VISIBILITY_CONTACTS}
			return nil
		}
		if err != nil {
			return err
		}
		p, err = decodePrivacy(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read presence privacy: %w", err)
	}
	c.mu.Lock()
	if len(c.entries) >= privacyCacheLimit {
		// Drop the expired entries, and if that frees nothing, an arbitrary half.
		now := c.now()
		for k, e := range c.entries {
			if now.Sub(e.at) >= privacyTTL {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < privacyCacheLimit/2 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[userID] = privacyEntry{p: p, at: c.now()}
	c.mu.Unlock()
	return p, nil
}

func (c *privacies) forget(userID string) {
	c.mu.Lock()
	delete(c.entries, userID)
	c.mu.Unlock()
}

// visible reports whether viewer may see owner's presence: each must allow the other, as in
// Signal, so hiding one's own presence hides everyone else's too. An account always sees
// itself.
func (c *privacies) visible(ctx context.Context, viewer, owner string) (bool, error) {
	if viewer == owner {
		return true, nil
	}
	po, err := c.get(ctx, owner)
	if err != nil || !po.allows(viewer) {
		return false, err
	}
	pv, err := c.get(ctx, viewer)
	if err != nil {
		return false, err
	}
	return pv.allows(owner), nil
}
