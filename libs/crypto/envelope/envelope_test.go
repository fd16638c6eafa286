package envelope

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestSealOpenRoundTrip(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		ct   ContentType
		size int
	}{
		{ContentTyping, 0},
		{ContentReceipt, 16},
		{ContentSessionMessage, 1024},
		{ContentPreKeyMessage, 5000},
		{ContentMLS, MaxContentSize},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.ct, tc.size), func(t *testing.T) {
			content := bytes.Repeat([]byte{0xA5}, tc.size)
			opened, err := f.open(f.seal(t, tc.ct, content))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if opened.ContentType != tc.ct {
				t.Errorf("content type %s, want %s", opened.ContentType, tc.ct)
			}
			if !bytes.Equal(opened.Content, content) {
				t.Errorf("content differs: %d bytes, want %d", len(opened.Content), len(content))
			}
			s := opened.Sender
			if s.UserID() != "alice@example.org" || s.DeviceID() != 7 || !s.IdentityKey().Equal(f.alice.PublicKey()) {
				t.Errorf("sender = %q device %d, want alice@example.org device 7 with Alice's key", s.UserID(), s.DeviceID())
			}
			if !bytes.Equal(s.Bytes(), f.aliceCert) {
				t.Error("opened certificate bytes differ from the issued certificate")
			}
		})
	}
}

func TestSealIsRandomized(t *testing.T) {
	f := newFixture(t)
	a, b := f.seal(t, ContentSessionMessage, []byte("hi")), f.seal(t, ContentSessionMessage, []byte("hi"))
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same message are identical: ephemeral key reused")
	}
}

func TestOpenRejectsEveryFlippedByte(t *testing.T) {
	f := newFixture(t)
	env := f.seal(t, ContentSessionMessage, []byte("attack at dawn"))
	for i := range env {
		for _, mask := range []byte{0x01, 0x80} {
			tampered := bytes.Clone(env)
			tampered[i] ^= mask
			_, err := f.open(tampered)
			if !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("byte %d ^ %#x: err = %v, want ErrDecrypt, ErrMalformed or ErrUnsupportedVersion", i, mask, err)
			}
		}
	}
}

func TestOpenWrongRecipient(t *testing.T) {
	f := newFixture(t)
	env := f.seal(t, ContentSessionMessage, []byte("for bob's device 3"))
	if _, err := Open(p256FromSeed(t, "carol"), f.bobDevice, f.root, testNow, env); !errors.Is(err, ErrDecrypt) {
		t.Errorf("other identity key: err = %v, want ErrDecrypt", err)
	}
	if _, err := Open(f.bob, f.bobDevice+1, f.root, testNow, env); !errors.Is(err, ErrDecrypt) {
		t.Errorf("other device id: err = %v, want ErrDecrypt", err)
	}
}

func TestOpenCertificateExpiry(t *testing.T) {
	f := newFixture(t)
	env := f.seal(t, ContentSessionMessage, []byte("late"))
	expiry := testNow.Add(24 * time.Hour)
	if _, err := Open(f.bob, f.bobDevice, f.root, expiry.Add(-time.Second), env); err != nil {
		t.Errorf("one second before expiry: %v", err)
	}
	for _, now := range []time.Time{expiry, expiry.Add(time.Hour)} {
		if _, err := Open(f.bob, f.bobDevice, f.root, now, env); !errors.Is(err, ErrCertificateExpired) {
			t.Errorf("at %s: err = %v, want ErrCertificateExpired", now, err)
		}
	}
}

func TestOpenForgedCertificate(t *testing.T) {
	f := newFixture(t)
	t.Run("other issuer", func(t *testing.T) {
		forger, err := NewIssuer(ed25519FromSeed("mallory"), time.Hour, func() time.Time { return testNow })
		if err != nil {
			t.Fatal(err)
		}
		cert, err := forger.Issue("alice@example.org", 7, f.alice.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		env, err := Seal(Sender{Certificate: cert, IdentityKey: f.alice}, f.recipient(), ContentSessionMessage, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.open(env); !errors.Is(err, ErrUnknownIssuer) {
			t.Errorf("err = %v, want ErrUnknownIssuer", err)
		}
		// Relabelled with the genuine root's key id, the signature no longer matches.
		binary.BigEndian.PutUint32(cert[certKeyIDAt:], KeyID(f.root))
		env, err = Seal(Sender{Certificate: cert, IdentityKey: f.alice}, f.recipient(), ContentSessionMessage, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.open(env); !errors.Is(err, ErrCertificateSignature) {
			t.Errorf("relabelled: err = %v, want ErrCertificateSignature", err)
		}
	})
	t.Run("edited user id", func(t *testing.T) {
		cert := bytes.Clone(f.aliceCert)
		copy(cert[certUserIDAt:], "eve")
		env, err := Seal(Sender{Certificate: cert, IdentityKey: f.alice}, f.recipient(), ContentSessionMessage, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.open(env); !errors.Is(err, ErrCertificateSignature) {
			t.Errorf("err = %v, want ErrCertificateSignature", err)
		}
	})
	t.Run("rotated trust root", func(t *testing.T) {
		env := f.seal(t, ContentSessionMessage, []byte("x"))
		if _, err := Open(f.bob, f.bobDevice, ed25519FromSeed("next root").Public().(ed25519.PublicKey), testNow, env); !errors.Is(err, ErrUnknownIssuer) {
			t.Errorf("err = %v, want ErrUnknownIssuer", err)
		}
	})
}

// TestOpenSenderKeyMismatch has Mallory seal with her own identity key but embed Alice's genuine
// certificate (any earlier recipient of Alice's can copy it): the recipient must notice that the
// certificate's key is not the key that did the static ECDH.
func TestOpenSenderKeyMismatch(t *testing.T) {
	f := newFixture(t)
	mallory := p256FromSeed(t, "mallory")
	if _, err := Seal(Sender{Certificate: f.aliceCert, IdentityKey: mallory}, f.recipient(), ContentSessionMessage, nil); !errors.Is(err, ErrSenderKeyMismatch) {
		t.Errorf("Seal with a certificate for another key: err = %v, want ErrSenderKeyMismatch", err)
	}
	inner, err := encodeInner(f.aliceCert, ContentSessionMessage, []byte("i am alice"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := encrypt(mallory, f.recipient(), p256FromSeed(t, "ephemeral"), inner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.open(env); !errors.Is(err, ErrSenderKeyMismatch) {
		t.Errorf("Open: err = %v, want ErrSenderKeyMismatch", err)
	}
}

func TestPaddingSizes(t *testing.T) {
	f := newFixture(t)
	// capacity is the largest content that fits in an envelope of the given size.
	capacity := func(size int) int { return size - envelopeOverhead - innerFixedSize - len(f.aliceCert) }
	for size := MinSize; size <= MaxSize; size <<= 1 {
		for _, n := range []int{capacity(size) - 1, capacity(size), capacity(size) + 1} {
			if n < 0 || n > MaxContentSize {
				continue
			}
			want := size
			if n > capacity(size) {
				want = size * 2
			}
			if got := len(f.seal(t, ContentMLS, make([]byte, n))); got != want {
				t.Errorf("content of %d bytes: envelope of %d bytes, want %d", n, got, want)
			}
		}
	}
	if a, b := len(f.seal(t, ContentTyping, nil)), len(f.seal(t, ContentSessionMessage, make([]byte, 150))); a != MinSize || b != MinSize {
		t.Errorf("short messages: envelopes of %d and %d bytes, want both %d", a, b, MinSize)
	}
}

func TestOpenRejectsBadLengthsAndVersions(t *testing.T) {
	f := newFixture(t)
	env := f.seal(t, ContentSessionMessage, []byte("x"))
	version2 := bytes.Clone(env)
	version2[0] = 2
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"version byte only", []byte{envelopeVersion}, ErrMalformed},
		{"truncated", env[:len(env)-1], ErrMalformed},
		{"one byte extra", append(bytes.Clone(env), 0), ErrMalformed},
		{"half a bucket", env[:MinSize/2], ErrMalformed},
		{"over max", make([]byte, MaxSize+1), ErrTooLarge},
		{"far over max", make([]byte, 4*MaxSize), ErrTooLarge},
		{"version 2", version2, ErrUnsupportedVersion},
		{"version 0", make([]byte, MinSize), ErrUnsupportedVersion},
		{"invalid ephemeral point", append([]byte{envelopeVersion}, make([]byte, MinSize-1)...), ErrMalformed},
	} {
		if _, err := f.open(tc.data); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestSealRejectsBadInput(t *testing.T) {
	f := newFixture(t)
	x25519, err := ecdh.X25519().NewPrivateKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	good, rcpt := f.sender(), f.recipient()
	for _, tc := range []struct {
		name    string
		sender  Sender
		rcpt    Recipient
		ct      ContentType
		content []byte
		want    error
	}{
		{"nil sender key", Sender{Certificate: f.aliceCert}, rcpt, ContentSessionMessage, nil, ErrInvalidKey},
		{"x25519 sender key", Sender{Certificate: f.aliceCert, IdentityKey: x25519}, rcpt, ContentSessionMessage, nil, ErrInvalidKey},
		{"nil recipient key", good, Recipient{DeviceID: 3}, ContentSessionMessage, nil, ErrInvalidKey},
		{"x25519 recipient key", good, Recipient{IdentityKey: x25519.PublicKey()}, ContentSessionMessage, nil, ErrInvalidKey},
		{"no certificate", Sender{IdentityKey: f.alice}, rcpt, ContentSessionMessage, nil, ErrMalformed},
		{"content type 0", good, rcpt, 0, nil, ErrUnsupportedContentType},
		{"content type 6", good, rcpt, 6, nil, ErrUnsupportedContentType},
		{"content too large", good, rcpt, ContentMLS, make([]byte, MaxContentSize+1), ErrTooLarge},
	} {
		if _, err := Seal(tc.sender, tc.rcpt, tc.ct, tc.content); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestOpenRejectsBadRecipientKeyAndRoot(t *testing.T) {
	f := newFixture(t)
	env := f.seal(t, ContentSessionMessage, []byte("x"))
	if _, err := Open(nil, f.bobDevice, f.root, testNow, env); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("nil identity: err = %v, want ErrInvalidKey", err)
	}
	if _, err := Open(f.bob, f.bobDevice, f.root[:31], testNow, env); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("empty trust root: err = %v, want ErrInvalidKey", err)
	}
}

func TestDecodeInnerRejectsBadPlaintext(t *testing.T) {
	f := newFixture(t)
	good, err := encodeInner(f.aliceCert, ContentReceipt, []byte("read"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, content, err := decodeInner(good); err != nil || string(content) != "read" {
		t.Fatalf("decodeInner(good) = %q, %v", content, err)
	}
	certLen := len(f.aliceCert)
	mutate := func(fn func(b []byte)) []byte {
		b := bytes.Clone(good)
		fn(b)
		return b
	}
	for _, tc := range []struct {
		name  string
		inner []byte
		want  error
	}{
		{"short", good[:innerFixedSize-1], ErrMalformed},
		{"certificate length past end", mutate(func(b []byte) { b[0], b[1] = 0xff, 0xff }), ErrMalformed},
		{"certificate length over max", mutate(func(b []byte) { b[0], b[1] = 0x01, 0x00 }), ErrMalformed},
		{"unknown content type", mutate(func(b []byte) { b[2+certLen] = 0x7f }), ErrUnsupportedContentType},
		{"content length past end", mutate(func(b []byte) { b[2+certLen+1] = 0x01 }), ErrMalformed},
		{"non-zero padding", mutate(func(b []byte) { b[len(b)-1] = 1 }), ErrMalformed},
	} {
		if _, _, _, err := decodeInner(tc.inner); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}
