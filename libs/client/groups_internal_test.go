package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"

	"github.com/guardyn/guardyn/libs/client/content"
	"github.com/guardyn/guardyn/libs/crypto/filecrypt"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/mls"
)

// TestLegacyMLSIdentityReplaced: a device whose MLS identity was made on the old P-256
// suite (a stored mlsDevice without a suite) gets a fresh X-Wing identity, with its
// credential still signed by the device's identity key, and drops the P-256 key packages
// no X-Wing group could add; its groups stay.
func TestLegacyMLSIdentityReplaced(t *testing.T) {
	id, err := keys.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	idb, err := id.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	old, err := mls.NewIdentity(legacyGroupSuite, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &state{UserID: "a11ce", DeviceID: 1, Identity: idb, MLS: &mlsDevice{SigPriv: old.SignaturePrivateKey(),
		Credential: []byte("old"), KeyPackages: []storedKeyPackage{{Message: []byte("p256")}}, Groups: map[string]*myGroup{"trip": {ID: []byte("g")}}}}
	dev, mid, err := s.mlsState()
	if err != nil {
		t.Fatal(err)
	}
	if dev.suite() != mls.DefaultCipherSuite || len(dev.KeyPackages) != 0 || dev.Groups["trip"] == nil {
		t.Fatalf("after migration: suite %#04x, %d key packages, groups %v", dev.suite(), len(dev.KeyPackages), dev.Groups)
	}
	cr, err := parseCredential(dev.Credential)
	if err != nil {
		t.Fatal(err)
	}
	if err := cr.verify(mid.SignaturePublicKey()); err != nil {
		t.Fatal(err)
	}
	kp, err := mid.NewKeyPackage(0, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	if got := mls.CipherSuite(kp.Bytes()[6])<<8 | mls.CipherSuite(kp.Bytes()[7]); got != mls.DefaultCipherSuite {
		t.Fatalf("key package suite %#04x", got)
	}
}

// FuzzParseCredential: the decoder of member credentials (from any group member's leaf)
// never panics, refuses with errBadCredential, and keeps what it accepts intact.
func FuzzParseCredential(f *testing.F) {
	id, err := keys.GenerateIdentity()
	if err != nil {
		f.Fatal(err)
	}
	_, cred, err := newMLSIdentity(id, "a11ce", 3)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cred)
	f.Add(cred[:10])
	f.Add([]byte("GMC1\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseCredential(b)
		if err != nil {
			if !errors.Is(err, errBadCredential) {
				t.Fatalf("error %v does not wrap errBadCredential", err)
			}
			return
		}
		again := append([]byte(credentialMagic), byte(len(c.UserID)))
		again = append(again, c.UserID...)
		again = append(again, byte(c.DeviceID>>24), byte(c.DeviceID>>16), byte(c.DeviceID>>8), byte(c.DeviceID))
		again = append(append(again, c.IdentityKey...), c.Signature...)
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted %x but it re-encodes to %x", b, again)
		}
		_ = c.verify(make([]byte, 65)) // must not panic on any key or signature
	})
}

// FuzzParseGroupText: the decoder of group application plaintexts refuses what is not a
// well-formed text or name message.
func FuzzParseGroupText(f *testing.F) {
	f.Add([]byte(`{"k":"text","id":"00112233445566778899aabbccddeeff","b":"hi","t":"2026-12-07T10:00:00Z"}`))
	f.Add([]byte(`{"k":"name","b":"trip"}`))
	f.Add([]byte(`{"k":"name","b":"no spaces allowed"}`))
	sum := sha256.Sum256([]byte("ciphertext"))
	gf := &content.GroupFile{File: &content.File{Blob: hex.EncodeToString(sum[:]), Key: make([]byte, filecrypt.KeySize), SHA256: sum[:],
		Size: filecrypt.CiphertextSize(10), Name: "a.txt"}, Capabilities: map[string][]byte{"u1": []byte("cap")}}
	if b, err := json.Marshal(groupText{Kind: "file", ID: "00112233445566778899aabbccddeeff", File: gf}); err == nil {
		f.Add(b)
	} else {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseGroupText(b)
		if err != nil {
			return
		}
		if m.Kind != "file" && m.File != nil {
			t.Fatalf("accepted a file on a %q message", m.Kind)
		}
		switch m.Kind {
		case "text":
			if CheckText(m.Body) != nil {
				t.Fatalf("accepted text %q", m.Body)
			}
		case "file":
			if m.File == nil || m.Body != "" || !content.SafeFileName(m.File.File.Name) {
				t.Fatalf("accepted file %+v", m)
			}
		case "name":
			if checkGroupName(m.Body) != nil {
				t.Fatalf("accepted name %q", m.Body)
			}
		default:
			t.Fatalf("accepted kind %q", m.Kind)
		}
	})
}

// TestCredentialBindsTheLeafKey: a credential verifies only for the signature key its
// identity key signed, and not once any field is changed.
func TestCredentialBindsTheLeafKey(t *testing.T) {
	id, err := keys.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	s := &state{UserID: "b0b", DeviceID: 2}
	if s.Identity, err = id.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	dev, mid, err := s.mlsState()
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCredential(dev.Credential)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.verify(mid.SignaturePublicKey()); err != nil {
		t.Fatalf("own credential: %v", err)
	}
	validate := (&state{UserID: "someone", DeviceID: 1}).credentialValidator()
	if err := validate(credentialBasic, dev.Credential, nil, mid.SignaturePublicKey()); err != nil {
		t.Fatalf("a stranger's validator refuses a good credential: %v", err)
	}
	forged := bytes.Clone(dev.Credential)
	forged[5] ^= 1 // the user id
	if err := validate(credentialBasic, forged, nil, mid.SignaturePublicKey()); !errors.Is(err, errBadCredential) {
		t.Fatalf("a credential naming another account verified: %v", err)
	}
	if err := validate(credentialBasic, dev.Credential, nil, append([]byte{4}, make([]byte, 64)...)); !errors.Is(err, errBadCredential) {
		t.Fatalf("a credential verified for another signature key: %v", err)
	}
	if err := validate(2, dev.Credential, nil, mid.SignaturePublicKey()); !errors.Is(err, errBadCredential) {
		t.Fatalf("an X.509 credential type was accepted: %v", err)
	}
	// A device whose key this device pinned cannot appear with another key.
	pinned := &state{UserID: "someone", DeviceID: 1, Contacts: map[string]*contact{"bob": {UserID: "b0b", Devices: map[uint32]*peerDevice{2: {IdentityKey: append([]byte{4}, make([]byte, 64)...)}}}}}
	if err := pinned.credentialValidator()(credentialBasic, dev.Credential, nil, mid.SignaturePublicKey()); !errors.Is(err, errBadCredential) {
		t.Fatalf("a leaf contradicting the pinned key was accepted: %v", err)
	}
}
