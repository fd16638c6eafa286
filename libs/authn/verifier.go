package authn

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Revocations tells a Verifier which devices were removed since their
// tokens were issued. The auth service implements it from its store, and
// libs/directory for every other process. Implementations must be fast (it
// runs on every call) and safe for concurrent use. One that cannot answer
// returns an error: the call is refused as unavailable (ErrRevocationUnknown),
// failing closed without telling a device it was removed when it was not.
type Revocations interface {
	IsDeviceRevoked(ctx context.Context, userID string, deviceID uint32) (bool, error)
}

// NoRevocations revokes nothing; for tools and tests without an auth service.
type NoRevocations struct{}

// IsDeviceRevoked always reports false.
func (NoRevocations) IsDeviceRevoked(context.Context, string, uint32) (bool, error) {
	return false, nil
}

// Defaults for VerifierConfig.
const (
	DefaultMaxClockSkew = time.Minute
	DefaultCacheSize    = 1 << 16
)

// VerifierConfig holds a Verifier's dependencies.
type VerifierConfig struct {
	// Keys are the auth service public keys currently trusted; more than
	// one during a key rotation.
	Keys        []ed25519.PublicKey
	Now         func() time.Time
	Revocations Revocations
	// MaxClockSkew is how far in the future an issue time may be; zero
	// means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// CacheSize bounds how many verified tokens are remembered so that a
	// token's signature is checked once, not on every call; zero means
	// DefaultCacheSize, negative disables the cache.
	CacheSize int
}

// Verifier checks access tokens locally. It is safe for concurrent use.
type Verifier struct {
	keys    map[KeyID]ed25519.PublicKey
	now     func() time.Time
	revoked Revocations
	skew    time.Duration

	cacheSize int
	mu        sync.RWMutex
	cache     map[string]cacheEntry // token → its verified principal
}

type cacheEntry struct {
	principal *Principal
	expires   time.Time
}

// NewVerifier checks cfg and returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if len(cfg.Keys) == 0 {
		return nil, errors.New("verifier: no public keys")
	}
	if cfg.Now == nil || cfg.Revocations == nil {
		return nil, errors.New("verifier: Now and Revocations are required")
	}
	v := &Verifier{
		keys:      make(map[KeyID]ed25519.PublicKey, len(cfg.Keys)),
		now:       cfg.Now,
		revoked:   cfg.Revocations,
		skew:      cfg.MaxClockSkew,
		cacheSize: cfg.CacheSize,
	}
	for i, k := range cfg.Keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("verifier key %d: %d bytes, want %d", i, len(k), ed25519.PublicKeySize)
		}
		v.keys[KeyIDOf(k)] = k
	}
	if v.skew == 0 {
		v.skew = DefaultMaxClockSkew
	}
	if v.cacheSize == 0 {
		v.cacheSize = DefaultCacheSize
	}
	if v.cacheSize > 0 {
		v.cache = make(map[string]cacheEntry)
	}
	return v, nil
}

// Verify checks token's encoding, signature, validity period and device and
// returns its claims. Errors wrap one of the package's Err values.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	var buf [maxRaw]byte
	raw, err := decode(token, &buf)
	if err != nil {
		return Claims{}, err
	}
	if err := v.checkSignature(raw); err != nil {
		return Claims{}, err
	}
	if err := v.checkTimes(raw.claims.IssuedAt, raw.claims.ExpiresAt); err != nil {
		return Claims{}, err
	}
	if err := v.checkRevoked(ctx, raw.claims.UserID, raw.claims.DeviceID); err != nil {
		return Claims{}, err
	}
	return raw.claims, nil
}

// principal is Verify for the interceptor: it returns a shared, immutable
// Principal and remembers verified tokens so repeat calls skip the
// signature check (tens of µs) for a map lookup.
func (v *Verifier) principal(ctx context.Context, token string) (*Principal, error) {
	if v.cache != nil {
		v.mu.RLock()
		e, hit := v.cache[token]
		v.mu.RUnlock()
		if hit {
			p := e.principal
			if !v.now().Before(e.expires) {
				return nil, ErrExpired
			}
			if err := v.checkRevoked(ctx, p.UserID, p.DeviceID); err != nil {
				return nil, err
			}
			return p, nil
		}
	}
	c, err := v.Verify(ctx, token)
	if err != nil {
		return nil, err
	}
	p := &Principal{UserID: c.UserID, DeviceID: c.DeviceID}
	if v.cache != nil {
		v.remember(token, p, c.ExpiresAt)
	}
	return p, nil
}

// checkRevoked returns ErrDeviceRevoked for a removed device and an error wrapping
// ErrRevocationUnknown when that cannot be told now.
func (v *Verifier) checkRevoked(ctx context.Context, userID string, deviceID uint32) error {
	revoked, err := v.revoked.IsDeviceRevoked(ctx, userID, deviceID)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", ErrRevocationUnknown, err)
	case revoked:
		return ErrDeviceRevoked
	}
	return nil
}

func (v *Verifier) remember(token string, p *Principal, exp time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.cacheSize {
		v.evictLocked()
	}
	v.cache[token] = cacheEntry{principal: p, expires: exp}
}

// evictLocked drops expired entries and, if that frees too little, an
// arbitrary half (map order is random), which only costs the dropped tokens
// one signature check each.
func (v *Verifier) evictLocked() {
	now := v.now()
	for tok, e := range v.cache {
		if !now.Before(e.expires) {
			delete(v.cache, tok)
		}
	}
	for tok := range v.cache {
		if len(v.cache) < v.cacheSize/2 {
			break
		}
		delete(v.cache, tok)
	}
}

func (v *Verifier) checkSignature(raw rawToken) error {
	key, ok := v.keys[raw.keyID]
	if !ok {
		return fmt.Errorf("%w %x", ErrUnknownKey, raw.keyID[:])
	}
	var msg [len(signingContext) + maxRaw]byte
	if !ed25519.Verify(key, signedMessage(&msg, raw.signed), raw.sig) {
		return ErrSignature
	}
	return nil
}

func (v *Verifier) checkTimes(iat, exp time.Time) error {
	now := v.now()
	if !now.Before(exp) {
		return fmt.Errorf("%w at %v", ErrExpired, exp.UTC())
	}
	if iat.After(now.Add(v.skew)) {
		return fmt.Errorf("%w: %v", ErrNotYetValid, iat.UTC())
	}
	return nil
}
