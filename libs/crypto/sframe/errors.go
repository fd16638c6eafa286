package sframe

import (
	"errors"

	"github.com/guardyn/guardyn/libs/crypto/sframe/internal/replay"
)

// Errors returned (wrapped with context) by this package. Test for them with
// errors.Is.
var (
	// ErrUnsupportedSuite means the cipher suite is not one this package
	// implements: RFC 9605's five and the three draft AES-256-CTR suites.
	ErrUnsupportedSuite = errors.New("unsupported cipher suite")
	// ErrShortTag means a suite with a 32-bit tag given to NewSender or
	// NewReceiver; use NewShortTagSender and NewShortTagReceiver to ask for
	// one.
	ErrShortTag = errors.New("32-bit tag suite not asked for")
	// ErrBadBaseKey means a base key is shorter than MinBaseKeySize.
	ErrBadBaseKey = errors.New("base key too short")
	// ErrTruncated means a frame ends inside its header or tag.
	ErrTruncated = errors.New("truncated frame")
	// ErrNonMinimalHeader means a header field is not minimally encoded.
	ErrNonMinimalHeader = errors.New("non-minimal header encoding")
	// ErrUnknownKeyID means a frame names a key id the receiver does not hold.
	ErrUnknownKeyID = errors.New("unknown key id")
	// ErrKeyIDInUse means AddKey was given a key id the receiver already
	// holds; replacing it would reset its replay window.
	ErrKeyIDInUse = errors.New("key id already installed")
	// ErrAuthentication means the tag did not verify: the frame, its header
	// or the metadata was altered, or the key is wrong.
	ErrAuthentication = errors.New("frame authentication failed")
	// ErrReplayed means a frame with this key id and counter was already
	// accepted.
	ErrReplayed = replay.ErrReplayed
	// ErrTooOld means the counter is behind the replay window, so whether it
	// was seen can no longer be told.
	ErrTooOld = replay.ErrTooOld
	// ErrCounterExhausted means a sender used every counter value of its key;
	// encrypting again would reuse a nonce.
	ErrCounterExhausted = errors.New("counter exhausted")
	// ErrCounterRewind means SetNextCounter was asked to move the counter
	// backwards, which would reuse nonces.
	ErrCounterRewind = errors.New("counter moved backwards")
	// ErrBadReplayWindow means a replay window size is out of range.
	ErrBadReplayWindow = replay.ErrBadSize
)
