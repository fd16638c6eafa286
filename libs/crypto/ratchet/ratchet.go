package ratchet

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Defaults and hard limits of Config.
const (
	// DefaultMaxSkip bounds how many message keys one received message may make us derive and
	// store in a single chain (Signal's MAX_SKIP): enough for any realistic loss or reordering,
	// small enough that a forged header costs at most ~1000 HMACs.
	DefaultMaxSkip = 1000
	// DefaultMaxSkippedKeys bounds the skipped-key store across all chains (≈ 200 KiB); the oldest
	// keys are evicted first. Twice DefaultMaxSkip so that a DH ratchet step, which may skip up to
	// MaxSkip keys in the old chain and MaxSkip in the new one, never evicts its own keys.
	DefaultMaxSkippedKeys = 2 * DefaultMaxSkip
	// MaxConfigLimit caps both Config limits (and the state decoder): skipped-key lookups are
	// linear in the store size.
	MaxConfigLimit = 1 << 16
	// DefaultMaxSkippedSteps is how many receiving DH ratchet steps a skipped key outlives. The
	// peer starts a new sending chain only after hearing from us, so five steps are five round
	// trips during which the message never came (libsignal likewise keeps five old receiving
	// chains); the Double Ratchet specification advises deleting skipped keys after some steps.
	DefaultMaxSkippedSteps = 5
	// DefaultMaxSkippedAge is how long a skipped key is kept: the messaging service's default
	// inbox retention, after which the message it would open can no longer arrive.
	DefaultMaxSkippedAge = 30 * 24 * time.Hour
	// MaxSkippedAgeLimit caps Config.MaxSkippedAge (the state stores it in whole seconds).
	MaxSkippedAgeLimit = 10 * 365 * 24 * time.Hour
)

// Config chooses the ratchet's options. The zero value is plain headers with default limits.
type Config struct {
	// HeaderEncryption selects Signal's "Double Ratchet with header encryption"; the messaging
	// layer turns it on. Both parties must agree.
	HeaderEncryption bool
	// MaxSkip is the most message keys skipped in one chain; 0 means DefaultMaxSkip.
	MaxSkip int
	// MaxSkippedKeys bounds stored skipped keys across chains, oldest evicted; 0 means
	// DefaultMaxSkippedKeys. It must be at least MaxSkip.
	MaxSkippedKeys int
	// MaxSkippedSteps deletes a skipped key once the receiving ratchet has taken more than this
	// many DH steps since the key was stored; 0 means DefaultMaxSkippedSteps.
	MaxSkippedSteps int
	// MaxSkippedAge deletes a skipped key once it has been stored this long (by the system
	// clock); 0 means DefaultMaxSkippedAge. Whole seconds, at most MaxSkippedAgeLimit.
	MaxSkippedAge time.Duration
}

func (c Config) resolve() (Config, error) {
	if c.MaxSkip == 0 {
		c.MaxSkip = DefaultMaxSkip
	}
	if c.MaxSkippedKeys == 0 {
		c.MaxSkippedKeys = max(DefaultMaxSkippedKeys, c.MaxSkip)
	}
	if c.MaxSkippedSteps == 0 {
		c.MaxSkippedSteps = DefaultMaxSkippedSteps
	}
	if c.MaxSkippedAge == 0 {
		c.MaxSkippedAge = DefaultMaxSkippedAge
	}
	switch {
	case c.MaxSkippedSteps < 0 || c.MaxSkippedSteps > MaxConfigLimit:
		return c, fmt.Errorf("max skipped steps %d outside [0, %d]: %w", c.MaxSkippedSteps, MaxConfigLimit, ErrInvalidConfig)
	case c.MaxSkippedAge < 0 || c.MaxSkippedAge > MaxSkippedAgeLimit || c.MaxSkippedAge%time.Second != 0:
		return c, fmt.Errorf("max skipped age %v outside [0, %v] or not whole seconds: %w", c.MaxSkippedAge, MaxSkippedAgeLimit, ErrInvalidConfig)
	case c.MaxSkip < 0 || c.MaxSkip > MaxConfigLimit:
		return c, fmt.Errorf("max skip %d outside [0, %d]: %w", c.MaxSkip, MaxConfigLimit, ErrInvalidConfig)
	case c.MaxSkippedKeys < 0 || c.MaxSkippedKeys > MaxConfigLimit:
		return c, fmt.Errorf("max skipped keys %d outside [0, %d]: %w", c.MaxSkippedKeys, MaxConfigLimit, ErrInvalidConfig)
	case c.MaxSkippedKeys < c.MaxSkip:
		return c, fmt.Errorf("max skipped keys %d below max skip %d: %w", c.MaxSkippedKeys, c.MaxSkip, ErrInvalidConfig)
	}
	return c, nil
}

// Errors returned by this package; test them with errors.Is. Every error from Decrypt leaves the
// State as it was.
var (
	// ErrMalformed: a message or encoded state that cannot be parsed (too short, wrong length,
	// invalid public key, message of the other header mode).
	ErrMalformed = errors.New("ratchet: malformed input")
	// ErrUnsupportedVersion: a message or encoded state with a version byte this code does not know.
	ErrUnsupportedVersion = errors.New("ratchet: unsupported version")
	// ErrDecrypt: authentication failed (tampered message, wrong session, or a header no held
	// header key opens).
	ErrDecrypt = errors.New("ratchet: message authentication failed")
	// ErrDuplicate: the message's key is gone because it was already used (a replay), or because
	// it was skipped and later evicted from the bounded store.
	ErrDuplicate = errors.New("ratchet: message key already used or discarded")
	// ErrTooManySkipped: accepting the message would skip more than MaxSkip keys in one chain.
	ErrTooManySkipped = errors.New("ratchet: too many skipped messages")
	// ErrNoSendingChain: the responder cannot encrypt before it has decrypted a first message.
	ErrNoSendingChain = errors.New("ratchet: no sending chain yet")
	// ErrCounterExhausted: a chain reached 2^32-1 messages (Encrypt), or a message claims that
	// number (Decrypt); a new session is needed.
	ErrCounterExhausted = errors.New("ratchet: message counter exhausted")
	// ErrInvalidConfig: a Config limit outside its documented range.
	ErrInvalidConfig = errors.New("ratchet: invalid config")
	// ErrInvalidKey: a shared key that is not 32 bytes or a missing or non-P-256 key.
	ErrInvalidKey = errors.New("ratchet: invalid key")
)

// core is every field of the ratchet but the skipped-key store. It is a plain value, so Decrypt
// works on a copy and commits it only once the message has authenticated.
type core struct {
	dhs    *ecdh.PrivateKey // DHs; immutable, so sharing it between copies is safe
	dhsPub [pubKeyLen]byte
	dhr    [pubKeyLen]byte // DHr
	hasDHr bool

	rk       [keyLen]byte
	cks, ckr [keyLen]byte
	hasCKs   bool
	hasCKr   bool
	ns, nr   uint32
	pn       uint32

	hks, hkr, nhks, nhkr [keyLen]byte // header encryption only
	hasHKs, hasHKr       bool

	// prev is the receiving chain before the current one. Leaving it stored or used every key up
	// to PN, so a message of it whose key is not in the store is reported as ErrDuplicate.
	prev    chainID
	hasPrev bool

	// steps counts receiving DH ratchet steps; skipped keys record it to expire by steps.
	steps uint32
}

// State is one side of a Double Ratchet session.
type State struct {
	_       [0]func() // not comparable: == on secrets is not constant time
	cfg     Config
	c       core
	skipped skippedStore
	// rand feeds DH key generation and message nonces; nil means crypto/rand. Tests set a
	// deterministic stream (Go 1.26 ecdh.GenerateKey ignores its reader).
	rand io.Reader
	// clock dates skipped keys for MaxSkippedAge; nil means time.Now. Tests set a fixed one.
	clock func() time.Time
	// adBuf is scratch for CONCAT(AD, header), kept so steady-state messages do not allocate.
	adBuf []byte
	// headerBuf is scratch for a plaintext header on its way into or out of header encryption.
	headerBuf [headerLen]byte
	nonceBuf  [aeadNonceLen]byte
	// zeroSalt is the HMAC key of HKDF's all-zero salt for message keys; derived, not persisted.
	zeroSalt hmacKey
	// sendHeader and recvHeader cache the AEADs of HKs and HKr; derived, not persisted.
	sendHeader, recvHeader headerAEAD
}

// NewInitiator starts the session of the party that ran PQXDH as initiator (Alice). sharedKey is
// the 32-byte PQXDH secret, remoteRatchetKey the responder's signed prekey.
func NewInitiator(sharedKey []byte, remoteRatchetKey *ecdh.PublicKey, cfg Config) (*State, error) {
	return newInitiator(sharedKey, remoteRatchetKey, cfg, nil)
}

func newInitiator(sharedKey []byte, remote *ecdh.PublicKey, cfg Config, r io.Reader) (*State, error) {
	if remote == nil || remote.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("remote ratchet key must be P-256: %w", ErrInvalidKey)
	}
	s, err := newState(sharedKey, cfg, r)
	if err != nil {
		return nil, err
	}
	rk, hka, nhkb := initialKeys(sharedKey)
	defer wipeKeys(&rk, &hka, &nhkb)
	c := &s.c
	if c.dhs, err = s.generateKey(); err != nil {
		return nil, err
	}
	copy(c.dhsPub[:], c.dhs.PublicKey().Bytes())
	copy(c.dhr[:], remote.Bytes())
	c.hasDHr = true
	dh, err := c.dhs.ECDH(remote)
	if err != nil {
		return nil, fmt.Errorf("initial dh: %w", err)
	}
	k := kdfRK(&rk, dh)
	clear(dh)
	c.rk, c.cks, c.nhks = k.root, k.chain, k.nextHeader
	c.hasCKs = true
	if s.cfg.HeaderEncryption {
		c.hks, c.hasHKs = hka, true
		c.nhkr = nhkb
	}
	return s, nil
}

// NewResponder starts the session of the PQXDH responder (Bob). ratchetKey is the private half of
// the signed prekey the initiator used; the responder can encrypt only after its first Decrypt.
func NewResponder(sharedKey []byte, ratchetKey *ecdh.PrivateKey, cfg Config) (*State, error) {
	return newResponder(sharedKey, ratchetKey, cfg, nil)
}

func newResponder(sharedKey []byte, ratchetKey *ecdh.PrivateKey, cfg Config, r io.Reader) (*State, error) {
	if ratchetKey == nil || ratchetKey.Curve() != ecdh.P256() {
		return nil, fmt.Errorf("ratchet key must be P-256: %w", ErrInvalidKey)
	}
	s, err := newState(sharedKey, cfg, r)
	if err != nil {
		return nil, err
	}
	rk, hka, nhkb := initialKeys(sharedKey)
	defer wipeKeys(&rk, &hka, &nhkb)
	c := &s.c
	c.dhs = ratchetKey
	copy(c.dhsPub[:], ratchetKey.PublicKey().Bytes())
	c.rk = rk
	if s.cfg.HeaderEncryption {
		c.nhks = nhkb
		c.nhkr = hka
	}
	return s, nil
}

// wipeKeys zeroes local copies of keys once they are stored where they belong.
func wipeKeys(keys ...*[keyLen]byte) {
	for _, k := range keys {
		clear(k[:])
	}
}

func newState(sharedKey []byte, cfg Config, r io.Reader) (*State, error) {
	if len(sharedKey) != keyLen {
		return nil, fmt.Errorf("shared key is %d bytes, want %d: %w", len(sharedKey), keyLen, ErrInvalidKey)
	}
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	return newStateWithConfig(cfg, r), nil
}

func newStateWithConfig(cfg Config, r io.Reader) *State {
	s := &State{cfg: cfg, rand: r}
	var zero [keyLen]byte
	s.zeroSalt.init(&zero)
	return s
}

// generateKey is GENERATE_DH. With a test stream it draws 32-byte candidate scalars until one is
// valid, the same rejection sampling P-256 key generation does.
func (s *State) generateKey() (*ecdh.PrivateKey, error) {
	if s.rand == nil {
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate ratchet key: %w", err)
		}
		return k, nil
	}
	var seed [32]byte
	defer clear(seed[:])
	for {
		if _, err := io.ReadFull(s.rand, seed[:]); err != nil {
			return nil, fmt.Errorf("generate ratchet key: %w", err)
		}
		if k, err := ecdh.P256().NewPrivateKey(seed[:]); err == nil {
			return k, nil
		}
	}
}

func (s *State) readRandom(b []byte) error {
	r := s.rand
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("read random: %w", err)
	}
	return nil
}

// associatedData returns CONCAT(ad, prefix) in the State's scratch buffer.
func (s *State) associatedData(ad, prefix []byte) []byte {
	s.adBuf = append(append(s.adBuf[:0], ad...), prefix...)
	return s.adBuf
}

// Overhead is the number of bytes Encrypt adds to a plaintext: size dst with
// len(plaintext)+Overhead spare capacity to encrypt without allocating for the output.
func (s *State) Overhead() int {
	return prefixLen(s.cfg.HeaderEncryption) + aeadTagLen
}

// Encrypt appends to dst the wire message carrying plaintext, authenticated together with ad
// (Signal's RatchetEncrypt). The state advances only on success. ad may alias dst; plaintext
// must not overlap dst's spare capacity.
func (s *State) Encrypt(dst, plaintext, ad []byte) ([]byte, error) {
	c := &s.c
	s.adBuf = append(s.adBuf[:0], ad...) // before dst is written, in case ad aliases it
	if !c.hasCKs {
		return nil, ErrNoSendingChain
	}
	if c.ns == math.MaxUint32 {
		return nil, ErrCounterExhausted
	}
	next, mk := kdfCK(&c.cks)
	defer clear(mk[:])
	h := header{dh: c.dhsPub, pn: c.pn, n: c.ns}
	he := s.cfg.HeaderEncryption
	start := len(dst)
	pl := prefixLen(he)
	dst = grow(dst, pl)
	prefix := dst[start : start+pl]
	prefix[0] = versionFor(he)
	// A fresh random nonce per message enters the body's key derivation: should this state ever
	// be restored from an older copy and encrypt again under the same message key, the AES-GCM
	// key and nonce still differ (see the package doc).
	nonce := prefix[1 : 1+messageNonceLen]
	if err := s.readRandom(nonce); err != nil {
		return nil, err
	}
	if he {
		h.put(s.headerBuf[:])
		aead, err := s.sendHeader.get(&c.hks)
		if err != nil {
			return nil, err
		}
		aead.Seal(prefix[1+messageNonceLen:1+messageNonceLen], nonce, s.headerBuf[:], prefix[:1])
	} else {
		h.put(prefix[1+messageNonceLen:])
	}
	s.adBuf = append(s.adBuf, prefix...)
	out, err := s.sealBody(dst, &mk, nonce, plaintext, s.adBuf)
	if err != nil {
		return nil, err
	}
	clear(c.cks[:])
	c.cks = next
	c.ns++
	s.expireSkipped()
	return out, nil
}

// now reads the State's clock.
func (s *State) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}

// grow extends b by n bytes, reusing its capacity when it can.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	return append(b, make([]byte, n)...)
}
