package mls_test

import (
	"errors"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/keysched"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

func TestVectorsKeySchedule(t *testing.T) {
	var cases []struct {
		Suite             uint16   `json:"cipher_suite"`
		GroupID           hexBytes `json:"group_id"`
		InitialInitSecret hexBytes `json:"initial_init_secret"`
		Epochs            []struct {
			TreeHash                hexBytes `json:"tree_hash"`
			CommitSecret            hexBytes `json:"commit_secret"`
			PSKSecret               hexBytes `json:"psk_secret"`
			ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
			GroupContext            hexBytes `json:"group_context"`
			JoinerSecret            hexBytes `json:"joiner_secret"`
			WelcomeSecret           hexBytes `json:"welcome_secret"`
			InitSecret              hexBytes `json:"init_secret"`
			SenderDataSecret        hexBytes `json:"sender_data_secret"`
			EncryptionSecret        hexBytes `json:"encryption_secret"`
			ExporterSecret          hexBytes `json:"exporter_secret"`
			EpochAuthenticator      hexBytes `json:"epoch_authenticator"`
			ExternalSecret          hexBytes `json:"external_secret"`
			ConfirmationKey         hexBytes `json:"confirmation_key"`
			MembershipKey           hexBytes `json:"membership_key"`
			ResumptionPSK           hexBytes `json:"resumption_psk"`
			ExternalPub             hexBytes `json:"external_pub"`
			Exporter                struct {
				// The label is used as the JSON string, not hex-decoded.
				Label   string   `json:"label"`
				Context hexBytes `json:"context"`
				Length  int      `json:"length"`
				Secret  hexBytes `json:"secret"`
			} `json:"exporter"`
		} `json:"epochs"`
	}
	loadVectors(t, "key-schedule.json", &cases)
	count := caseCounter{}
	for _, c := range cases {
		s := mustSuite(t, c.Suite)
		initSecret := []byte(c.InitialInitSecret)
		for n, ep := range c.Epochs {
			gc := &wire.GroupContext{
				Version: wire.ProtocolVersion10, CipherSuite: c.Suite, GroupID: c.GroupID, Epoch: uint64(n),
				TreeHash: ep.TreeHash, ConfirmedTranscriptHash: ep.ConfirmedTranscriptHash,
			}
			gcBytes := wire.Encode(gc)
			checkEq(t, "group_context", gcBytes, ep.GroupContext)
			e := keysched.Next(s, initSecret, ep.CommitSecret, ep.PSKSecret, gcBytes)
			checkEq(t, "joiner_secret", e.JoinerSecret, ep.JoinerSecret)
			checkEq(t, "welcome_secret", e.WelcomeSecret, ep.WelcomeSecret)
			checkEq(t, "welcome_secret from joiner", keysched.WelcomeSecret(s, ep.JoinerSecret, ep.PSKSecret), ep.WelcomeSecret)
			checkEq(t, "init_secret", e.InitSecret, ep.InitSecret)
			checkEq(t, "sender_data_secret", e.SenderDataSecret, ep.SenderDataSecret)
			checkEq(t, "encryption_secret", e.EncryptionSecret, ep.EncryptionSecret)
			checkEq(t, "exporter_secret", e.ExporterSecret, ep.ExporterSecret)
			checkEq(t, "epoch_authenticator", e.EpochAuthenticator, ep.EpochAuthenticator)
			checkEq(t, "external_secret", e.ExternalSecret, ep.ExternalSecret)
			checkEq(t, "confirmation_key", e.ConfirmationKey, ep.ConfirmationKey)
			checkEq(t, "membership_key", e.MembershipKey, ep.MembershipKey)
			checkEq(t, "resumption_psk", e.ResumptionPSK, ep.ResumptionPSK)
			_, pub, err := keysched.ExternalPub(s, e.ExternalSecret)
			if err != nil {
				t.Fatalf("suite %d: external pub: %v", c.Suite, err)
			}
			checkEq(t, "external_pub", pub, ep.ExternalPub)
			x := ep.Exporter
			checkEq(t, "exporter", keysched.Export(s, e.ExporterSecret, x.Label, x.Context, x.Length), x.Secret)
			initSecret = e.InitSecret
		}
		count[s.ID()]++
	}
	count.log(t, "key-schedule.json")
}

func TestVectorsPSKSecret(t *testing.T) {
	var cases []struct {
		Suite uint16 `json:"cipher_suite"`
		PSKs  []struct {
			ID    hexBytes `json:"psk_id"`
			PSK   hexBytes `json:"psk"`
			Nonce hexBytes `json:"psk_nonce"`
		} `json:"psks"`
		PSKSecret hexBytes `json:"psk_secret"`
	}
	loadVectors(t, "psk_secret.json", &cases)
	count := caseCounter{}
	for _, c := range cases {
		s := mustSuite(t, c.Suite)
		var psks []keysched.PSK
		for _, p := range c.PSKs {
			psks = append(psks, keysched.PSK{
				ID:     wire.PreSharedKeyID{Type: wire.PSKExternal, PSKID: p.ID, Nonce: p.Nonce},
				Secret: p.PSK,
			})
		}
		got, err := keysched.PSKSecret(s, psks)
		if err != nil {
			t.Fatal(err)
		}
		checkEq(t, "psk_secret", got, c.PSKSecret)
		count[s.ID()]++
	}
	count.log(t, "psk_secret.json")
}

func TestVectorsTranscriptHashes(t *testing.T) {
	var cases []struct {
		Suite                        uint16   `json:"cipher_suite"`
		ConfirmationKey              hexBytes `json:"confirmation_key"`
		AuthenticatedContent         hexBytes `json:"authenticated_content"`
		InterimTranscriptHashBefore  hexBytes `json:"interim_transcript_hash_before"`
		ConfirmedTranscriptHashAfter hexBytes `json:"confirmed_transcript_hash_after"`
		InterimTranscriptHashAfter   hexBytes `json:"interim_transcript_hash_after"`
	}
	loadVectors(t, "transcript-hashes.json", &cases)
	count := caseCounter{}
	for _, c := range cases {
		s := mustSuite(t, c.Suite)
		ac, err := wire.DecodeAuthenticatedContent(c.AuthenticatedContent)
		if err != nil {
			t.Fatalf("suite %d: %v", c.Suite, err)
		}
		if ac.Content.ContentType != wire.ContentCommit {
			t.Fatalf("suite %d: content type %d, want commit", c.Suite, ac.Content.ContentType)
		}
		confirmed := keysched.ConfirmedTranscriptHash(s, c.InterimTranscriptHashBefore, ac)
		checkEq(t, "confirmed_transcript_hash_after", confirmed, c.ConfirmedTranscriptHashAfter)
		if err := keysched.VerifyConfirmationTag(s, c.ConfirmationKey, confirmed, ac.Auth.ConfirmationTag); err != nil {
			t.Errorf("suite %d: %v", c.Suite, err)
		}
		bad := append([]byte{}, ac.Auth.ConfirmationTag...)
		bad[0] ^= 1
		if err := keysched.VerifyConfirmationTag(s, c.ConfirmationKey, confirmed, bad); !errors.Is(err, keysched.ErrBadConfirmationTag) {
			t.Errorf("suite %d: tampered tag: %v", c.Suite, err)
		}
		checkEq(t, "interim_transcript_hash_after", keysched.InterimTranscriptHash(s, confirmed, ac.Auth.ConfirmationTag), c.InterimTranscriptHashAfter)
		count[s.ID()]++
	}
	count.log(t, "transcript-hashes.json")
}
