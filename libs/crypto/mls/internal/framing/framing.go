// Package framing protects and unprotects MLS handshake and application
// messages ([RFC 9420, Section 6]): signatures over FramedContentTBS,
// membership tags of PublicMessage, and the content and sender-data
// encryption of PrivateMessage under the secret tree.
//
// [RFC 9420, Section 6]: https://www.rfc-editor.org/rfc/rfc9420#section-6
package framing

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/secrettree"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/treemath"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// Errors returned (wrapped) by this package. Test for them with errors.Is;
// signature failures wrap suite.ErrBadSignature and AEAD failures
// suite.ErrDecrypt.
var (
	// ErrBadMembershipTag means a PublicMessage's membership tag is missing
	// or wrong.
	ErrBadMembershipTag = errors.New("mls: membership tag mismatch")
	// ErrNotMember means a message that must come from a member does not.
	ErrNotMember = errors.New("mls: sender is not a member")
	// ErrApplicationInPublic means application data in a PublicMessage,
	// which RFC 9420 forbids.
	ErrApplicationInPublic = errors.New("mls: application data in a public message")
)

// signatureLabel is the SignWithLabel label of FramedContentTBS.
const signatureLabel = "FramedContentTBS"

// Sign signs content as it will be sent in wire format wf and returns the
// authenticated content; a commit's confirmation tag is set by the caller
// afterwards. groupContext is the encoded GroupContext of the epoch.
func Sign(s *suite.Suite, wf wire.WireFormat, content *wire.FramedContent, sigPriv, groupContext []byte) (*wire.AuthenticatedContent, error) {
	ac := &wire.AuthenticatedContent{WireFormat: wf, Content: *content}
	sig, err := s.SignWithLabel(sigPriv, signatureLabel, ac.TBS(groupContext))
	if err != nil {
		return nil, fmt.Errorf("sign framed content: %w", err)
	}
	ac.Auth.Signature = sig
	return ac, nil
}

// VerifySignature checks ac's signature with the sender's public key.
func VerifySignature(s *suite.Suite, ac *wire.AuthenticatedContent, sigPub, groupContext []byte) error {
	if err := s.VerifyWithLabel(sigPub, signatureLabel, ac.TBS(groupContext), ac.Auth.Signature); err != nil {
		return fmt.Errorf("framed content signature: %w", err)
	}
	return nil
}

// ProtectPublic wraps ac in a PublicMessage, with a membership tag when the
// sender is a member.
func ProtectPublic(s *suite.Suite, ac *wire.AuthenticatedContent, membershipKey, groupContext []byte) (*wire.PublicMessage, error) {
	if ac.Content.ContentType == wire.ContentApplication {
		return nil, ErrApplicationInPublic
	}
	pm := &wire.PublicMessage{Content: ac.Content, Auth: ac.Auth}
	if ac.Content.Sender.Type == wire.SenderMember {
		pm.MembershipTag = s.MAC(membershipKey, ac.TBM(groupContext))
	}
	return pm, nil
}

// UnprotectPublic checks a PublicMessage's membership tag (for member
// senders) and returns its authenticated content. The signature is checked
// separately, with the sender's key, by VerifySignature.
func UnprotectPublic(s *suite.Suite, pm *wire.PublicMessage, membershipKey, groupContext []byte) (*wire.AuthenticatedContent, error) {
	if pm.Content.ContentType == wire.ContentApplication {
		return nil, ErrApplicationInPublic
	}
	ac := pm.Authenticated()
	if pm.Content.Sender.Type == wire.SenderMember {
		want := s.MAC(membershipKey, ac.TBM(groupContext))
		if subtle.ConstantTimeCompare(want, pm.MembershipTag) != 1 {
			return nil, ErrBadMembershipTag
		}
	}
	return ac, nil
}

func kindOf(ct wire.ContentType) secrettree.ContentKind {
	if ct == wire.ContentApplication {
		return secrettree.Application
	}
	return secrettree.Handshake
}

// ProtectPrivate encrypts ac (whose wire format must be PrivateMessage and
// sender a member) under the sender's next key, with padding zero bytes.
func ProtectPrivate(s *suite.Suite, ac *wire.AuthenticatedContent, tree *secrettree.Tree, senderDataSecret []byte, padding int) (*wire.PrivateMessage, error) {
	c := &ac.Content
	if c.Sender.Type != wire.SenderMember {
		return nil, ErrNotMember
	}
	kn, err := tree.Next(treemath.LeafIndex(c.Sender.Index), kindOf(c.ContentType))
	if err != nil {
		return nil, fmt.Errorf("protect: %w", err)
	}
	sd := wire.SenderData{LeafIndex: c.Sender.Index, Generation: kn.Generation}
	if _, err := rand.Read(sd.ReuseGuard[:]); err != nil {
		return nil, fmt.Errorf("protect: reuse guard: %w", err)
	}
	pm := &wire.PrivateMessage{
		GroupID: c.GroupID, Epoch: c.Epoch, ContentType: c.ContentType, AuthenticatedData: c.AuthenticatedData,
	}
	pt := wire.MarshalPrivateContent(c, &ac.Auth, padding)
	pm.Ciphertext, err = s.Seal(kn.Key, guardNonce(kn.Nonce, sd.ReuseGuard), pm.ContentAAD(), pt)
	if err != nil {
		return nil, fmt.Errorf("protect content: %w", err)
	}
	clear(kn.Key)
	key, nonce := secrettree.SenderDataKeyNonce(s, senderDataSecret, pm.Ciphertext)
	pm.EncryptedSenderData, err = s.Seal(key, nonce, pm.SenderDataAAD(), wire.Encode(&sd))
	if err != nil {
		return nil, fmt.Errorf("protect sender data: %w", err)
	}
	return pm, nil
}

// guardNonce XORs the reuse guard into the first four bytes of the nonce.
func guardNonce(nonce []byte, guard [4]byte) []byte {
	n := append([]byte{}, nonce...)
	for i := range guard {
		n[i] ^= guard[i]
	}
	return n
}

// UnprotectPrivate decrypts a PrivateMessage, passes its authenticated
// content (sender set from the sender data) to verify, and returns it. The
// sender's key for the message's generation is consumed only once the
// content has decrypted and verify has accepted it: an altered or forged
// copy leaves the secret tree unchanged, so the genuine message still
// decrypts (RFC 9420, Section 9.2). verify checks that the sender's leaf is
// occupied and the signature is that member's (see VerifyWith).
func UnprotectPrivate(s *suite.Suite, pm *wire.PrivateMessage, tree *secrettree.Tree, senderDataSecret []byte, verify func(*wire.AuthenticatedContent) error) (*wire.AuthenticatedContent, error) {
	key, nonce := secrettree.SenderDataKeyNonce(s, senderDataSecret, pm.Ciphertext)
	sdBytes, err := s.Open(key, nonce, pm.SenderDataAAD(), pm.EncryptedSenderData)
	if err != nil {
		return nil, fmt.Errorf("unprotect sender data: %w", err)
	}
	sd, err := wire.DecodeSenderData(sdBytes)
	if err != nil {
		return nil, fmt.Errorf("unprotect: %w", err)
	}
	var ac *wire.AuthenticatedContent
	err = tree.Open(treemath.LeafIndex(sd.LeafIndex), kindOf(pm.ContentType), sd.Generation, func(kn *secrettree.KeyNonce) error {
		pt, err := s.Open(kn.Key, guardNonce(kn.Nonce, sd.ReuseGuard), pm.ContentAAD(), pm.Ciphertext)
		if err != nil {
			return fmt.Errorf("unprotect content: %w", err)
		}
		c := &wire.AuthenticatedContent{
			WireFormat: wire.WirePrivateMessage,
			Content: wire.FramedContent{
				GroupID: pm.GroupID, Epoch: pm.Epoch,
				Sender:            wire.Sender{Type: wire.SenderMember, Index: sd.LeafIndex},
				AuthenticatedData: pm.AuthenticatedData, ContentType: pm.ContentType,
			},
		}
		auth, err := wire.DecodePrivateContent(pt, &c.Content)
		if err != nil {
			return fmt.Errorf("unprotect: %w", err)
		}
		c.Auth = *auth
		if err := verify(c); err != nil {
			return err
		}
		ac = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ac, nil
}

// VerifyWith returns the verify function of UnprotectPrivate for a sender
// whose signature key is known: it checks the content's signature with sigPub.
func VerifyWith(s *suite.Suite, sigPub, groupContext []byte) func(*wire.AuthenticatedContent) error {
	return func(ac *wire.AuthenticatedContent) error { return VerifySignature(s, ac, sigPub, groupContext) }
}
