package keys_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/keys/keystest"
)

var updateSignatures = flag.Bool("update-signatures", false, "rewrite testdata/signatures.json from the current code")

// signatureFile is testdata/signatures.json: frozen signatures of our own over the
// domain-separated statement format (ECDSA P-256/SHA-256 is randomized, so they are frozen rather
// than regenerated). Each vector holds the signer's public key, the context, the message and the
// SHA-256 digest of the whole statement, so the format is pinned twice: by the code verifying the
// signatures, and by TestSignatureVectorsByHand rebuilding the statement with the standard
// library alone.
type signatureFile struct {
	Comment     string            `json:"comment"`
	IdentityKey string            `json:"identityKey"`
	Statements  []statementVector `json:"statements"`
	// SignedPreKey and KEMPreKey are signed prekeys as uploaded, to pin their statements.
	SignedPreKey preKeyVector `json:"signedPreKey"`
	KEMPreKey    preKeyVector `json:"kemPreKey"`
}

type statementVector struct {
	Context   string `json:"context"`
	Message   string `json:"message"`
	Digest    string `json:"digest"` // SHA-256 of the statement
	Signature string `json:"signature"`
}

type preKeyVector struct {
	ID         uint32 `json:"id"`
	Created    int64  `json:"created"`
	LastResort bool   `json:"lastResort,omitempty"`
	Key        string `json:"key"`
	Statement  string `json:"statement"` // the signed message (without the domain separation)
	Signature  string `json:"signature"`
}

const signaturesPath = "testdata/signatures.json"

func unhexT(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeSignatureVectors(t *testing.T) {
	id := keystest.Identity("signature vectors")
	f := signatureFile{
		Comment:     "Frozen Guardyn signature statements (libs/crypto/keys, docs/crypto/pqxdh.md); regenerate only for an intentional format change: go test ./libs/crypto/keys -run TestSignatureVectors -update-signatures",
		IdentityKey: hex.EncodeToString(id.Public().Bytes()),
	}
	for _, c := range []struct {
		ctx keys.Context
		msg string
	}{
		{keys.ContextRegistration, "registration statement"},
		{keys.ContextLoginChallenge, ""},
		{keys.ContextDeviceLink, "\x00\x01\x02 binary"},
		{keys.ContextDeviceLinkStatus, "link-id"},
		{keys.ContextSignedPreKey, "spk"},
		{keys.ContextKEMPreKey, "kem"},
	} {
		sig, err := id.Sign(c.ctx, []byte(c.msg))
		if err != nil {
			t.Fatal(err)
		}
		d := handDigest(string(c.ctx), []byte(c.msg))
		f.Statements = append(f.Statements, statementVector{Context: string(c.ctx), Message: hex.EncodeToString([]byte(c.msg)),
			Digest: hex.EncodeToString(d[:]), Signature: hex.EncodeToString(sig)})
	}
	created := time.Unix(1_796_601_600, 0)
	spk, err := keys.NewSignedPreKey(id, 7, created, keystest.ECDHKey("signature vectors/spk"))
	if err != nil {
		t.Fatal(err)
	}
	pub := spk.Public()
	f.SignedPreKey = preKeyVector{ID: pub.ID, Created: pub.Created.Unix(), Key: hex.EncodeToString(pub.Key.Bytes()),
		Statement: hex.EncodeToString(handSignedPreKeyStatement(pub.ID, pub.Created.Unix(), pub.Key.Bytes())), Signature: hex.EncodeToString(pub.Signature)}
	kem, err := keys.NewKEMPreKey(id, 9, created, keystest.KEMKey("signature vectors/kem"), true)
	if err != nil {
		t.Fatal(err)
	}
	kpub := kem.Public()
	f.KEMPreKey = preKeyVector{ID: kpub.ID, Created: kpub.Created.Unix(), LastResort: true, Key: hex.EncodeToString(kpub.Key.Bytes()),
		Statement: hex.EncodeToString(handKEMPreKeyStatement(kpub.ID, true, kpub.Created.Unix(), kpub.Key.Bytes())), Signature: hex.EncodeToString(kpub.Signature)}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(signaturesPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(signaturesPath, append(out, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readSignatureVectors(t *testing.T) signatureFile {
	t.Helper()
	if *updateSignatures {
		writeSignatureVectors(t)
	}
	raw, err := os.ReadFile(signaturesPath)
	if err != nil {
		t.Fatal(err)
	}
	var f signatureFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Statements) != 6 {
		t.Fatalf("%d statements, want one per context", len(f.Statements))
	}
	return f
}

// TestSignatureVectors: the code verifies every frozen signature under its context and no other,
// and accepts the frozen signed and KEM prekeys.
func TestSignatureVectors(t *testing.T) {
	f := readSignatureVectors(t)
	ik, err := keys.ParseIdentityKey(unhexT(t, f.IdentityKey))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range f.Statements {
		msg, sig := unhexT(t, v.Message), unhexT(t, v.Signature)
		if err := ik.Verify(keys.Context(v.Context), msg, sig); err != nil {
			t.Errorf("%s: frozen signature: %v", v.Context, err)
		}
		other := f.Statements[(i+1)%len(f.Statements)].Context
		if err := ik.Verify(keys.Context(other), msg, sig); err == nil {
			t.Errorf("%s signature verified under context %s", v.Context, other)
		}
	}
	spk, err := keys.ParseSignedPreKeyPublic(f.SignedPreKey.ID, time.Unix(f.SignedPreKey.Created, 0), unhexT(t, f.SignedPreKey.Key), unhexT(t, f.SignedPreKey.Signature))
	if err != nil {
		t.Fatal(err)
	}
	if err := spk.Verify(ik); err != nil {
		t.Errorf("frozen signed prekey: %v", err)
	}
	kem, err := keys.ParseKEMPreKeyPublic(f.KEMPreKey.ID, time.Unix(f.KEMPreKey.Created, 0), unhexT(t, f.KEMPreKey.Key), f.KEMPreKey.LastResort, unhexT(t, f.KEMPreKey.Signature))
	if err != nil {
		t.Fatal(err)
	}
	if err := kem.Verify(ik); err != nil {
		t.Errorf("frozen kem prekey: %v", err)
	}
}

// handDigest is SHA-256("Guardyn signature v1" || 0x00 || uint8(len(ctx)) || ctx || msg), as the
// package documents it, written without the package.
func handDigest(ctx string, msg []byte) [32]byte {
	b := append([]byte("Guardyn signature v1"), 0, byte(len(ctx)))
	return sha256.Sum256(append(append(b, ctx...), msg...))
}

// handSignedPreKeyStatement is uint32 id || uint64 created || SEC 1 point.
func handSignedPreKeyStatement(id uint32, created int64, key []byte) []byte {
	b := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, id), uint64(created))
	return append(b, key...)
}

// handKEMPreKeyStatement is uint32 id || last resort || 0x01 (ML-KEM-768) || uint64 created || key.
func handKEMPreKeyStatement(id uint32, lastResort bool, created int64, key []byte) []byte {
	flag := byte(0)
	if lastResort {
		flag = 1
	}
	b := append(binary.BigEndian.AppendUint32(nil, id), flag, 0x01)
	return append(binary.BigEndian.AppendUint64(b, uint64(created)), key...)
}

// TestSignatureVectorsByHand re-derives every frozen statement with the standard library alone
// (crypto/sha256, crypto/ecdsa) and checks the frozen signatures against those digests, so the
// vectors pin the documented format and not merely what the code outputs.
func TestSignatureVectorsByHand(t *testing.T) {
	f := readSignatureVectors(t)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), unhexT(t, f.IdentityKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range f.Statements {
		d := handDigest(v.Context, unhexT(t, v.Message))
		if hex.EncodeToString(d[:]) != v.Digest {
			t.Errorf("%s: statement digest %x, frozen %s", v.Context, d, v.Digest)
		}
		if !ecdsa.VerifyASN1(pub, d[:], unhexT(t, v.Signature)) {
			t.Errorf("%s: frozen signature does not verify over the hand-built statement", v.Context)
		}
	}
	for _, c := range []struct {
		ctx  string
		v    preKeyVector
		want []byte
	}{
		{"signed-prekey", f.SignedPreKey, handSignedPreKeyStatement(f.SignedPreKey.ID, f.SignedPreKey.Created, unhexT(t, f.SignedPreKey.Key))},
		{"kem-prekey", f.KEMPreKey, handKEMPreKeyStatement(f.KEMPreKey.ID, f.KEMPreKey.LastResort, f.KEMPreKey.Created, unhexT(t, f.KEMPreKey.Key))},
	} {
		if !bytes.Equal(c.want, unhexT(t, c.v.Statement)) {
			t.Errorf("%s: hand-built statement differs from the frozen one", c.ctx)
		}
		d := handDigest(c.ctx, c.want)
		if !ecdsa.VerifyASN1(pub, d[:], unhexT(t, c.v.Signature)) {
			t.Errorf("%s: frozen signature does not verify over the hand-built statement", c.ctx)
		}
	}
}
