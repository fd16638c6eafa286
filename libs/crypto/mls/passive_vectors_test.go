package mls_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/mls"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
)

type passiveCase struct {
	Suite          uint16   `json:"cipher_suite"`
	KeyPackage     hexBytes `json:"key_package"`
	SignaturePriv  hexBytes `json:"signature_priv"`
	EncryptionPriv hexBytes `json:"encryption_priv"`
	InitPriv       hexBytes `json:"init_priv"`
	Welcome        hexBytes `json:"welcome"`
	RatchetTree    hexBytes `json:"ratchet_tree"`
	ExternalPSKs   []struct {
		ID  hexBytes `json:"psk_id"`
		PSK hexBytes `json:"psk"`
	} `json:"external_psks"`
	InitialEpochAuthenticator hexBytes `json:"initial_epoch_authenticator"`
	Epochs                    []struct {
		Proposals          []hexBytes `json:"proposals"`
		Commit             hexBytes   `json:"commit"`
		EpochAuthenticator hexBytes   `json:"epoch_authenticator"`
	} `json:"epochs"`
}

// runPassive joins from the Welcome and follows every epoch, checking the
// epoch authenticator each time.
func runPassive(c *passiveCase) error {
	_, err := runPassiveTrusting(c, nil)
	return err
}

// runPassiveTrusting is runPassive for a member that trusts only the given
// external senders (nil: those the group lists); it returns the group.
func runPassiveTrusting(c *passiveCase, trusted [][]byte) (*mls.Group, error) {
	kp, err := mls.RestoreKeyPackage(c.KeyPackage, c.InitPriv, c.EncryptionPriv, c.SignaturePriv)
	if err != nil {
		return nil, fmt.Errorf("restore key package: %w", err)
	}
	// The key packages of these vectors were made for 2023-03 to 2024-03.
	vectorTime := func() time.Time { return time.Date(2023, 6, 1, 0, 0, 0, 0, time.UTC) }
	opts := &mls.JoinOptions{RatchetTree: c.RatchetTree, ExternalPSKs: map[string][]byte{}, Now: vectorTime, TrustedExternalSenders: trusted}
	for _, p := range c.ExternalPSKs {
		opts.ExternalPSKs[string(p.ID)] = p.PSK
	}
	g, err := mls.Join(kp, c.Welcome, trustAll, opts)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	if !bytes.Equal(g.EpochAuthenticator(), c.InitialEpochAuthenticator) {
		return nil, fmt.Errorf("initial epoch authenticator differs")
	}
	for i, ep := range c.Epochs {
		for j, p := range ep.Proposals {
			if _, err := g.Process(p); err != nil {
				return nil, fmt.Errorf("epoch %d proposal %d: %w", i, j, err)
			}
		}
		r, err := g.Process(ep.Commit)
		if err != nil {
			return nil, fmt.Errorf("epoch %d commit: %w", i, err)
		}
		if !r.NewEpoch {
			return nil, fmt.Errorf("epoch %d: commit did not advance the epoch", i)
		}
		if !bytes.Equal(g.EpochAuthenticator(), ep.EpochAuthenticator) {
			return nil, fmt.Errorf("epoch %d: epoch authenticator differs", i)
		}
	}
	return g, nil
}

func testPassiveFile(t *testing.T, name string) {
	var cases []passiveCase
	loadVectors(t, name, &cases)
	count := caseCounter{}
	failed := map[suite.ID]int{}
	for i := range cases {
		c := &cases[i]
		if err := runPassive(c); err != nil {
			failed[suite.ID(c.Suite)]++
			if failed[suite.ID(c.Suite)] <= 2 {
				t.Errorf("%s case %d (suite %d): %v", name, i, c.Suite, err)
			}
		}
		count[suite.ID(c.Suite)]++
	}
	count.log(t, name)
	if len(failed) > 0 {
		t.Errorf("%s: failures per suite: %v", name, failed)
	}
}

func TestVectorsPassiveClientWelcome(t *testing.T) {
	testPassiveFile(t, "passive-client-welcome.json")
}

func TestVectorsPassiveClientHandlingCommit(t *testing.T) {
	testPassiveFile(t, "passive-client-handling-commit.json")
}

func TestVectorsPassiveClientRandom(t *testing.T) {
	testPassiveFile(t, "passive-client-random.json")
}

func TestVectorsWelcome(t *testing.T) {
	var cases []struct {
		Suite      uint16   `json:"cipher_suite"`
		InitPriv   hexBytes `json:"init_priv"`
		KeyPackage hexBytes `json:"key_package"`
		SignerPub  hexBytes `json:"signer_pub"`
		Welcome    hexBytes `json:"welcome"`
	}
	loadVectors(t, "welcome.json", &cases)
	count := caseCounter{}
	for _, c := range cases {
		if err := mls.CheckWelcomeVector(c.Suite, c.KeyPackage, c.InitPriv, c.SignerPub, c.Welcome); err != nil {
			t.Errorf("suite %d: %v", c.Suite, err)
		}
		count[suite.ID(c.Suite)]++
	}
	count.log(t, "welcome.json")
}

func TestVectorsInteropPassive(t *testing.T) {
	for _, name := range []string{"welcome_join.json", "application.json", "commit.json", "external_join.json", "external_proposals.json", "reinit.json", "branch.json"} {
		t.Run(name, func(t *testing.T) { testPassiveFile(t, "interop-passive/"+name) })
	}
}

// TestPassiveDetectsTampering checks that the passive runner fails when an
// expected value or a commit is altered, so that its passes mean something.
func TestPassiveDetectsTampering(t *testing.T) {
	var cases []passiveCase
	loadVectors(t, "passive-client-handling-commit.json", &cases)
	c := cases[len(cases)-1]
	if err := runPassive(&c); err != nil {
		t.Fatalf("untampered case: %v", err)
	}
	last := len(c.Epochs) - 1
	auth := bytes.Clone(c.Epochs[last].EpochAuthenticator)
	c.Epochs[last].EpochAuthenticator[0] ^= 1
	if err := runPassive(&c); err == nil {
		t.Error("altered epoch authenticator accepted")
	}
	c.Epochs[last].EpochAuthenticator = auth
	commit := bytes.Clone(c.Epochs[last].Commit)
	c.Epochs[last].Commit[len(commit)-5] ^= 1
	if err := runPassive(&c); err == nil {
		t.Error("altered commit accepted")
	}
	c.Epochs[last].Commit = commit
	c.Welcome[len(c.Welcome)-3] ^= 1
	if err := runPassive(&c); err == nil {
		t.Error("altered welcome accepted")
	}
}
