package envelope

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseSenderCertificate checks that parsing never panics, fails only with the package's
// sentinels, and that whatever parses re-encodes to the same bytes.
func FuzzParseSenderCertificate(f *testing.F) {
	fx := newFixture(f)
	f.Add(fx.aliceCert)
	f.Add(fx.aliceCert[:certificateFixedSize])
	f.Add([]byte{certificateVersion})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		cert, err := ParseSenderCertificate(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if !bytes.Equal(cert.Bytes(), b) {
			t.Fatal("Bytes differs from the parsed input")
		}
		if len(cert.UserID()) == 0 || len(cert.UserID()) > MaxUserIDLen {
			t.Fatalf("parsed user id of %d bytes", len(cert.UserID()))
		}
		// Anything the fuzzer builds is unsigned by the fixture's issuer unless it is the seed.
		if err := cert.Verify(fx.root, testNow); err == nil && !bytes.Equal(b, fx.aliceCert) {
			t.Fatal("a mutated certificate verified")
		}
	})
}

// FuzzOpen feeds arbitrary bytes to Open: it must never panic, must fail with a sentinel, and
// must only succeed on a genuine envelope.
func FuzzOpen(f *testing.F) {
	fx := newFixture(f)
	// Seeds use fixed ephemeral keys: fuzzing workers rebuild them and must get the same bytes.
	var genuine [][]byte
	for i, content := range [][]byte{[]byte("seed message"), make([]byte, 600)} {
		env, err := seal(fx.sender(), fx.recipient(), ContentSessionMessage, content, p256FromSeed(f, string(rune('a'+i))))
		if err != nil {
			f.Fatal(err)
		}
		genuine = append(genuine, env)
	}
	for _, env := range genuine {
		f.Add(env)
	}
	f.Add(genuine[0][:sealedInnerStart])
	f.Add([]byte{envelopeVersion})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		opened, err := fx.open(b)
		if err != nil {
			for _, sentinel := range []error{ErrMalformed, ErrUnsupportedVersion, ErrTooLarge, ErrDecrypt} {
				if errors.Is(err, sentinel) {
					return
				}
			}
			t.Fatalf("unexpected error kind: %v", err)
		}
		if !bytes.Equal(b, genuine[0]) && !bytes.Equal(b, genuine[1]) {
			t.Fatalf("opened a %d-byte envelope that was never sealed, from %q", len(b), opened.Sender.UserID())
		}
	})
}

// FuzzDecodeInner covers the inner plaintext decoder, whose input a malicious but authenticated
// sender controls.
func FuzzDecodeInner(f *testing.F) {
	fx := newFixture(f)
	inner, err := encodeInner(fx.aliceCert, ContentReceipt, []byte("read"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(inner)
	f.Add(inner[:innerFixedSize])
	f.Add([]byte{0, 0, byte(ContentTyping), 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		cert, ct, content, err := decodeInner(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedContentType) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if !ct.valid() || innerFixedSize+len(cert)+len(content) > len(b) {
			t.Fatalf("decoded type %d, %d-byte certificate, %d-byte content from %d bytes", ct, len(cert), len(content), len(b))
		}
	})
}
