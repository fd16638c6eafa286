package keysched

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

func load(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
}

func mustSuite(t *testing.T, id uint16) *suite.Suite {
	t.Helper()
	s, err := suite.New(suite.ID(id))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestKeyScheduleVectors chains every epoch of every suite from the initial
// init_secret, so each epoch depends on the previous one being right.
func TestKeyScheduleVectors(t *testing.T) {
	var cases []struct {
		Suite             uint16   `json:"cipher_suite"`
		GroupID           hexBytes `json:"group_id"`
		InitialInitSecret hexBytes `json:"initial_init_secret"`
		Epochs            []struct {
			TreeHash                hexBytes `json:"tree_hash"`
			CommitSecret            hexBytes `json:"commit_secret"`
			PSKSecret               hexBytes `json:"psk_secret"`
			ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
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
				Label   string   `json:"label"`
				Context hexBytes `json:"context"`
				Length  int      `json:"length"`
				Secret  hexBytes `json:"secret"`
			} `json:"exporter"`
		} `json:"epochs"`
	}
	load(t, "key-schedule.json", &cases)
	if len(cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range cases {
		s := mustSuite(t, c.Suite)
		initSecret := []byte(c.InitialInitSecret)
		for n, ep := range c.Epochs {
			gc := wire.Encode(&wire.GroupContext{
				Version: wire.ProtocolVersion10, CipherSuite: c.Suite, GroupID: c.GroupID, Epoch: uint64(n),
				TreeHash: ep.TreeHash, ConfirmedTranscriptHash: ep.ConfirmedTranscriptHash,
			})
			e := Next(s, initSecret, ep.CommitSecret, ep.PSKSecret, gc)
			_, pub, err := ExternalPub(s, e.ExternalSecret)
			if err != nil {
				t.Fatalf("suite %d epoch %d: %v", c.Suite, n, err)
			}
			for _, check := range []struct {
				name      string
				got, want []byte
			}{
				{"joiner_secret", e.JoinerSecret, ep.JoinerSecret},
				{"welcome_secret", e.WelcomeSecret, ep.WelcomeSecret},
				{"welcome_secret from joiner", WelcomeSecret(s, ep.JoinerSecret, ep.PSKSecret), ep.WelcomeSecret},
				{"init_secret", e.InitSecret, ep.InitSecret},
				{"sender_data_secret", e.SenderDataSecret, ep.SenderDataSecret},
				{"encryption_secret", e.EncryptionSecret, ep.EncryptionSecret},
				{"exporter_secret", e.ExporterSecret, ep.ExporterSecret},
				{"epoch_authenticator", e.EpochAuthenticator, ep.EpochAuthenticator},
				{"external_secret", e.ExternalSecret, ep.ExternalSecret},
				{"confirmation_key", e.ConfirmationKey, ep.ConfirmationKey},
				{"membership_key", e.MembershipKey, ep.MembershipKey},
				{"resumption_psk", e.ResumptionPSK, ep.ResumptionPSK},
				{"external_pub", pub, ep.ExternalPub},
				{"exporter", Export(s, e.ExporterSecret, ep.Exporter.Label, ep.Exporter.Context, ep.Exporter.Length), ep.Exporter.Secret},
			} {
				if !bytes.Equal(check.got, check.want) {
					t.Errorf("suite %d epoch %d: %s = %x, want %x", c.Suite, n, check.name, check.got, check.want)
				}
			}
			initSecret = e.InitSecret
		}
	}
}

func TestTranscriptHashVectors(t *testing.T) {
	var cases []struct {
		Suite                        uint16   `json:"cipher_suite"`
		ConfirmationKey              hexBytes `json:"confirmation_key"`
		AuthenticatedContent         hexBytes `json:"authenticated_content"`
		InterimTranscriptHashBefore  hexBytes `json:"interim_transcript_hash_before"`
		ConfirmedTranscriptHashAfter hexBytes `json:"confirmed_transcript_hash_after"`
		InterimTranscriptHashAfter   hexBytes `json:"interim_transcript_hash_after"`
	}
	load(t, "transcript-hashes.json", &cases)
	if len(cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range cases {
		s := mustSuite(t, c.Suite)
		ac, err := wire.DecodeAuthenticatedContent(c.AuthenticatedContent)
		if err != nil {
			t.Fatalf("suite %d: %v", c.Suite, err)
		}
		confirmed := ConfirmedTranscriptHash(s, c.InterimTranscriptHashBefore, ac)
		if !bytes.Equal(confirmed, c.ConfirmedTranscriptHashAfter) {
			t.Errorf("suite %d: confirmed transcript hash %x, want %x", c.Suite, confirmed, c.ConfirmedTranscriptHashAfter)
		}
		if err := VerifyConfirmationTag(s, c.ConfirmationKey, confirmed, ac.Auth.ConfirmationTag); err != nil {
			t.Errorf("suite %d: %v", c.Suite, err)
		}
		if got := InterimTranscriptHash(s, confirmed, ac.Auth.ConfirmationTag); !bytes.Equal(got, c.InterimTranscriptHashAfter) {
			t.Errorf("suite %d: interim transcript hash %x, want %x", c.Suite, got, c.InterimTranscriptHashAfter)
		}
	}
}

func TestConfirmationTagRejects(t *testing.T) {
	s := mustSuite(t, 1)
	key, hash := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	tag := ConfirmationTag(s, key, hash)
	if err := VerifyConfirmationTag(s, key, hash, tag); err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(tag)
	flipped[len(flipped)-1] ^= 0x80
	for name, bad := range map[string][]byte{"flipped bit": flipped, "truncated": tag[:len(tag)-1], "empty": nil} {
		if err := VerifyConfirmationTag(s, key, hash, bad); !errors.Is(err, ErrBadConfirmationTag) {
			t.Errorf("%s tag: %v, want ErrBadConfirmationTag", name, err)
		}
	}
	if err := VerifyConfirmationTag(s, key, bytes.Repeat([]byte{3}, 32), tag); !errors.Is(err, ErrBadConfirmationTag) {
		t.Errorf("other transcript: %v, want ErrBadConfirmationTag", err)
	}
}

func TestPSKSecret(t *testing.T) {
	s := mustSuite(t, 1)
	none, err := PSKSecret(s, nil)
	if err != nil || !bytes.Equal(none, make([]byte, s.HashSize())) {
		t.Errorf("no psks: %x, %v; want %d zero bytes", none, err, s.HashSize())
	}
	psk := func(id string) PSK {
		return PSK{ID: wire.PreSharedKeyID{Type: wire.PSKExternal, PSKID: []byte(id), Nonce: bytes.Repeat([]byte{7}, 32)}, Secret: []byte("secret " + id)}
	}
	ab, _ := PSKSecret(s, []PSK{psk("a"), psk("b")})
	ba, _ := PSKSecret(s, []PSK{psk("b"), psk("a")})
	if bytes.Equal(ab, ba) {
		t.Error("psk_secret ignores the order of the PSKs")
	}
	if _, err := PSKSecret(s, make([]PSK, 0x10000)); err == nil {
		t.Error("65536 psks accepted")
	}
}

func TestEraseAndClone(t *testing.T) {
	s := mustSuite(t, 1)
	e := Next(s, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), make([]byte, 32), []byte("gc"))
	c := e.Clone()
	resumption := bytes.Clone(e.ResumptionPSK)
	e.Erase()
	for name, secret := range map[string][]byte{"epoch": e.EpochSecret, "encryption": e.EncryptionSecret, "init": e.InitSecret,
		"sender data": e.SenderDataSecret, "exporter": e.ExporterSecret, "membership": e.MembershipKey} {
		if !bytes.Equal(secret, make([]byte, len(secret))) {
			t.Errorf("%s secret not erased", name)
		}
	}
	if !bytes.Equal(e.ResumptionPSK, resumption) {
		t.Error("resumption psk erased; later epochs need it")
	}
	if bytes.Equal(c.EpochSecret, make([]byte, len(c.EpochSecret))) {
		t.Error("erasing the original erased its clone")
	}
}
