package ratchet_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"log"

	"github.com/guardyn/guardyn/libs/crypto/ratchet"
)

func Example() {
	// Normally both come out of PQXDH: the shared secret and Bob's signed prekey.
	sharedKey := make([]byte, 32)
	rand.Read(sharedKey)
	bobPrekey, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	cfg := ratchet.Config{HeaderEncryption: true}
	alice, err := ratchet.NewInitiator(sharedKey, bobPrekey.PublicKey(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	bob, err := ratchet.NewResponder(sharedKey, bobPrekey, cfg)
	if err != nil {
		log.Fatal(err)
	}

	ad := []byte("identity keys of both parties")
	msg, err := alice.Encrypt(nil, []byte("hello Bob"), ad)
	if err != nil {
		log.Fatal(err)
	}
	plaintext, err := bob.Decrypt(nil, msg, ad)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", plaintext)

	// A replay is refused and changes nothing.
	_, err = bob.Decrypt(nil, msg, ad)
	fmt.Println(err)
	// Output:
	// hello Bob
	// message 0: ratchet: message key already used or discarded
}
