package pqxdh

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys/keystest"
)

// Regenerate the frozen vectors (only after a deliberate protocol change) with:
//
//	go test ./libs/crypto/pqxdh -run TestKnownAnswers -update-kat
var updateKAT = flag.Bool("update-kat", false, "rewrite testdata/kat.json from the current code")

const katPath = "testdata/kat.json"

// katVector pins PQXDH's output for fixed inputs. Keys come from keystest labels; the ML-KEM
// encapsulation randomness is SHA-256(encaps label), fed to mlkemtest.Encapsulate768.
type katVector struct {
	Name           string `json:"name"`
	Initiator      string `json:"initiator"`       // keystest.Identity label of IK_A
	Responder      string `json:"responder"`       // keystest.NewDevice label of Bob
	Ephemeral      string `json:"ephemeral"`       // keystest.ECDHKey label of EK_A
	Encaps         string `json:"encaps"`          // label of the encapsulation randomness
	OneTimePreKeys bool   `json:"one_time_prekey"` // bundle with OPK and one-time KEM key, or last resort
	SharedKey      string `json:"shared_key"`      // hex SK
	AssociatedData string `json:"associated_data"` // hex AD
	Header         string `json:"header"`          // hex encoded Header
}

func runKAT(t *testing.T, v katVector) (sk, ad, header []byte) {
	t.Helper()
	bob := keystest.NewDevice(v.Responder)
	bundle := bob.LastResortBundle
	if v.OneTimePreKeys {
		bundle = bob.Bundle
	}
	random := sha256.Sum256([]byte(v.Encaps))
	encaps := func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		return mlkemtest.Encapsulate768(ek, random[:])
	}
	init, err := initiate(keystest.Identity(v.Initiator), bundle, time.Now(), keystest.ECDHKey(v.Ephemeral), encaps)
	if err != nil {
		t.Fatalf("%s: initiate: %v", v.Name, err)
	}
	resp, err := Respond(bob.Identity, bob.Store, init.Header)
	if err != nil {
		t.Fatalf("%s: respond: %v", v.Name, err)
	}
	if !bytes.Equal(init.SharedKey, resp.SharedKey) {
		t.Fatalf("%s: initiator and responder disagree", v.Name)
	}
	header, err = init.Header.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return init.SharedKey, init.AssociatedData, header
}

func TestKnownAnswers(t *testing.T) {
	if *updateKAT {
		vectors := []katVector{
			{Name: "with one-time prekeys", Initiator: "alice", Responder: "bob", Ephemeral: "alice/ek/1", Encaps: "encaps/1", OneTimePreKeys: true},
			{Name: "last resort, no one-time EC prekey", Initiator: "alice", Responder: "bob", Ephemeral: "alice/ek/2", Encaps: "encaps/2"},
			{Name: "other pair", Initiator: "carol", Responder: "dave", Ephemeral: "carol/ek/1", Encaps: "encaps/3", OneTimePreKeys: true},
		}
		for i := range vectors {
			sk, ad, h := runKAT(t, vectors[i])
			vectors[i].SharedKey = hex.EncodeToString(sk)
			vectors[i].AssociatedData = hex.EncodeToString(ad)
			vectors[i].Header = hex.EncodeToString(h)
		}
		out, err := json.MarshalIndent(vectors, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(katPath, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(katPath)
	if err != nil {
		t.Fatal(err)
	}
	var vectors []katVector
	if err := json.Unmarshal(data, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vectors {
		sk, ad, h := runKAT(t, v)
		for _, c := range []struct {
			what      string
			got, want string
		}{
			{"shared key", hex.EncodeToString(sk), v.SharedKey},
			{"associated data", hex.EncodeToString(ad), v.AssociatedData},
			{"header", hex.EncodeToString(h), v.Header},
		} {
			if c.got != c.want {
				t.Errorf("%s: %s\n got %s\nwant %s", v.Name, c.what, c.got, c.want)
			}
		}
	}
}

// TestKeyScheduleByHand recomputes SK and AD for the first vector straight from their definition,
// so the frozen vectors are not merely whatever the code happened to output.
func TestKeyScheduleByHand(t *testing.T) {
	bob := keystest.NewDevice("bob")
	ikA := keystest.Identity("alice")
	ek := keystest.ECDHKey("alice/ek/1")
	random := sha256.Sum256([]byte("encaps/1"))
	ss, ct, err := mlkemtest.Encapsulate768(bob.Bundle.KEMPreKey.Key, random[:])
	if err != nil {
		t.Fatal(err)
	}
	spk, err := bob.Store.SignedPreKey(bob.Bundle.SignedPreKey.ID)
	if err != nil {
		t.Fatal(err)
	}
	opk, err := bob.Store.OneTimePreKey(bob.Bundle.OneTimePreKey.ID)
	if err != nil {
		t.Fatal(err)
	}
	dh := func(priv *ecdh.PrivateKey, pub *ecdh.PublicKey) []byte {
		out, err := priv.ECDH(pub)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ikm := bytes.Repeat([]byte{0xff}, 32)
	ikm = append(ikm, dh(ikA.ECDH(), spk.PrivateKey().PublicKey())...)
	ikm = append(ikm, dh(ek, bob.Identity.Public().ECDH())...)
	ikm = append(ikm, dh(ek, spk.PrivateKey().PublicKey())...)
	ikm = append(ikm, dh(ek, opk.PrivateKey().PublicKey())...)
	ikm = append(ikm, ss...)
	kb := sha256.Sum256(append(bob.Bundle.KEMPreKey.Key.Bytes(), ct...)) // KB = SHA-256(PQPK_B || CT)
	want, err := hkdf.Key(sha256.New, ikm, make([]byte, 32), "Guardyn_PQXDH_v2_P-256_SHA-256_ML-KEM-768"+string(kb[:]), 32)
	if err != nil {
		t.Fatal(err)
	}
	wantAD := append(append(ikA.Public().Bytes(), bob.Identity.Public().Bytes()...), kb[:]...)
	got, ad, header := runKAT(t, katVector{Name: "by hand", Initiator: "alice", Responder: "bob", Ephemeral: "alice/ek/1", Encaps: "encaps/1", OneTimePreKeys: true})
	if !bytes.Equal(got, want) {
		t.Fatal("SK differs from the documented key schedule")
	}
	if !bytes.Equal(ad, wantAD) {
		t.Fatal("AD differs from IK_A || IK_B || KB")
	}
	if !bytes.HasSuffix(header, ct) {
		t.Fatal("header does not end with the KEM ciphertext")
	}
}
