package media

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/guardyn/guardyn/libs/blobstore"
)

// A capability token lets its bearer (or only its audience) download one blob until it
// expires. It is MAC'd with a server key, so it cannot be forged or altered, and names a
// record in kv, so the owner can revoke it early. Layout (all lengths fixed or prefixed):
//
//	version(1)=1 | id(16) | blob digest(32) | expiry unix seconds(8) |
//	len(owner)(1) | owner | len(audience)(1) | audience | HMAC-SHA256(32)
//
// The MAC covers every byte before it.
const (
	capVersion   = 1
	capIDSize    = 16
	capMACSize   = sha256.Size
	maxNameBytes = 64
	// MaxCapabilitySize is the largest token: the API's limit is 1024 bytes.
	MaxCapabilitySize = 1 + capIDSize + 32 + 8 + 1 + maxNameBytes + 1 + maxNameBytes + capMACSize
	// CapabilityKeySize is the size of the MAC key.
	CapabilityKeySize = 32
)

// errCapability is the error of a token that is malformed or fails its MAC.
var errCapability = errors.New("media: invalid capability")

// capability is a parsed, authenticated token.
type capability struct {
	ID       [capIDSize]byte
	Blob     blobstore.Digest
	Expires  time.Time
	Owner    string
	Audience string
}

func (c *capability) marshal(key []byte) []byte {
	b := make([]byte, 0, MaxCapabilitySize)
	b = append(b, capVersion)
	b = append(b, c.ID[:]...)
	b = append(b, c.Blob[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Expires.Unix()))
	b = append(b, byte(len(c.Owner)))
	b = append(b, c.Owner...)
	b = append(b, byte(len(c.Audience)))
	b = append(b, c.Audience...)
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return m.Sum(b)
}

// parseCapability checks the MAC of token under key and decodes it. Lengths are checked
// before anything is read, the MAC in constant time before any field is trusted.
func parseCapability(token, key []byte) (*capability, error) {
	if len(token) < 1+capIDSize+32+8+1+1+capMACSize || len(token) > MaxCapabilitySize {
		return nil, fmt.Errorf("%w: %d bytes", errCapability, len(token))
	}
	if token[0] != capVersion {
		return nil, fmt.Errorf("%w: unknown version %d", errCapability, token[0])
	}
	body, mac := token[:len(token)-capMACSize], token[len(token)-capMACSize:]
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil), mac) {
		return nil, fmt.Errorf("%w: bad MAC", errCapability)
	}
	c := &capability{}
	rest := body[1:]
	copy(c.ID[:], rest)
	rest = rest[capIDSize:]
	copy(c.Blob[:], rest)
	rest = rest[32:]
	exp := binary.BigEndian.Uint64(rest)
	rest = rest[8:]
	if exp > 1<<40 {
		return nil, fmt.Errorf("%w: expiry out of range", errCapability)
	}
	c.Expires = time.Unix(int64(exp), 0)
	name := func() (string, bool) {
		if len(rest) < 1 || int(rest[0]) > len(rest)-1 || rest[0] > maxNameBytes {
			return "", false
		}
		n := int(rest[0])
		s := string(rest[1 : 1+n])
		rest = rest[1+n:]
		return s, true
	}
	var ok bool
	if c.Owner, ok = name(); !ok || c.Owner == "" {
		return nil, fmt.Errorf("%w: bad owner", errCapability)
	}
	if c.Audience, ok = name(); !ok || len(rest) != 0 {
		return nil, fmt.Errorf("%w: bad audience", errCapability)
	}
	return c, nil
}
