package envelope

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the current code")

// vector is one frozen known answer: every key and the ephemeral are given, so certificate and
// envelope bytes are fully determined (Ed25519 and AES-GCM are deterministic).
type vector struct {
	Name              string `json:"name"`
	IssuerSeed        string `json:"issuer_ed25519_seed"`
	IssuedAt          int64  `json:"issued_at_unix"`
	LifetimeSeconds   int64  `json:"lifetime_seconds"`
	SenderUserID      string `json:"sender_user_id"`
	SenderDeviceID    uint32 `json:"sender_device_id"`
	SenderKey         string `json:"sender_identity_p256_scalar"`
	RecipientKey      string `json:"recipient_identity_p256_scalar"`
	RecipientDeviceID uint32 `json:"recipient_device_id"`
	EphemeralKey      string `json:"ephemeral_p256_scalar"`
	ContentType       uint8  `json:"content_type"`
	Content           string `json:"content"`
	Certificate       string `json:"certificate"`
	Envelope          string `json:"envelope"`
}

const vectorsPath = "testdata/vectors.json"

func TestVectors(t *testing.T) {
	vectors := readVectors(t)
	if *update {
		vectors = freshVectors(t)
	}
	for i := range vectors {
		v := &vectors[i]
		t.Run(v.Name, func(t *testing.T) {
			issuerSeed := unhex(t, v.IssuerSeed)
			issuedAt := time.Unix(v.IssuedAt, 0)
			issuer, err := NewIssuer(ed25519.NewKeyFromSeed(issuerSeed), time.Duration(v.LifetimeSeconds)*time.Second, func() time.Time { return issuedAt })
			if err != nil {
				t.Fatal(err)
			}
			sender := p256Scalar(t, v.SenderKey)
			recipient := p256Scalar(t, v.RecipientKey)
			cert, err := issuer.Issue(v.SenderUserID, v.SenderDeviceID, sender.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			content := unhex(t, v.Content)
			env, err := seal(Sender{Certificate: cert, IdentityKey: sender}, Recipient{IdentityKey: recipient.PublicKey(), DeviceID: v.RecipientDeviceID},
				ContentType(v.ContentType), content, p256Scalar(t, v.EphemeralKey))
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				v.Certificate, v.Envelope = hex.EncodeToString(cert), hex.EncodeToString(env)
			}
			if got := hex.EncodeToString(cert); got != v.Certificate {
				t.Errorf("certificate:\n got %s\nwant %s", got, v.Certificate)
			}
			if got := hex.EncodeToString(env); got != v.Envelope {
				t.Errorf("envelope:\n got %s\nwant %s", got, v.Envelope)
			}
			opened, err := Open(recipient, v.RecipientDeviceID, issuer.TrustRoot(), issuedAt, unhex(t, v.Envelope))
			if err != nil {
				t.Fatalf("Open(frozen envelope): %v", err)
			}
			if opened.ContentType != ContentType(v.ContentType) || !bytes.Equal(opened.Content, content) || opened.Sender.UserID() != v.SenderUserID {
				t.Errorf("opened %s %q from %q", opened.ContentType, opened.Content, opened.Sender.UserID())
			}
		})
	}
	if *update {
		b, err := json.MarshalIndent(vectors, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsPath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readVectors(t *testing.T) []vector {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(vectorsPath))
	if err != nil {
		if *update {
			return nil
		}
		t.Fatal(err)
	}
	var vectors []vector
	if err := json.Unmarshal(b, &vectors); err != nil {
		t.Fatalf("%s: %v", vectorsPath, err)
	}
	if len(vectors) == 0 && !*update {
		t.Fatalf("%s holds no vectors", vectorsPath)
	}
	return vectors
}

// freshVectors lists the inputs of the frozen vectors; their outputs are filled in by TestVectors.
func freshVectors(t *testing.T) []vector {
	scalar := func(seed string) string { return hex.EncodeToString(p256FromSeed(t, seed).Bytes()) }
	base := vector{
		IssuerSeed:        hex.EncodeToString(ed25519FromSeed("guardyn test issuer").Seed()),
		IssuedAt:          time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix(),
		LifetimeSeconds:   86400,
		SenderUserID:      "alice",
		SenderDeviceID:    1,
		SenderKey:         scalar("vector sender"),
		RecipientKey:      scalar("vector recipient"),
		RecipientDeviceID: 2,
		EphemeralKey:      scalar("vector ephemeral"),
	}
	typing := base
	typing.Name, typing.ContentType, typing.Content = "typing, empty content", uint8(ContentTyping), ""
	message := base
	message.Name, message.ContentType = "session message, 512-byte bucket", uint8(ContentSessionMessage)
	message.Content = hex.EncodeToString([]byte("hello, sealed world"))
	large := base
	large.Name, large.ContentType, large.SenderUserID, large.SenderDeviceID = "MLS message, 1 KiB bucket, long user id", uint8(ContentMLS), strings.Repeat("u", MaxUserIDLen), 0xfffffffe
	large.RecipientDeviceID = 0xffffffff
	large.Content = hex.EncodeToString(bytes.Repeat([]byte{0x5a}, 400))
	return []vector{typing, message, large}
}

func p256Scalar(t *testing.T, s string) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.P256().NewPrivateKey(unhex(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
