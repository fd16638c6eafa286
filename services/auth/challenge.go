package auth

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// Login challenges are stateless so that neither asking for one nor failing a login
// costs the single kv writer anything: a nonce carries its own expiry and a MAC under a
// server key over the username and device it was issued for. Login checks the MAC and
// the expiry before any kv access, and only a successful login writes, recording the
// nonce as used until it expires, which keeps a challenge good for one successful login.
//
// Layout (challengeSize bytes): random (12) || expiry, Unix seconds, big endian (4) ||
// HMAC-SHA256 tag truncated to 16 bytes. Twelve random bytes keep nonces of the same
// second apart; a 128-bit tag cannot be guessed online; Unix seconds in 32 bits last
// until 2106.
const (
	challengeSize      = 32
	challengeRandSize  = 12
	challengeTagOffset = challengeRandSize + 4
)

// challengeMACKeyLabel separates the challenge MAC key from every other use of the
// token signing key's seed.
const challengeMACKeyLabel = "guardyn auth login challenge MAC key v1"

// challenges issues and checks stateless login nonces.
type challenges struct {
	key []byte
}

// newChallenges derives the MAC key from the token signing key, so that every replica
// holding that key accepts the others' challenges and a restart does not void the
// challenges in flight, without another secret to configure.
func newChallenges(tokenKey ed25519.PrivateKey) *challenges {
	m := hmac.New(sha256.New, tokenKey.Seed())
	m.Write([]byte(challengeMACKeyLabel))
	return &challenges{key: m.Sum(nil)}
}

func (c *challenges) tag(body []byte, username string, deviceID uint32) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write(body)
	var n [8]byte
	binary.BigEndian.PutUint32(n[:4], uint32(len(username)))
	binary.BigEndian.PutUint32(n[4:], deviceID)
	m.Write(n[:])
	m.Write([]byte(username))
	return m.Sum(nil)[:challengeSize-challengeTagOffset]
}

// issue returns a nonce for username's device that expires at expires (rounded up to
// the second) and that expiry.
func (c *challenges) issue(username string, deviceID uint32, expires time.Time) ([]byte, time.Time) {
	secs := expires.Unix()
	if expires.After(time.Unix(secs, 0)) {
		secs++
	}
	nonce := make([]byte, challengeTagOffset, challengeSize)
	rand.Read(nonce[:challengeRandSize])
	binary.BigEndian.PutUint32(nonce[challengeRandSize:], uint32(secs))
	return append(nonce, c.tag(nonce, username, deviceID)...), time.Unix(secs, 0)
}

// check reports whether nonce was issued by c for username's device, and when it
// expires. A false answer needs no kv access to reach.
func (c *challenges) check(nonce []byte, username string, deviceID uint32) (time.Time, bool) {
	if len(nonce) != challengeSize {
		return time.Time{}, false
	}
	body := nonce[:challengeTagOffset]
	if !hmac.Equal(nonce[challengeTagOffset:], c.tag(body, username, deviceID)) {
		return time.Time{}, false
	}
	return time.Unix(int64(binary.BigEndian.Uint32(body[challengeRandSize:])), 0), true
}
