package keys_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
)

// A device signs a login challenge for the auth service, which verifies it against the identity
// key registered for the device. The same signature does not verify for another purpose.
func ExampleIdentity_Sign() {
	device, err := keys.GenerateIdentity()
	if err != nil {
		log.Fatal(err)
	}
	challenge := []byte("nonce from the auth service")
	sig, err := device.Sign(keys.ContextLoginChallenge, challenge)
	if err != nil {
		log.Fatal(err)
	}

	// Server side: only the 65-byte public key is stored.
	registered, err := keys.ParseIdentityKey(device.Public().Bytes())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("login:", registered.Verify(keys.ContextLoginChallenge, challenge, sig))
	err = registered.Verify(keys.ContextDeviceLink, challenge, sig)
	fmt.Println("as a device link:", errors.Is(err, keys.ErrBadSignature))
	// Output:
	// login: <nil>
	// as a device link: true
}

// A device fills its prekey store, uploads the public halves and persists the private ones.
func ExamplePreKeyStore() {
	device, err := keys.GenerateIdentity()
	if err != nil {
		log.Fatal(err)
	}
	store := keys.NewPreKeyStore()
	spk, err := store.GenerateSignedPreKey(device, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	oneTime, err := store.GenerateOneTimePreKeys(100)
	if err != nil {
		log.Fatal(err)
	}
	kem, err := store.GenerateKEMPreKeys(device, 100, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	lastResort, err := store.GenerateLastResortKEMPreKey(device, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("upload:", spk.ID, len(oneTime), len(kem), lastResort.LastResort)

	saved, err := store.MarshalBinary() // secret: keep it in encrypted local storage
	if err != nil {
		log.Fatal(err)
	}
	restored, err := keys.ParsePreKeyStore(saved)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(restored.Counts())
	// Output:
	// upload: 1 100 100 true
	// 100 100
}
