package mls_test

import (
	"fmt"
	"log"

	"github.com/guardyn/guardyn/libs/crypto/mls"
)

// A three-member group goes through add, message, remove and update. The
// Delivery Service is played by hand: each commit is merged by its sender
// and processed by every other member.
func Example() {
	const suite = mls.P256AES128GCMSHA256P256
	newMember := func(name string) (*mls.Identity, *mls.KeyPackage) {
		id, err := mls.NewIdentity(suite, []byte(name))
		if err != nil {
			log.Fatal(err)
		}
		kp, err := id.NewKeyPackage(0, 1<<62)
		if err != nil {
			log.Fatal(err)
		}
		return id, kp
	}
	// The application's Authentication Service decides who may be a
	// member; here, a fixed directory of basic credentials.
	directory := map[string]bool{"alice": true, "bob": true, "carol": true}
	validate := func(_ uint16, identity []byte, _ [][]byte, _ []byte) error {
		if !directory[string(identity)] {
			return fmt.Errorf("%q is not in the directory", identity)
		}
		return nil
	}
	aliceID, _ := newMember("alice")
	_, bobKP := newMember("bob")
	_, carolKP := newMember("carol")

	alice, err := mls.NewGroup(aliceID, []byte("team"), validate)
	if err != nil {
		log.Fatal(err)
	}
	// Alice adds Bob and Carol in one commit; they join from the Welcome.
	res, err := alice.Commit(mls.CommitOptions{Add: [][]byte{bobKP.Bytes(), carolKP.Bytes()}, InlineTree: true})
	if err != nil {
		log.Fatal(err)
	}
	if err := alice.MergePendingCommit(); err != nil {
		log.Fatal(err)
	}
	bob, err := mls.Join(bobKP, res.Welcome, validate, nil)
	if err != nil {
		log.Fatal(err)
	}
	carol, err := mls.Join(carolKP, res.Welcome, validate, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("epoch", alice.Epoch(), "members", len(alice.Members()))

	// Bob sends a message; Alice and Carol read it.
	msg, err := bob.ProtectApplication([]byte("hello"), nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, g := range []*mls.Group{alice, carol} {
		r, err := g.Process(msg)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("leaf %d read %q from leaf %d\n", g.LeafIndex(), r.Application, r.Sender)
	}

	// Alice removes Bob.
	res, err = alice.Commit(mls.CommitOptions{Remove: []uint32{bob.LeafIndex()}})
	if err != nil {
		log.Fatal(err)
	}
	if err := alice.MergePendingCommit(); err != nil {
		log.Fatal(err)
	}
	if _, err := carol.Process(res.Commit); err != nil {
		log.Fatal(err)
	}
	r, err := bob.Process(res.Commit)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("bob removed:", r.Removed)

	// Carol updates her leaf keys with an empty commit carrying a path.
	res, err = carol.Commit(mls.CommitOptions{UpdatePath: true})
	if err != nil {
		log.Fatal(err)
	}
	if err := carol.MergePendingCommit(); err != nil {
		log.Fatal(err)
	}
	if _, err := alice.Process(res.Commit); err != nil {
		log.Fatal(err)
	}
	a, _ := alice.Export("example", nil, 16)
	c, _ := carol.Export("example", nil, 16)
	fmt.Println("epoch", alice.Epoch(), "members", len(alice.Members()), "same exporter:", string(a) == string(c))
	// Output:
	// epoch 1 members 3
	// leaf 0 read "hello" from leaf 1
	// leaf 2 read "hello" from leaf 1
	// bob removed: true
	// epoch 3 members 2 same exporter: true
}
