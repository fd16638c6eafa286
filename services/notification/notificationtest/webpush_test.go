package notificationtest

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestVerifiedVAPIDStillExpires: the push service verifies an Authorization header's JWT
// once and then trusts that exact header, but only until the JWT's exp; a header that
// differs in any byte (another signature, another key) is verified afresh.
func TestVerifiedVAPIDStillExpires(t *testing.T) {
	vapid, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := NewWebPushServer(t, vapid.PublicKey().Bytes())
	start := time.Now()
	clock := start
	s.now = func() time.Time { return clock }
	header := func(key *ecdh.PrivateKey, exp time.Time) string {
		signer, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), key.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"aud": s.URL, "exp": exp.Unix(), "sub": "mailto:ops@guardyn.test"}).SignedString(signer)
		if err != nil {
			t.Fatal(err)
		}
		return "vapid t=" + tok + ", k=" + base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes())
	}
	good := header(vapid, start.Add(time.Hour))
	if err := s.checkVAPID(good); err != nil {
		t.Fatalf("first use: %v", err)
	}
	clock = start.Add(59 * time.Minute)
	if err := s.checkVAPID(good); err != nil {
		t.Fatalf("before exp: %v", err)
	}
	// A forged signature on the same claims and key is not the verified header.
	tok, k, _ := strings.Cut(strings.TrimPrefix(good, "vapid t="), ", k=")
	forged := "vapid t=" + tok[:strings.LastIndexByte(tok, '.')+1] + base64.RawURLEncoding.EncodeToString(make([]byte, 64)) + ", k=" + k
	if err := s.checkVAPID(forged); err == nil {
		t.Fatal("a forged signature passed")
	}
	other, _ := ecdh.P256().GenerateKey(rand.Reader)
	if err := s.checkVAPID(header(other, start.Add(time.Hour))); err == nil {
		t.Fatal("a JWT of another application server key passed")
	}
	clock = start.Add(61 * time.Minute)
	if err := s.checkVAPID(good); err == nil {
		t.Fatal("a verified header passed after its JWT expired")
	}
}
