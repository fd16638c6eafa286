package envelope

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// Envelope layout (version 1):
//
//	version            1 byte  = 1
//	ephemeral key      65 bytes SEC 1 uncompressed P-256 point
//	sealed sender key  65 + 16 bytes: AES-256-GCM of the sender identity public key
//	sealed inner       padded inner plaintext + 16 bytes: AES-256-GCM
//
// The total is always a bucket size (see bucketSize).
const (
	envelopeVersion   = 1
	gcmTagSize        = 16
	gcmNonceSize      = 12
	ephemeralKeyStart = 1
	sealedSenderStart = ephemeralKeyStart + identityKeySize
	sealedInnerStart  = sealedSenderStart + identityKeySize + gcmTagSize
	// envelopeOverhead is the envelope bytes that are not padded inner plaintext.
	envelopeOverhead = sealedInnerStart + gcmTagSize
)

// HKDF info labels for the two key derivations.
const (
	ephemeralLabel = "guardyn sealed sender v1 ephemeral"
	staticLabel    = "guardyn sealed sender v1 static"
)

// Sender is the sealing device: its certificate from the auth service and its identity key, the
// private half of the certificate's identity key.
type Sender struct {
	Certificate []byte
	IdentityKey *ecdh.PrivateKey
}

// Recipient is the device an envelope is sealed to.
type Recipient struct {
	IdentityKey *ecdh.PublicKey
	DeviceID    uint32
}

// Opened is the content of an envelope that Open authenticated.
type Opened struct {
	// Sender is the verified certificate of the device that sealed the envelope.
	Sender      *SenderCertificate
	ContentType ContentType
	Content     []byte
}

// Seal encrypts content of type ct from sender to recipient. It checks that the sender's
// certificate parses and names the sender's identity key, but not the certificate's signature or
// expiry: the recipient does that.
func Seal(sender Sender, recipient Recipient, ct ContentType, content []byte) ([]byte, error) {
	ephemeral, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("envelope: generating ephemeral key: %w", err)
	}
	return seal(sender, recipient, ct, content, ephemeral)
}

// seal is Seal with a chosen ephemeral key, so tests can freeze known-answer vectors.
func seal(sender Sender, recipient Recipient, ct ContentType, content []byte, ephemeral *ecdh.PrivateKey) ([]byte, error) {
	if sender.IdentityKey == nil || sender.IdentityKey.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("%w: sender identity key must be P-256", ErrInvalidKey)
	}
	if recipient.IdentityKey == nil || recipient.IdentityKey.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("%w: recipient identity key must be P-256", ErrInvalidKey)
	}
	cert, err := ParseSenderCertificate(sender.Certificate)
	if err != nil {
		return nil, fmt.Errorf("sender certificate: %w", err)
	}
	if !cert.identityKey.Equal(sender.IdentityKey.PublicKey()) {
		return nil, fmt.Errorf("%w: sealing with a key the certificate does not name", ErrSenderKeyMismatch)
	}
	inner, err := encodeInner(sender.Certificate, ct, content)
	if err != nil {
		return nil, err
	}
	defer clear(inner)
	return encrypt(sender.IdentityKey, recipient, ephemeral, inner)
}

// encrypt seals a padded inner plaintext. It trusts its caller to have checked the keys, so tests
// can also build envelopes whose certificate names another key.
func encrypt(senderKey *ecdh.PrivateKey, recipient Recipient, ephemeral *ecdh.PrivateKey, inner []byte) ([]byte, error) {
	out := make([]byte, 0, envelopeOverhead+len(inner))
	out = append(out, envelopeVersion)
	out = append(out, ephemeral.PublicKey().Bytes()...)
	recipientKey := recipient.IdentityKey.Bytes()

	chainKey, staticAEAD, err := deriveEphemeral(ephemeral, recipient.IdentityKey, out, recipientKey, recipient.DeviceID)
	if err != nil {
		return nil, err
	}
	defer clear(chainKey)
	ad := associatedData(out, recipientKey, recipient.DeviceID)
	out = staticAEAD.Seal(out, nonce(), senderKey.PublicKey().Bytes(), ad)

	messageAEAD, err := deriveStatic(senderKey, recipient.IdentityKey, chainKey, out, recipientKey, recipient.DeviceID)
	if err != nil {
		return nil, err
	}
	ad = associatedData(out, recipientKey, recipient.DeviceID)
	return messageAEAD.Seal(out, nonce(), inner, ad), nil
}

// Open authenticates and decrypts an envelope sealed to the device deviceID holding identity,
// verifies the sender certificate against trustRoot at now, and checks that the certificate's
// identity key is the one that sealed the envelope.
//
// Pass as now the time the server accepted the envelope (its server timestamp), as Signal does:
// a device that was offline longer than a certificate's lifetime still opens its backlog, while
// an honest server accepts no new messages under an expired certificate. (A malicious server can
// lie about the time; see docs/crypto/envelope.md.)
func Open(identity *ecdh.PrivateKey, deviceID uint32, trustRoot ed25519.PublicKey, now time.Time, envelope []byte) (*Opened, error) {
	if len(envelope) > MaxSize {
		return nil, fmt.Errorf("%w: envelope has %d bytes, max %d", ErrTooLarge, len(envelope), MaxSize)
	}
	if len(envelope) == 0 {
		return nil, fmt.Errorf("%w: empty envelope", ErrMalformed)
	}
	if envelope[0] != envelopeVersion {
		return nil, fmt.Errorf("%w: envelope version %d", ErrUnsupportedVersion, envelope[0])
	}
	if !isBucketSize(len(envelope)) {
		return nil, fmt.Errorf("%w: envelope length %d is not a bucket size", ErrMalformed, len(envelope))
	}
	if identity == nil || identity.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("%w: recipient identity key must be P-256", ErrInvalidKey)
	}
	ephemeral, err := ecdh.P256().NewPublicKey(envelope[ephemeralKeyStart:sealedSenderStart])
	if err != nil {
		return nil, fmt.Errorf("%w: ephemeral key: %v", ErrMalformed, err)
	}
	recipientKey := identity.PublicKey().Bytes()

	header := envelope[:sealedSenderStart]
	chainKey, staticAEAD, err := deriveEphemeral(identity, ephemeral, header, recipientKey, deviceID)
	if err != nil {
		return nil, err
	}
	defer clear(chainKey)
	senderKeyBytes, err := staticAEAD.Open(nil, nonce(), envelope[sealedSenderStart:sealedInnerStart], associatedData(header, recipientKey, deviceID))
	if err != nil {
		return nil, fmt.Errorf("%w: sender key layer", ErrDecrypt)
	}
	senderKey, err := ecdh.P256().NewPublicKey(senderKeyBytes)
	if err != nil {
		return nil, fmt.Errorf("%w: sender identity key: %v", ErrMalformed, err)
	}

	header = envelope[:sealedInnerStart]
	messageAEAD, err := deriveStatic(identity, senderKey, chainKey, header, recipientKey, deviceID)
	if err != nil {
		return nil, err
	}
	inner, err := messageAEAD.Open(nil, nonce(), envelope[sealedInnerStart:], associatedData(header, recipientKey, deviceID))
	if err != nil {
		return nil, fmt.Errorf("%w: message layer", ErrDecrypt)
	}
	defer clear(inner)
	certBytes, ct, content, err := decodeInner(inner)
	if err != nil {
		return nil, err
	}
	cert, err := ParseSenderCertificate(certBytes)
	if err != nil {
		return nil, fmt.Errorf("sender certificate: %w", err)
	}
	if err := cert.Verify(trustRoot, now); err != nil {
		return nil, fmt.Errorf("sender certificate: %w", err)
	}
	if !cert.identityKey.Equal(senderKey) {
		return nil, ErrSenderKeyMismatch
	}
	return &Opened{Sender: cert, ContentType: ct, Content: bytes.Clone(content)}, nil
}

// deriveEphemeral runs the ephemeral-static ECDH and returns the chain key for the second step
// and the AEAD that hides the sender identity key.
func deriveEphemeral(priv *ecdh.PrivateKey, pub *ecdh.PublicKey, header, recipientKey []byte, deviceID uint32) ([]byte, cipher.AEAD, error) {
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ephemeral ecdh: %v", ErrDecrypt, err)
	}
	defer clear(shared)
	okm, err := hkdf.Key(sha256.New, shared, nil, ephemeralLabel+string(associatedData(header, recipientKey, deviceID)), 64)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope: deriving ephemeral keys: %w", err)
	}
	defer clear(okm[32:])
	aead, err := newAEAD(okm[32:])
	if err != nil {
		return nil, nil, err
	}
	return okm[:32:32], aead, nil
}

// deriveStatic runs the static-static ECDH between the two identity keys and returns the AEAD
// for the inner plaintext, keyed from that secret and the chain key.
func deriveStatic(priv *ecdh.PrivateKey, pub *ecdh.PublicKey, chainKey, header, recipientKey []byte, deviceID uint32) (cipher.AEAD, error) {
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: static ecdh: %v", ErrDecrypt, err)
	}
	defer clear(shared)
	key, err := hkdf.Key(sha256.New, shared, chainKey, staticLabel+string(associatedData(header, recipientKey, deviceID)), 32)
	if err != nil {
		return nil, fmt.Errorf("envelope: deriving message key: %w", err)
	}
	defer clear(key)
	return newAEAD(key)
}

// nonce is all zeros for both AEADs: each key is derived from a fresh ephemeral ECDH and
// encrypts exactly one plaintext.
func nonce() []byte { return make([]byte, gcmNonceSize) }

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("envelope: aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("envelope: gcm: %w", err)
	}
	return aead, nil
}

// associatedData binds the envelope bytes so far to the recipient identity key and device id.
func associatedData(header, recipientKey []byte, deviceID uint32) []byte {
	ad := make([]byte, 0, len(header)+len(recipientKey)+4)
	ad = append(ad, header...)
	ad = append(ad, recipientKey...)
	return binary.BigEndian.AppendUint32(ad, deviceID)
}
