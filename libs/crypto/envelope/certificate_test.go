package envelope

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestIssueParseVerify(t *testing.T) {
	f := newFixture(t)
	cert, err := ParseSenderCertificate(f.aliceCert)
	if err != nil {
		t.Fatal(err)
	}
	if cert.UserID() != "alice@example.org" || cert.DeviceID() != 7 || cert.IssuerKeyID() != KeyID(f.root) {
		t.Errorf("fields = %q, device %d, issuer %d", cert.UserID(), cert.DeviceID(), cert.IssuerKeyID())
	}
	if !cert.IdentityKey().Equal(f.alice.PublicKey()) {
		t.Error("identity key differs from the issued one")
	}
	if want := testNow.Add(24 * time.Hour); !cert.Expires().Equal(want) {
		t.Errorf("expires %s, want %s", cert.Expires(), want)
	}
	if err := cert.Verify(f.root, testNow); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if !bytes.Equal(cert.Bytes(), f.aliceCert) {
		t.Error("Bytes does not return the parsed encoding")
	}
	if len(f.aliceCert) != certificateFixedSize+len("alice@example.org")+ed25519.SignatureSize {
		t.Errorf("certificate has %d bytes", len(f.aliceCert))
	}
}

func TestVerifyUnparsedCertificate(t *testing.T) {
	f := newFixture(t)
	var zero SenderCertificate
	if err := zero.Verify(f.root, testNow); !errors.Is(err, ErrUnknownIssuer) {
		t.Errorf("zero certificate: err = %v, want ErrUnknownIssuer", err)
	}
	unparsed := SenderCertificate{issuerKeyID: KeyID(f.root), expires: testNow.Add(time.Hour)}
	if err := unparsed.Verify(f.root, testNow); !errors.Is(err, ErrMalformed) {
		t.Errorf("certificate without encoding: err = %v, want ErrMalformed", err)
	}
}

func TestKeyID(t *testing.T) {
	root := ed25519FromSeed("issuer").Public().(ed25519.PublicKey)
	sum := sha256.Sum256(root)
	if got, want := KeyID(root), uint32(sum[0])<<24|uint32(sum[1])<<16|uint32(sum[2])<<8|uint32(sum[3]); got != want {
		t.Errorf("KeyID = %08x, want %08x", got, want)
	}
}

func TestVerifyRejectsEveryFlippedByte(t *testing.T) {
	f := newFixture(t)
	for i := range f.aliceCert {
		b := bytes.Clone(f.aliceCert)
		b[i] ^= 0x01
		cert, err := ParseSenderCertificate(b)
		if err == nil {
			err = cert.Verify(f.root, testNow)
		}
		if err == nil {
			t.Fatalf("byte %d flipped: certificate accepted", i)
		}
	}
}

func TestParseSenderCertificateRejects(t *testing.T) {
	f := newFixture(t)
	good := f.aliceCert
	uidLenAt, keyAt := certUserIDLenAt, certIdentityKeyAt
	mutate := func(fn func(b []byte) []byte) []byte { return fn(bytes.Clone(good)) }
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"version 2", mutate(func(b []byte) []byte { b[0] = 2; return b }), ErrUnsupportedVersion},
		{"version 0", mutate(func(b []byte) []byte { b[0] = 0; return b }), ErrUnsupportedVersion},
		{"trailing byte", append(bytes.Clone(good), 0), ErrMalformed},
		{"over max size", make([]byte, MaxCertificateSize+1), ErrMalformed},
		{"user id length 0", mutate(func(b []byte) []byte { b[uidLenAt] = 0; return b }), ErrMalformed},
		{"user id length 65", mutate(func(b []byte) []byte { b[uidLenAt] = MaxUserIDLen + 1; return b }), ErrMalformed},
		{"user id not UTF-8", mutate(func(b []byte) []byte { b[certUserIDAt] = 0xff; return b }), ErrMalformed},
		{"compressed key", mutate(func(b []byte) []byte { b[keyAt] = 0x02; return b }), ErrMalformed},
		{"off-curve key", mutate(func(b []byte) []byte { b[keyAt+64] ^= 1; return b }), ErrMalformed},
		{"key is infinity", mutate(func(b []byte) []byte { clear(b[keyAt : keyAt+65]); return b }), ErrMalformed},
		{"expiry out of range", mutate(func(b []byte) []byte { b[5] = 0x80; return b }), ErrMalformed},
	}
	for n := 1; n < len(good); n++ {
		cases = append(cases, struct {
			name string
			b    []byte
			want error
		}{"truncated", good[:n], ErrMalformed})
	}
	for _, tc := range cases {
		if _, err := ParseSenderCertificate(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s (%d bytes): err = %v, want %v", tc.name, len(tc.b), err, tc.want)
		}
	}
}

func TestIssuerRejectsBadInput(t *testing.T) {
	clock := func() time.Time { return testNow }
	key := ed25519FromSeed("issuer")
	for _, tc := range []struct {
		name     string
		key      ed25519.PrivateKey
		lifetime time.Duration
		clock    func() time.Time
		want     error
	}{
		{"short key", key[:32], time.Hour, clock, ErrInvalidKey},
		{"zero lifetime", key, 0, clock, ErrInvalidCertificate},
		{"lifetime over max", key, MaxCertificateLifetime + time.Second, clock, ErrInvalidCertificate},
		{"nil clock", key, time.Hour, nil, ErrInvalidCertificate},
	} {
		if _, err := NewIssuer(tc.key, tc.lifetime, tc.clock); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}

	issuer, err := NewIssuer(key, time.Hour, clock)
	if err != nil {
		t.Fatal(err)
	}
	identity := p256FromSeed(t, "alice").PublicKey()
	x25519, err := ecdh.X25519().NewPrivateKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		userID string
		key    *ecdh.PublicKey
		want   error
	}{
		{"empty user id", "", identity, ErrInvalidCertificate},
		{"user id over max", strings.Repeat("a", MaxUserIDLen+1), identity, ErrInvalidCertificate},
		{"user id not UTF-8", "\xff", identity, ErrInvalidCertificate},
		{"nil key", "alice", nil, ErrInvalidKey},
		{"x25519 key", "alice", x25519.PublicKey(), ErrInvalidKey},
	} {
		if _, err := issuer.Issue(tc.userID, 1, tc.key); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := issuer.Issue(strings.Repeat("é", MaxUserIDLen/2), 1, identity); err != nil {
		t.Errorf("user id of exactly %d bytes: %v", MaxUserIDLen, err)
	}
}
