package session

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/pqxdh"
	"github.com/guardyn/guardyn/libs/crypto/ratchet"
)

const (
	// stateVersion 2: AD carries PQXDH v2's KEM binding and the ratchet state is version 2.
	stateVersion = 2
	// legacyStateVersion is a session of PQXDH v1 and ratchet wire v1: refused, to be started
	// again.
	legacyStateVersion = 1

	flagInitiator = 1 << 0 // this device ran Initiate
	flagPending   = 1 << 1 // initiator still sends prekey messages
	knownFlags    = flagInitiator | flagPending
)

// MarshalBinary encodes the session for local storage (version 2). The result holds secrets and
// must be stored encrypted.
//
//	u8 version | u8 flags (bit 0 initiator, bit 1 awaiting first reply)
//	| AD = IK_A || IK_B || KB (162)
//	| responder only: SHA-256 of the PQXDH header (32)
//	| awaiting reply only: u16 length | prekey message prefix
//	| ratchet state (package ratchet encoding, to the end)
func (s *Session) MarshalBinary() ([]byte, error) {
	st, err := s.ratchet.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	defer clear(st)
	var flags byte
	if s.initiator {
		flags |= flagInitiator
	}
	if s.prefix != nil {
		flags |= flagPending
	}
	out := make([]byte, 0, 2+len(s.ad)+sha256.Size+2+len(s.prefix)+len(st))
	out = append(out, stateVersion, flags)
	out = append(out, s.ad...)
	if !s.initiator {
		out = append(out, s.handshake[:]...)
	}
	if s.prefix != nil {
		out = binary.BigEndian.AppendUint16(out, uint16(len(s.prefix)))
		out = append(out, s.prefix...)
	}
	return append(out, st...), nil
}

// Unmarshal decodes a session written by [Session.MarshalBinary].
func Unmarshal(data []byte) (*Session, error) {
	if len(data) < 2 {
		return nil, fmt.Errorf("session state of %d bytes: %w", len(data), ErrMalformed)
	}
	switch data[0] {
	case stateVersion:
	case legacyStateVersion:
		return nil, fmt.Errorf("session state version 1 predates PQXDH v2 and ratchet v2; start a new session: %w", ErrUnsupportedVersion)
	default:
		return nil, fmt.Errorf("session state version %d: %w", data[0], ErrUnsupportedVersion)
	}
	flags := data[1]
	initiator := flags&flagInitiator != 0
	if flags&^knownFlags != 0 || (flags&flagPending != 0 && !initiator) {
		return nil, fmt.Errorf("session state flags %#x: %w", flags, ErrMalformed)
	}
	rest := data[2:]
	if len(rest) < pqxdh.AssociatedDataSize {
		return nil, fmt.Errorf("session state truncated in associated data: %w", ErrMalformed)
	}
	s := &Session{initiator: initiator, ad: append([]byte(nil), rest[:pqxdh.AssociatedDataSize]...)}
	rest = rest[pqxdh.AssociatedDataSize:]
	ikA, errA := keys.ParseIdentityKey(s.ad[:keys.PublicKeySize])
	ikB, errB := keys.ParseIdentityKey(s.ad[keys.PublicKeySize : 2*keys.PublicKeySize])
	if errA != nil || errB != nil {
		return nil, fmt.Errorf("session state identity keys: %w", ErrMalformed)
	}
	s.remote = ikA
	if initiator {
		s.remote = ikB
	} else {
		if len(rest) < sha256.Size {
			return nil, fmt.Errorf("session state truncated in handshake hash: %w", ErrMalformed)
		}
		copy(s.handshake[:], rest)
		rest = rest[sha256.Size:]
	}
	if flags&flagPending != 0 {
		if len(rest) < 2 {
			return nil, fmt.Errorf("session state truncated in prekey prefix: %w", ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if n > prekeyPrefixMax || len(rest) < 2+n {
			return nil, fmt.Errorf("session state prekey prefix of %d bytes: %w", n, ErrMalformed)
		}
		p, err := parseMessage(rest[2 : 2+n])
		if err != nil || p.header == nil || len(p.ratchet) != 0 {
			return nil, fmt.Errorf("session state prekey prefix: %w", ErrMalformed)
		}
		h, err := pqxdh.ParseHeader(p.header)
		if err != nil || !h.IdentityKey.Equal(ikA) {
			return nil, fmt.Errorf("session state prekey header: %w", ErrMalformed)
		}
		s.prefix = append([]byte(nil), rest[2:2+n]...)
		rest = rest[2+n:]
	}
	st, err := ratchet.Unmarshal(rest)
	if errors.Is(err, ratchet.ErrUnsupportedVersion) {
		return nil, fmt.Errorf("session state: %w: %w", ErrUnsupportedVersion, err)
	} else if err != nil {
		return nil, fmt.Errorf("session state: %w: %w", ErrMalformed, err)
	}
	s.ratchet = st
	return s, nil
}
