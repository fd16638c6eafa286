// Package keysched is the MLS key schedule ([RFC 9420, Section 8]): from the
// previous epoch's init_secret, the commit secret, the PSK secret and the new
// GroupContext it derives the joiner, welcome and epoch secrets and every
// secret of the epoch, plus the exporter and the PSK secret itself.
//
// [RFC 9420, Section 8]: https://www.rfc-editor.org/rfc/rfc9420#section-8
package keysched

import (
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// ErrBadConfirmationTag means a confirmation tag did not match.
var ErrBadConfirmationTag = errors.New("mls: confirmation tag mismatch")

// Epoch holds the secrets of one epoch. It is incomparable: compare its
// fields with crypto/subtle if ever needed.
type Epoch struct {
	_ [0]func()

	JoinerSecret       []byte
	WelcomeSecret      []byte
	EpochSecret        []byte
	SenderDataSecret   []byte
	EncryptionSecret   []byte
	ExporterSecret     []byte
	ExternalSecret     []byte
	ConfirmationKey    []byte
	MembershipKey      []byte
	ResumptionPSK      []byte
	EpochAuthenticator []byte
	InitSecret         []byte // init_secret of the next epoch
}

// Erase zeroes the epoch's secrets, except the resumption PSK, which later
// epochs keep for PSK proposals.
func (e *Epoch) Erase() {
	for _, s := range [][]byte{e.JoinerSecret, e.WelcomeSecret, e.EpochSecret, e.SenderDataSecret, e.EncryptionSecret,
		e.ExporterSecret, e.ExternalSecret, e.ConfirmationKey, e.MembershipKey, e.EpochAuthenticator, e.InitSecret} {
		clear(s)
	}
}

// Clone returns an independent copy of e.
func (e *Epoch) Clone() *Epoch {
	c := &Epoch{}
	dst := []*[]byte{&c.JoinerSecret, &c.WelcomeSecret, &c.EpochSecret, &c.SenderDataSecret, &c.EncryptionSecret,
		&c.ExporterSecret, &c.ExternalSecret, &c.ConfirmationKey, &c.MembershipKey, &c.ResumptionPSK, &c.EpochAuthenticator, &c.InitSecret}
	for i, s := range [][]byte{e.JoinerSecret, e.WelcomeSecret, e.EpochSecret, e.SenderDataSecret, e.EncryptionSecret,
		e.ExporterSecret, e.ExternalSecret, e.ConfirmationKey, e.MembershipKey, e.ResumptionPSK, e.EpochAuthenticator, e.InitSecret} {
		*dst[i] = append([]byte(nil), s...)
	}
	return c
}

// JoinerSecret is joiner_secret: ExpandWithLabel(Extract(init_secret,
// commit_secret), "joiner", GroupContext, Nh).
func JoinerSecret(s *suite.Suite, initSecret, commitSecret, groupContext []byte) []byte {
	return s.ExpandWithLabel(s.Extract(initSecret, commitSecret), "joiner", groupContext, s.HashSize())
}

// FromJoiner derives an epoch from its joiner_secret, PSK secret and encoded
// GroupContext; joiners start here.
func FromJoiner(s *suite.Suite, joinerSecret, pskSecret, groupContext []byte) *Epoch {
	member := s.Extract(joinerSecret, pskSecret)
	e := &Epoch{JoinerSecret: joinerSecret}
	e.WelcomeSecret = s.DeriveSecret(member, "welcome")
	e.EpochSecret = s.ExpandWithLabel(member, "epoch", groupContext, s.HashSize())
	e.SenderDataSecret = s.DeriveSecret(e.EpochSecret, "sender data")
	e.EncryptionSecret = s.DeriveSecret(e.EpochSecret, "encryption")
	e.ExporterSecret = s.DeriveSecret(e.EpochSecret, "exporter")
	e.ExternalSecret = s.DeriveSecret(e.EpochSecret, "external")
	e.ConfirmationKey = s.DeriveSecret(e.EpochSecret, "confirm")
	e.MembershipKey = s.DeriveSecret(e.EpochSecret, "membership")
	e.ResumptionPSK = s.DeriveSecret(e.EpochSecret, "resumption")
	e.EpochAuthenticator = s.DeriveSecret(e.EpochSecret, "authentication")
	e.InitSecret = s.DeriveSecret(e.EpochSecret, "init")
	clear(member)
	return e
}

// Next derives the epoch that follows a commit, from the previous epoch's
// init_secret.
func Next(s *suite.Suite, initSecret, commitSecret, pskSecret, groupContext []byte) *Epoch {
	return FromJoiner(s, JoinerSecret(s, initSecret, commitSecret, groupContext), pskSecret, groupContext)
}

// WelcomeKeyNonce returns the key and nonce that encrypt the GroupInfo of a
// Welcome.
func WelcomeKeyNonce(s *suite.Suite, welcomeSecret []byte) (key, nonce []byte) {
	return s.ExpandWithLabel(welcomeSecret, "key", nil, s.KeySize()),
		s.ExpandWithLabel(welcomeSecret, "nonce", nil, s.NonceSize())
}

// WelcomeSecret derives welcome_secret from a joiner secret and PSK secret
// alone, for a joiner that must decrypt the GroupInfo before it knows the
// GroupContext.
func WelcomeSecret(s *suite.Suite, joinerSecret, pskSecret []byte) []byte {
	return s.DeriveSecret(s.Extract(joinerSecret, pskSecret), "welcome")
}

// Export is MLS-Exporter(label, context, length) over exporter_secret.
func Export(s *suite.Suite, exporterSecret []byte, label string, context []byte, length int) []byte {
	return s.ExpandWithLabel(s.DeriveSecret(exporterSecret, label), "exported", s.Hash(context), length)
}

// ExternalPub returns external_pub, the HPKE public key derived from
// external_secret, and its private key.
func ExternalPub(s *suite.Suite, externalSecret []byte) (priv, pub []byte, err error) {
	return s.DeriveKeyPair(externalSecret)
}

// ConfirmationTag is MAC(confirmation_key, confirmed_transcript_hash).
func ConfirmationTag(s *suite.Suite, confirmationKey, confirmedTranscriptHash []byte) []byte {
	return s.MAC(confirmationKey, confirmedTranscriptHash)
}

// VerifyConfirmationTag checks tag in constant time.
func VerifyConfirmationTag(s *suite.Suite, confirmationKey, confirmedTranscriptHash, tag []byte) error {
	if subtle.ConstantTimeCompare(ConfirmationTag(s, confirmationKey, confirmedTranscriptHash), tag) != 1 {
		return ErrBadConfirmationTag
	}
	return nil
}

// ConfirmedTranscriptHash is Hash(interim_transcript_hash ||
// ConfirmedTranscriptHashInput).
func ConfirmedTranscriptHash(s *suite.Suite, interim []byte, content *wire.AuthenticatedContent) []byte {
	return s.Hash(append(append([]byte{}, interim...), content.ConfirmedTranscriptHashInput()...))
}

// InterimTranscriptHash is Hash(confirmed_transcript_hash ||
// InterimTranscriptHashInput{confirmation_tag}).
func InterimTranscriptHash(s *suite.Suite, confirmed, confirmationTag []byte) []byte {
	w := tlscodec.NewWriter(append([]byte{}, confirmed...))
	w.Opaque(confirmationTag)
	return s.Hash(w.Bytes())
}

// PSK is a pre-shared key with its identifier.
type PSK struct {
	ID     wire.PreSharedKeyID
	Secret []byte
}

// PSKSecret chains the PSKs of a commit or Welcome into psk_secret (RFC
// 9420, Section 8.4); with no PSKs it is Nh zero bytes.
func PSKSecret(s *suite.Suite, psks []PSK) ([]byte, error) {
	if len(psks) > 0xffff {
		return nil, fmt.Errorf("mls: %d psks exceed the uint16 count", len(psks))
	}
	zero := make([]byte, s.HashSize())
	secret := zero
	for i := range psks {
		extracted := s.Extract(zero, psks[i].Secret)
		w := tlscodec.NewWriter(nil)
		psks[i].ID.Marshal(w)
		w.Uint16(uint16(i))
		w.Uint16(uint16(len(psks)))
		input := s.ExpandWithLabel(extracted, "derived psk", w.Bytes(), s.HashSize())
		secret = s.Extract(input, secret)
	}
	return secret, nil
}
