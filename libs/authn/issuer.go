package authn

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// Issuer signs access tokens. Only the auth service holds one.
type Issuer struct {
	_   [0]func() // holds a private key: no == comparisons
	key ed25519.PrivateKey
	kid KeyID
	ttl time.Duration
	now func() time.Time
}

// NewIssuer returns an Issuer that signs with key tokens valid for ttl
// (whole seconds, at most MaxLifetime), reading the time from now.
func NewIssuer(key ed25519.PrivateKey, ttl time.Duration, now func() time.Time) (*Issuer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("issuer key: %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if ttl < time.Second || ttl > MaxLifetime {
		return nil, fmt.Errorf("token lifetime %v: want 1s..%v", ttl, MaxLifetime)
	}
	if now == nil {
		return nil, errors.New("issuer clock is nil")
	}
	return &Issuer{
		key: key,
		kid: KeyIDOf(key.Public().(ed25519.PublicKey)),
		ttl: ttl.Truncate(time.Second),
		now: now,
	}, nil
}

// PublicKey is the key verifiers need.
func (i *Issuer) PublicKey() ed25519.PublicKey { return i.key.Public().(ed25519.PublicKey) }

// Issue returns a new signed token for the device and the claims it carries.
// familyID ties the token to the login session it was issued under.
func (i *Issuer) Issue(userID string, deviceID uint32, familyID [16]byte) (string, Claims, error) {
	now := time.Unix(i.now().Unix(), 0).UTC()
	c := Claims{
		UserID:    userID,
		DeviceID:  deviceID,
		FamilyID:  familyID,
		IssuedAt:  now,
		ExpiresAt: now.Add(i.ttl),
	}
	rand.Read(c.TokenID[:])
	body, err := encode(i.kid, c)
	if err != nil {
		return "", Claims{}, fmt.Errorf("issue token: %w", err)
	}
	var msg [len(signingContext) + maxRaw]byte
	sig := ed25519.Sign(i.key, signedMessage(&msg, body))
	return encoding.EncodeToString(append(body, sig...)), c, nil
}
