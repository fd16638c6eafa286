// Package sframe encrypts media frames end to end with SFrame
// ([RFC 9605]), so that servers and relays forward frames they cannot read.
//
// A sending stream owns a [Sender], made from a cipher suite, a key id (KID)
// and a base key; [Sender.Protect] turns each media frame into an SFrame
// ciphertext whose header carries the KID and a counter. A [Receiver] holds
// the keys of many senders, one per KID, and [Receiver.Unprotect] checks the
// tag, refuses counters it has already accepted (a sliding replay window per
// KID) and returns the frame. The metadata argument of both is associated
// data: the media metadata a forwarding unit may read but not change.
//
// Where keys come from is up to the caller: package mlskeys derives them from
// an MLS group's epochs as RFC 9605, Section 5.2 describes.
//
// Each key's cipher state is built once, when the key is installed. With a
// GCM suite and an output buffer of sufficient capacity, protecting and
// unprotecting a frame allocate nothing. Senders and receivers keep scratch
// space and counters, so neither is safe for concurrent use; give each
// goroutine its own, or serialise access.
//
// [RFC 9605]: https://www.rfc-editor.org/rfc/rfc9605
package sframe

import (
	"fmt"
	"math"

	"github.com/guardyn/guardyn/libs/crypto/sframe/internal/replay"
)

// Overhead returns how many bytes SFrame adds to a frame with this header:
// the header and the tag. It is at most MaxHeaderSize + TagSize.
func (s CipherSuite) Overhead(h Header) int {
	return h.Len() + s.TagSize()
}

// A Sender encrypts the frames of one KID, numbering them with a counter
// that starts at zero and never repeats. It is not safe for concurrent use.
type Sender struct {
	suite     CipherSuite
	kid       uint64
	key       *frameKey
	next      uint64
	exhausted bool
	_         [0]func()
}

// NewSender returns a Sender for kid whose key and salt are derived from
// baseKey (RFC 9605, Section 4.4.2). The caller must never give two senders
// the same (baseKey, kid) pair unless the second resumes, with
// SetNextCounter, past every counter the first may have used: their
// counters would collide and reuse nonces. Package mlskeys does this
// bookkeeping for keys from MLS. Suites with a 32-bit tag are refused with
// ErrShortTag (see NewShortTagSender).
func NewSender(suite CipherSuite, kid uint64, baseKey []byte) (*Sender, error) {
	if _, err := suite.check(false); err != nil {
		return nil, err
	}
	return newSender(suite, kid, baseKey)
}

// NewShortTagSender is NewSender that also accepts the suites whose tag is
// 32 bits, for peers that need them; see the warning at
// AES_128_CTR_HMAC_SHA256_32.
func NewShortTagSender(suite CipherSuite, kid uint64, baseKey []byte) (*Sender, error) {
	return newSender(suite, kid, baseKey)
}

func newSender(suite CipherSuite, kid uint64, baseKey []byte) (*Sender, error) {
	key, err := newFrameKey(suite, kid, baseKey)
	if err != nil {
		return nil, err
	}
	return &Sender{suite: suite, kid: kid, key: key}, nil
}

// KeyID returns the KID this sender writes into every header.
func (s *Sender) KeyID() uint64 { return s.kid }

// Suite returns the sender's cipher suite.
func (s *Sender) Suite() CipherSuite { return s.suite }

// NextCounter returns the counter the next frame will carry. Applications
// that persist a sender store it before use (RFC 9605, Section 9.1).
func (s *Sender) NextCounter() uint64 { return s.next }

// SetNextCounter resumes a persisted sender at ctr. It refuses to move the
// counter backwards, which would reuse nonces.
func (s *Sender) SetNextCounter(ctr uint64) error {
	if s.exhausted {
		return fmt.Errorf("sframe: key id %d: %w", s.kid, ErrCounterExhausted)
	}
	if ctr < s.next {
		return fmt.Errorf("sframe: counter %d is behind the next counter %d: %w", ctr, s.next, ErrCounterRewind)
	}
	s.next = ctr
	return nil
}

// Protect encrypts plaintext as the next frame, with metadata as associated
// data, appends the SFrame ciphertext (header, encrypted frame, tag) to dst
// and returns the extended slice. Nothing is allocated (GCM suites) when dst
// has room for MaxHeaderSize + TagSize + len(plaintext) more bytes. dst must
// not overlap plaintext.
//
// Once the counter has taken every 64-bit value, Protect fails with
// ErrCounterExhausted: the KID needs a new base key.
func (s *Sender) Protect(dst, metadata, plaintext []byte) ([]byte, error) {
	if s.exhausted {
		return nil, fmt.Errorf("sframe: key id %d: %w", s.kid, ErrCounterExhausted)
	}
	ctr := s.next
	if ctr == math.MaxUint64 {
		s.exhausted = true
	} else {
		s.next++
	}
	start := len(dst)
	dst = Header{KeyID: s.kid, Counter: ctr}.Append(dst)
	header := dst[start:]
	return s.key.aead.seal(dst, s.key.formNonce(ctr), plaintext, header, metadata), nil
}

// A Receiver decrypts frames from many senders, each known by its KID, and
// refuses replays with a sliding window per KID. It is not safe for
// concurrent use.
type Receiver struct {
	suite   CipherSuite
	tagSize int
	window  int
	keys    map[uint64]*receiveKey
	_       [0]func()
}

type receiveKey struct {
	*frameKey
	window *replay.Window
}

// DefaultReplayWindow is a replay window that absorbs a few seconds of
// reordering for video at hundreds of frames per second.
const DefaultReplayWindow = 1024

// MaxReplayWindow is the largest replay window a Receiver accepts.
const MaxReplayWindow = replay.MaxSize

// NewReceiver returns a Receiver with no keys. replayWindow is how many
// counters below the highest accepted one are still tracked, 1 to
// MaxReplayWindow; frames further behind are refused with ErrTooOld.
// Suites with a 32-bit tag are refused with ErrShortTag (see
// NewShortTagReceiver).
func NewReceiver(suite CipherSuite, replayWindow int) (*Receiver, error) {
	return newReceiver(suite, replayWindow, false)
}

// NewShortTagReceiver is NewReceiver that also accepts the suites whose tag
// is 32 bits, for peers that need them; see the warning at
// AES_128_CTR_HMAC_SHA256_32.
func NewShortTagReceiver(suite CipherSuite, replayWindow int) (*Receiver, error) {
	return newReceiver(suite, replayWindow, true)
}

func newReceiver(suite CipherSuite, replayWindow int, shortTag bool) (*Receiver, error) {
	if _, err := suite.check(shortTag); err != nil {
		return nil, err
	}
	if _, err := replay.New(replayWindow); err != nil {
		return nil, fmt.Errorf("sframe: %w", err)
	}
	return &Receiver{suite: suite, tagSize: suite.TagSize(), window: replayWindow, keys: make(map[uint64]*receiveKey)}, nil
}

// Suite returns the receiver's cipher suite.
func (r *Receiver) Suite() CipherSuite { return r.suite }

// AddKey installs the key derived from baseKey for kid, with an empty replay
// window. A KID already installed is refused with ErrKeyIDInUse: replacing a
// key in place would forget which counters were seen.
func (r *Receiver) AddKey(kid uint64, baseKey []byte) error {
	if _, ok := r.keys[kid]; ok {
		return fmt.Errorf("sframe: key id %d: %w", kid, ErrKeyIDInUse)
	}
	key, err := newFrameKey(r.suite, kid, baseKey)
	if err != nil {
		return err
	}
	window, err := replay.New(r.window)
	if err != nil {
		return fmt.Errorf("sframe: %w", err)
	}
	r.keys[kid] = &receiveKey{frameKey: key, window: window}
	return nil
}

// RemoveKey forgets kid and zeroes what it can of its key. Removing a KID
// that is not installed does nothing.
func (r *Receiver) RemoveKey(kid uint64) {
	if k, ok := r.keys[kid]; ok {
		k.destroy()
		delete(r.keys, kid)
	}
}

// HasKey reports whether kid is installed.
func (r *Receiver) HasKey(kid uint64) bool {
	_, ok := r.keys[kid]
	return ok
}

// Unprotect authenticates and decrypts one SFrame ciphertext, with metadata
// as associated data, appends the plaintext to dst and returns the extended
// slice. Nothing is allocated (GCM suites) when dst has room for the
// plaintext. dst must not overlap frame.
//
// Errors, each testable with errors.Is: ErrTruncated and ErrNonMinimalHeader
// for a malformed frame, ErrUnknownKeyID for a KID not installed,
// ErrReplayed and ErrTooOld for a counter the replay window refuses, and
// ErrAuthentication for a frame, header or metadata that does not verify.
// A frame refused for any reason leaves the replay window unchanged.
func (r *Receiver) Unprotect(dst, metadata, frame []byte) ([]byte, error) {
	h, n, err := ParseHeader(frame)
	if err != nil {
		return nil, err
	}
	key, ok := r.keys[h.KeyID]
	if !ok {
		return nil, fmt.Errorf("sframe: key id %d: %w", h.KeyID, ErrUnknownKeyID)
	}
	body := frame[n:]
	if len(body) < r.tagSize {
		return nil, fmt.Errorf("sframe: frame body of %d bytes is shorter than the %d-byte tag: %w", len(body), r.tagSize, ErrTruncated)
	}
	if err := key.window.Check(h.Counter); err != nil {
		return nil, fmt.Errorf("sframe: key id %d: %w", h.KeyID, err)
	}
	out, err := key.aead.open(dst, key.formNonce(h.Counter), body, frame[:n], metadata)
	if err != nil {
		return nil, fmt.Errorf("sframe: key id %d counter %d: %w", h.KeyID, h.Counter, err)
	}
	key.window.Accept(h.Counter)
	return out, nil
}
