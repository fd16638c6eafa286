package session_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/session"
)

// Two devices that have never met set up a session from a bundle, talk, and survive a restart.
func Example() {
	check := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}

	// Bob's device creates its identity and prekeys and uploads the public halves.
	bob, err := keys.GenerateIdentity()
	check(err)
	bobStore := keys.NewPreKeyStore()
	spk, err := bobStore.GenerateSignedPreKey(bob, time.Now())
	check(err)
	opks, err := bobStore.GenerateOneTimePreKeys(10)
	check(err)
	kems, err := bobStore.GenerateKEMPreKeys(bob, 10, time.Now())
	check(err)
	_, err = bobStore.GenerateLastResortKEMPreKey(bob, time.Now())
	check(err)

	// Alice fetches Bob's bundle from the server and starts a session.
	bundle := &keys.Bundle{IdentityKey: bob.Public(), SignedPreKey: spk, OneTimePreKey: opks[0], KEMPreKey: kems[0]}
	alice, err := keys.GenerateIdentity()
	check(err)
	cfg := session.Config{HeaderEncryption: true}
	aliceSession, err := session.Initiate(alice, bundle, cfg)
	check(err)
	first, err := aliceSession.Encrypt(nil, []byte("hello Bob"))
	check(err)

	// Bob accepts the session from the first message; the one-time prekeys are now consumed.
	bobSession, plaintext, err := session.Accept(bob, bobStore, first, alice.Public(), cfg)
	check(err)
	fmt.Printf("Bob reads %q from a verified sender: %v\n", plaintext, bobSession.RemoteIdentity().Equal(alice.Public()))
	oneTime, kemOneTime := bobStore.Counts()
	fmt.Println("one-time prekeys left:", oneTime, kemOneTime)

	reply, err := bobSession.Encrypt(nil, []byte("hi Alice"))
	check(err)
	plaintext, err = aliceSession.Decrypt(nil, reply)
	check(err)
	fmt.Printf("Alice reads %q\n", plaintext)

	// Alice's app restarts: the session is saved and restored.
	saved, err := aliceSession.MarshalBinary()
	check(err)
	aliceSession, err = session.Unmarshal(saved)
	check(err)
	msg, err := aliceSession.Encrypt(nil, []byte("still here"))
	check(err)
	plaintext, err = bobSession.Decrypt(nil, msg)
	check(err)
	fmt.Printf("Bob reads %q\n", plaintext)

	// A replayed message is rejected.
	_, err = bobSession.Decrypt(nil, msg)
	fmt.Println("replay rejected:", errors.Is(err, session.ErrDuplicate))

	// Output:
	// Bob reads "hello Bob" from a verified sender: true
	// one-time prekeys left: 9 9
	// Alice reads "hi Alice"
	// Bob reads "still here"
	// replay rejected: true
}
