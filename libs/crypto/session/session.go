// Package session runs Guardyn 1:1 end-to-end encrypted sessions between two devices: a [PQXDH]
// handshake (package pqxdh) followed by the [Double Ratchet] (package ratchet).
//
// The initiator fetches the peer's [keys.Bundle] and calls [Initiate]; every message it encrypts
// is a prekey message, carrying the PQXDH header, until the first reply decrypts. The responder
// calls [Accept] with the first prekey message it receives and the identity key it expects the
// sender to have (from an authenticated source, such as the envelope's sender certificate):
// Accept refuses any other identity before touching the prekeys, and consumes the one-time
// prekeys only once the message has authenticated. Both sides then call [Session.Encrypt] and
// [Session.Decrypt]; messages may arrive in any order, lost or duplicated (duplicates are rejected
// with [ErrDuplicate]). [Session.MarshalBinary] and [Unmarshal] persist a session across restarts.
//
// Persist the session after every Encrypt before the message leaves the device, and never
// encrypt from an older copy (see package ratchet).
//
// Every message authenticates AD = IK_A || IK_B || KB (the two identity keys and PQXDH's KEM
// binding) together with its own session-level prefix, so a message cannot move between
// sessions or change its type.
//
// Wire format of a message (version 1):
//
//	u8 version (1) | u8 type (1 prekey, 2 normal)
//	| prekey only: u16 header length | PQXDH header (pqxdh.Header encoding)
//	| ratchet message (package ratchet)
//
// A Session is not safe for concurrent use. The wire format and limits are described in
// docs/crypto/pqxdh.md.
//
// [PQXDH]: https://signal.org/docs/specifications/pqxdh/
// [Double Ratchet]: https://signal.org/docs/specifications/doubleratchet/
package session

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/pqxdh"
	"github.com/guardyn/guardyn/libs/crypto/ratchet"
)

const (
	// MaxPlaintextSize bounds one message's plaintext. Media goes through the blob store as
	// encrypted chunks; a message carries at most its key and reference, text or a small file.
	MaxPlaintextSize = 1 << 20
	// MaxMessageSize bounds an encoded message: the prekey prefix, the largest ratchet prefix
	// (encrypted header: 1 + 12 + 73 + 16) and tag (16), and MaxPlaintextSize. Decrypt and Accept
	// reject anything longer before doing any work.
	MaxMessageSize = prekeyPrefixMax + ratchetOverheadMax + MaxPlaintextSize

	messageVersion      = 1
	typePreKey     byte = 1
	typeNormal     byte = 2
	// prekeyPrefixMax is version, type, header length and the largest PQXDH header.
	prekeyPrefixMax    = 1 + 1 + 2 + pqxdh.MaxHeaderSize
	ratchetOverheadMax = 1 + 12 + 73 + 16 + 16
	normalPrefixLen    = 2
)

// Errors callers can test with errors.Is. The ratchet's errors are re-exported so callers need
// not import package ratchet; handshake errors come from packages pqxdh and keys
// ([keys.ErrUnknownPreKey], [keys.ErrPreKeyUsed], [keys.ErrBadSignature], [keys.ErrInvalidKey],
// [pqxdh.ErrMissingKEMCiphertext]).
var (
	// ErrMalformed reports a message or encoded session that does not decode.
	ErrMalformed = errors.New("session: malformed input")
	// ErrUnsupportedVersion reports a message or encoded session of a version this code does not
	// know.
	ErrUnsupportedVersion = errors.New("session: unsupported version")
	// ErrTooLarge reports a plaintext above MaxPlaintextSize or a message above MaxMessageSize.
	ErrTooLarge = errors.New("session: message too large")
	// ErrNotPreKeyMessage reports a normal message passed to Accept: only a prekey message can
	// start a session.
	ErrNotPreKeyMessage = errors.New("session: not a prekey message")
	// ErrHandshakeMismatch reports a prekey message whose PQXDH header is not the one this
	// session was created from: the peer started a new session, which the caller should Accept.
	ErrHandshakeMismatch = errors.New("session: prekey message of another handshake")
	// ErrIdentityMismatch reports a prekey message whose sender identity is not the one the
	// caller expected; Accept refuses it before looking up or consuming any prekey.
	ErrIdentityMismatch = errors.New("session: prekey message from an unexpected identity")

	// ErrDecrypt reports a message that does not authenticate: tampered, or for another session.
	ErrDecrypt = ratchet.ErrDecrypt
	// ErrDuplicate reports a message already decrypted (a replay), or one whose key was evicted.
	ErrDuplicate = ratchet.ErrDuplicate
	// ErrTooManySkipped reports a message that would skip more than Config.MaxSkip keys.
	ErrTooManySkipped = ratchet.ErrTooManySkipped
)

// Config chooses the ratchet options of a session. Both devices must use the same
// HeaderEncryption; the messaging layer turns it on. The zero value is valid.
type Config struct {
	// HeaderEncryption hides ratchet headers (ratchet key and counters) from observers.
	HeaderEncryption bool
	// MaxSkip is the most message keys skipped in one chain; 0 means ratchet.DefaultMaxSkip.
	MaxSkip int
	// MaxSkippedKeys bounds stored skipped keys across chains, oldest evicted; 0 means
	// ratchet.DefaultMaxSkippedKeys.
	MaxSkippedKeys int
	// MaxSkippedSteps and MaxSkippedAge expire skipped keys after that many receiving DH ratchet
	// steps or that long; 0 means ratchet.DefaultMaxSkippedSteps and ratchet.DefaultMaxSkippedAge.
	MaxSkippedSteps int
	MaxSkippedAge   time.Duration
}

func (c Config) ratchet() ratchet.Config {
	return ratchet.Config{HeaderEncryption: c.HeaderEncryption, MaxSkip: c.MaxSkip, MaxSkippedKeys: c.MaxSkippedKeys,
		MaxSkippedSteps: c.MaxSkippedSteps, MaxSkippedAge: c.MaxSkippedAge}
}

// PreKeyStore is what Accept needs from the responder's prekeys: lookups by id, and consuming the
// one-time keys once the first message authenticates. [keys.PreKeyStore] implements it; persist
// it after a successful Accept.
type PreKeyStore interface {
	pqxdh.PreKeyStore
	ConsumeOneTimePreKey(id uint32) error
	ConsumeKEMPreKey(id uint32) error
}

var _ PreKeyStore = (*keys.PreKeyStore)(nil)

// Session is one device's end of a 1:1 session. It is not comparable with ==.
type Session struct {
	_         [0]func()
	ratchet   *ratchet.State
	ad        []byte // IK_A || IK_B
	remote    *keys.IdentityKey
	initiator bool
	// prefix is, for an initiator still waiting for a reply, the prekey message prefix (version,
	// type, header length, PQXDH header) put in front of every message. Nil otherwise.
	prefix []byte
	// handshake is SHA-256 of the PQXDH header that created a responder's session, to recognise
	// that handshake's late prekey messages.
	handshake [sha256.Size]byte
	// adBuf is scratch for AD || message prefix, so steady-state messages do not allocate.
	adBuf []byte
}

// Initiate starts a session with the device whose bundle the server returned. It verifies the
// bundle's signatures and runs PQXDH; messages encrypted before the first reply carry the PQXDH
// header.
func Initiate(identity *keys.Identity, bundle *keys.Bundle, cfg Config) (*Session, error) {
	init, err := pqxdh.Initiate(identity, bundle)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	defer clear(init.SharedKey)
	st, err := ratchet.NewInitiator(init.SharedKey, init.RemoteSignedPreKey, cfg.ratchet())
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	prefix := make([]byte, 4, prekeyPrefixMax)
	prefix[0], prefix[1] = messageVersion, typePreKey
	if prefix, err = init.Header.AppendBinary(prefix); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	binary.BigEndian.PutUint16(prefix[2:4], uint16(len(prefix)-4))
	return &Session{
		ratchet:   st,
		ad:        init.AssociatedData,
		remote:    init.RemoteIdentity,
		initiator: true,
		prefix:    prefix,
	}, nil
}

// parsedMessage is a message split into its session prefix and ratchet message.
type parsedMessage struct {
	prefix  []byte // version, type and, for prekey messages, header length and header
	header  []byte // PQXDH header, prekey messages only
	ratchet []byte
}

// parseMessage splits a message without decoding the PQXDH header.
func parseMessage(msg []byte) (parsedMessage, error) {
	if len(msg) > MaxMessageSize {
		return parsedMessage{}, fmt.Errorf("message of %d bytes exceeds %d: %w", len(msg), MaxMessageSize, ErrTooLarge)
	}
	if len(msg) < normalPrefixLen {
		return parsedMessage{}, fmt.Errorf("message of %d bytes: %w", len(msg), ErrMalformed)
	}
	if msg[0] != messageVersion {
		return parsedMessage{}, fmt.Errorf("message version %d: %w", msg[0], ErrUnsupportedVersion)
	}
	switch msg[1] {
	case typeNormal:
		return parsedMessage{prefix: msg[:normalPrefixLen], ratchet: msg[normalPrefixLen:]}, nil
	case typePreKey:
		if len(msg) < 4 {
			return parsedMessage{}, fmt.Errorf("prekey message of %d bytes: %w", len(msg), ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(msg[2:4]))
		if n > pqxdh.MaxHeaderSize || len(msg) < 4+n {
			return parsedMessage{}, fmt.Errorf("prekey header of %d bytes in a %d-byte message: %w", n, len(msg), ErrMalformed)
		}
		return parsedMessage{prefix: msg[:4+n], header: msg[4 : 4+n], ratchet: msg[4+n:]}, nil
	default:
		return parsedMessage{}, fmt.Errorf("message type %d: %w", msg[1], ErrMalformed)
	}
}

// IsPreKeyMessage reports whether msg is a well-formed-looking prekey message, one that can start
// a session with [Accept]. It does not authenticate anything.
func IsPreKeyMessage(msg []byte) bool {
	p, err := parseMessage(msg)
	return err == nil && p.header != nil
}

// Accept starts the responder's side of a session from the first prekey message received from a
// device, and returns the session with that message's plaintext. expected is the identity key
// the sender must have, learned from an authenticated source (the sealed envelope's sender
// certificate, a pinned contact): a message claiming any other identity fails with
// [ErrIdentityMismatch] before any prekey is looked up. Accept consumes the one-time prekeys the
// message used only after the message has authenticated: on any error store is unchanged. A
// second Accept of a message using the same one-time prekey fails with [keys.ErrPreKeyUsed].
func Accept(identity *keys.Identity, store PreKeyStore, message []byte, expected *keys.IdentityKey, cfg Config) (*Session, []byte, error) {
	if expected == nil {
		return nil, nil, fmt.Errorf("session: accept without an expected peer identity: %w", ErrIdentityMismatch)
	}
	p, err := parseMessage(message)
	if err != nil {
		return nil, nil, fmt.Errorf("session: %w", err)
	}
	if p.header == nil {
		return nil, nil, ErrNotPreKeyMessage
	}
	h, err := pqxdh.ParseHeader(p.header)
	if err != nil {
		return nil, nil, fmt.Errorf("session: %w", err)
	}
	if !h.IdentityKey.Equal(expected) {
		return nil, nil, ErrIdentityMismatch
	}
	resp, err := pqxdh.Respond(identity, store, h)
	if err != nil {
		return nil, nil, fmt.Errorf("session: %w", err)
	}
	defer clear(resp.SharedKey)
	st, err := ratchet.NewResponder(resp.SharedKey, resp.SignedPreKey, cfg.ratchet())
	if err != nil {
		return nil, nil, fmt.Errorf("session: %w", err)
	}
	s := &Session{
		ratchet:   st,
		ad:        resp.AssociatedData,
		remote:    resp.RemoteIdentity,
		handshake: sha256.Sum256(p.header),
	}
	plaintext, err := s.ratchet.Decrypt(nil, p.ratchet, s.associatedData(p.prefix))
	if err != nil {
		return nil, nil, fmt.Errorf("session: first message: %w", err)
	}
	if h.HasOneTimePreKey {
		if err := store.ConsumeOneTimePreKey(h.OneTimePreKeyID); err != nil {
			return nil, nil, fmt.Errorf("session: %w", err)
		}
	}
	if err := store.ConsumeKEMPreKey(h.KEMPreKeyID); err != nil {
		return nil, nil, fmt.Errorf("session: %w", err)
	}
	return s, plaintext, nil
}

// associatedData returns AD || prefix in the session's scratch buffer.
func (s *Session) associatedData(prefix []byte) []byte {
	s.adBuf = append(append(s.adBuf[:0], s.ad...), prefix...)
	return s.adBuf
}

// RemoteIdentity returns the peer device's identity key. Compare it with the key the user
// verified (safety number) before trusting the session.
func (s *Session) RemoteIdentity() *keys.IdentityKey { return s.remote }

// Overhead is the most bytes Encrypt adds to a plaintext; give dst that much spare capacity
// beyond the plaintext to encrypt without allocating.
func (s *Session) Overhead() int {
	n := normalPrefixLen
	if s.prefix != nil {
		n = len(s.prefix)
	}
	return n + s.ratchet.Overhead()
}

// Encrypt appends to dst the message carrying plaintext.
func (s *Session) Encrypt(dst, plaintext []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintextSize {
		return nil, fmt.Errorf("plaintext of %d bytes exceeds %d: %w", len(plaintext), MaxPlaintextSize, ErrTooLarge)
	}
	start := len(dst)
	if s.prefix != nil {
		dst = append(dst, s.prefix...)
	} else {
		dst = append(dst, messageVersion, typeNormal)
	}
	out, err := s.ratchet.Encrypt(dst, plaintext, s.associatedData(dst[start:]))
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	return out, nil
}

// Decrypt authenticates message and appends its plaintext to dst. On any error the session is
// unchanged. Late prekey messages of the handshake that created a responder's session decrypt
// normally; a prekey message of another handshake fails with [ErrHandshakeMismatch].
func (s *Session) Decrypt(dst, message []byte) ([]byte, error) {
	p, err := parseMessage(message)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	if p.header != nil {
		// An initiator never receives prekey messages in its own session; a responder only those
		// of its own handshake. Comparing hashes avoids decoding the header again.
		got := sha256.Sum256(p.header)
		if s.initiator || subtle.ConstantTimeCompare(got[:], s.handshake[:]) != 1 {
			return nil, ErrHandshakeMismatch
		}
	}
	out, err := s.ratchet.Decrypt(dst, p.ratchet, s.associatedData(p.prefix))
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	// The first reply proves the peer has the session: stop sending the PQXDH header.
	s.prefix = nil
	return out, nil
}
