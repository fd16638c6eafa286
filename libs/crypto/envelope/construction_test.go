package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

// TestConstructionMatchesDoc opens a frozen vector step by step as docs/crypto/envelope.md
// describes it, using the primitives directly rather than the package's helpers.
func TestConstructionMatchesDoc(t *testing.T) {
	v := readVectors(t)[1]
	env := unhex(t, v.Envelope)
	recipient := p256Scalar(t, v.RecipientKey)
	recipientKey := recipient.PublicKey().Bytes()
	device := binary.BigEndian.AppendUint32(nil, v.RecipientDeviceID)

	gcmOpen := func(key, ciphertext, ad []byte) []byte {
		t.Helper()
		block, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			t.Fatal(err)
		}
		plaintext, err := aead.Open(nil, make([]byte, 12), ciphertext, ad)
		if err != nil {
			t.Fatalf("gcm open: %v", err)
		}
		return plaintext
	}
	concat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	if env[0] != 1 || len(env) != 512 {
		t.Fatalf("version %d, length %d", env[0], len(env))
	}
	ephemeral, err := ecdh.P256().NewPublicKey(env[1:66])
	if err != nil {
		t.Fatal(err)
	}
	dh1, err := recipient.ECDH(ephemeral)
	if err != nil {
		t.Fatal(err)
	}
	context1 := concat(env[:66], recipientKey, device)
	okm, err := hkdf.Key(sha256.New, dh1, nil, "guardyn sealed sender v1 ephemeral"+string(context1), 64)
	if err != nil {
		t.Fatal(err)
	}
	chainKey, staticKey := okm[:32], okm[32:]
	senderKeyBytes := gcmOpen(staticKey, env[66:147], context1)
	if want := p256Scalar(t, v.SenderKey).PublicKey().Bytes(); !bytes.Equal(senderKeyBytes, want) {
		t.Fatal("decrypted sender key is not the sender's identity key")
	}

	senderKey, err := ecdh.P256().NewPublicKey(senderKeyBytes)
	if err != nil {
		t.Fatal(err)
	}
	dh2, err := recipient.ECDH(senderKey)
	if err != nil {
		t.Fatal(err)
	}
	context2 := concat(env[:147], recipientKey, device)
	messageKey, err := hkdf.Key(sha256.New, dh2, chainKey, "guardyn sealed sender v1 static"+string(context2), 32)
	if err != nil {
		t.Fatal(err)
	}
	inner := gcmOpen(messageKey, env[147:], context2)

	certLen := int(binary.BigEndian.Uint16(inner))
	cert := inner[2 : 2+certLen]
	rest := inner[2+certLen:]
	contentLen := binary.BigEndian.Uint32(rest[1:5])
	content, padding := rest[5:5+contentLen], rest[5+contentLen:]
	if !bytes.Equal(cert, unhex(t, v.Certificate)) || rest[0] != v.ContentType || !bytes.Equal(content, unhex(t, v.Content)) {
		t.Errorf("inner plaintext: certificate, type %d or content %q differ from the vector", rest[0], content)
	}
	if !bytes.Equal(padding, make([]byte, len(padding))) {
		t.Error("padding is not all zeros")
	}

	// Certificate layout: version, issuer key id, expiry, device id, identity key, user id.
	root := ed25519.NewKeyFromSeed(unhex(t, v.IssuerSeed)).Public().(ed25519.PublicKey)
	rootID := sha256.Sum256(root)
	if cert[0] != 1 || binary.BigEndian.Uint32(cert[1:5]) != binary.BigEndian.Uint32(rootID[:4]) ||
		int64(binary.BigEndian.Uint64(cert[5:13])) != v.IssuedAt+v.LifetimeSeconds ||
		binary.BigEndian.Uint32(cert[13:17]) != v.SenderDeviceID || !bytes.Equal(cert[17:82], senderKeyBytes) ||
		string(cert[83:83+int(cert[82])]) != v.SenderUserID {
		t.Errorf("certificate fields do not follow the documented layout: %x", cert)
	}
	body, sig := cert[:len(cert)-64], cert[len(cert)-64:]
	if !ed25519.Verify(root, concat([]byte("guardyn sender certificate v1\x00"), body), sig) {
		t.Error("certificate signature does not verify as documented")
	}
}
