// Package mlskeys keys SFrame from the epochs of an MLS group
// ([RFC 9605, Section 5.2]): each epoch's base key comes from the MLS
// exporter, each member sends under KIDs built from the epoch and its leaf
// index, and keys roll with the epoch while the previous epoch stays readable
// for a bounded grace period.
//
// A [Keyring] is one member's view of a call. Call [Keyring.SetEpoch] with
// every new epoch of the group; [Keyring.Protect] then sends under the
// member's own KID for that epoch and the stream's context, and
// [Keyring.Unprotect] reads frames from any other member of the current
// epoch, or of the previous one until its grace period ends. Receiving keys
// are derived on first use, and kept only once a frame has authenticated
// under them. Frames under the member's own KIDs (reflected back by a relay)
// are refused.
//
// Every base key of an epoch is the same for all members: it is the KID, part
// of the key derivation, that gives each sender its own key and nonces. So
// any member of the group can derive every other member's sending keys and
// forge frames that the others accept as that member's: SFrame with MLS keys
// authenticates the group, not the sender (RFC 9605, Section 7.2). Where
// sender authentication matters, the application signs inside the frame.
//
// A sender's counter must never repeat under one key, across restarts and
// across keyrings of the same member. The keyring therefore takes a
// [CounterStore] and reserves counters in blocks of [CounterBlock], durably,
// before using them: a keyring restarted for the same epoch, or a second
// keyring of the same member, continues after every counter reserved
// before. Separate streams of one member use separate contexts, each its own
// KID.
//
// [RFC 9605, Section 5.2]: https://www.rfc-editor.org/rfc/rfc9605#section-5.2
package mlskeys

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/sframe"
)

// ExporterLabel is the MLS exporter label of the SFrame base key; the
// exporter context is empty and the length is the suite's Nk.
const ExporterLabel = "SFrame 1.0 Base Key"

// CounterBlock is how many counters a sender reserves in the CounterStore at
// a time: one durable write per CounterBlock frames, and at most CounterBlock
// counters skipped by a restart.
const CounterBlock = 1 << 16

// CounterStore persists, for each sender key (an epoch and a KID), a floor
// below which every counter may already have been used. It is shared by
// every keyring of a member, and must survive restarts of the application:
// without it, a new keyring for an epoch and KID already used would start
// again at counter 0 under the same key and reuse nonces. One store may
// serve several groups: a shared record only makes a sender skip counters.
type CounterStore interface {
	// Reserve raises the floor of the sender key (epoch, kid) by n and
	// returns the floor before the call (0 for a key never seen): the
	// caller may use counters [floor, floor+n). The new floor must be
	// durable (written and synced) before Reserve returns, and Reserve must
	// be atomic with respect to other calls for the same key. A floor that
	// would pass 2^64-1 stays at 2^64-1.
	Reserve(epoch, kid, n uint64) (floor uint64, err error)
}

// MaxKeysPerEpoch bounds the receiving keys one epoch may hold (one per
// sender stream seen), so that members inventing KIDs cannot grow it forever.
const MaxKeysPerEpoch = 4096

// Group is the part of an MLS group (RFC 9420) the keyring needs: one
// member's view of one epoch.
type Group interface {
	// Epoch is the epoch number.
	Epoch() uint64
	// LeafIndex is this member's leaf index in the ratchet tree.
	LeafIndex() uint32
	// LeafCount is the number of leaves in the ratchet tree; every member's
	// leaf index is below it.
	LeafCount() uint32
	// Export is MLS-Exporter(label, context, length) of this epoch
	// (RFC 9420, Section 8.5).
	Export(label string, context []byte, length int) ([]byte, error)
}

// Errors returned (wrapped) by this package, besides those of package
// sframe. Test for them with errors.Is.
var (
	// ErrNoEpoch means Protect was called before any SetEpoch.
	ErrNoEpoch = errors.New("no epoch set")
	// ErrStaleEpoch means SetEpoch was given an epoch not after the current
	// one. Installing an epoch twice would restart the sender's counter under
	// the same key and reuse nonces.
	ErrStaleEpoch = errors.New("epoch not newer than the current one")
	// ErrUnknownEpoch means a frame's KID names an epoch the keyring does not
	// hold: too old, or not yet set.
	ErrUnknownEpoch = errors.New("frame from an unknown epoch")
	// ErrEpochExpired means a frame is from the previous epoch and its grace
	// period is over.
	ErrEpochExpired = errors.New("previous epoch past its grace period")
	// ErrBadLayout means the KID fields do not fit in 64 bits, or a value
	// does not fit its field.
	ErrBadLayout = errors.New("key id layout does not fit")
	// ErrBadGrace means a negative grace period.
	ErrBadGrace = errors.New("negative grace period")
	// ErrBadExport means the exporter returned a base key of the wrong size.
	ErrBadExport = errors.New("exporter output of the wrong size")
	// ErrTooManyKeys means an epoch already holds MaxKeysPerEpoch receiving
	// keys.
	ErrTooManyKeys = errors.New("too many key ids in one epoch")
	// ErrOwnFrame means a frame under one of this member's own KIDs: a
	// relay reflected it back, or another member forged it.
	ErrOwnFrame = errors.New("frame under this member's own key id")
	// ErrNoCounterStore means NewKeyring was given a nil CounterStore.
	ErrNoCounterStore = errors.New("no counter store")
	// ErrCounterStore means the CounterStore failed or returned a floor
	// below counters it had already granted.
	ErrCounterStore = errors.New("counter store failed")
)

// IndexBits returns S, the number of KID bits for the sender index in a tree
// of leafCount leaves: the smallest S with leafCount < 1<<S (RFC 9605,
// Section 5.2).
func IndexBits(leafCount uint32) int {
	return bits.Len32(leafCount)
}

// KeyID builds the KID of RFC 9605, Section 5.2:
//
//	KID = (context << (S + E)) + (sender_index << E) + (epoch % (1 << E))
//
// with E = epochBits and S = indexBits. context tells apart the streams of
// one sender; 0 gives the shortest header.
func KeyID(context uint64, senderIndex uint32, epoch uint64, epochBits, indexBits int) (uint64, error) {
	if epochBits < 1 || indexBits < 0 || indexBits > 32 || epochBits+indexBits > 64 {
		return 0, fmt.Errorf("mlskeys: %d epoch bits and %d index bits: %w", epochBits, indexBits, ErrBadLayout)
	}
	if indexBits < 32 && senderIndex>>indexBits != 0 {
		return 0, fmt.Errorf("mlskeys: sender index %d does not fit %d bits: %w", senderIndex, indexBits, ErrBadLayout)
	}
	shift := epochBits + indexBits
	if shift < 64 && context>>(64-shift) != 0 || shift == 64 && context != 0 {
		return 0, fmt.Errorf("mlskeys: context %d does not fit %d bits: %w", context, 64-shift, ErrBadLayout)
	}
	kid := uint64(senderIndex)<<epochBits | epoch&lowBits(epochBits)
	if shift < 64 {
		kid |= context << shift
	}
	return kid, nil
}

func lowBits(n int) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}

// epochKeys is what the keyring holds for one epoch.
type epochKeys struct {
	epoch     uint64
	baseKey   []byte
	leaf      uint32 // this member's leaf index
	leafCount uint32
	indexBits int
	kids      map[uint64]struct{} // receiving keys installed for this epoch
	expires   time.Time           // for the previous epoch: end of grace
	_         [0]func()
}

// stream is this member's sender for one context of the current epoch.
type stream struct {
	sender *sframe.Sender
	limit  uint64 // end of the counters reserved in the store
	_      [0]func()
}

// Keyring is one member's SFrame keys for a call keyed from an MLS group.
// It is not safe for concurrent use.
type Keyring struct {
	suite     sframe.CipherSuite
	epochBits int
	grace     time.Duration
	now       func() time.Time
	counters  CounterStore
	receiver  *sframe.Receiver
	streams   map[uint64]*stream // by context, for the current epoch
	current   *epochKeys
	previous  *epochKeys
	_         [0]func()
}

// NewKeyring returns a keyring with no epoch. epochBits is E, the low bits of
// the epoch number carried in each KID (1 to 32); grace is how long the
// previous epoch's frames stay readable after SetEpoch (0 drops them at
// once); replayWindow is the per-KID window of sframe.NewReceiver; now is the
// clock (nil means time.Now); counters is the member's CounterStore, shared
// by all its keyrings and persisted across restarts. Suites with a 32-bit tag
// are refused (sframe.ErrShortTag).
func NewKeyring(suite sframe.CipherSuite, epochBits int, grace time.Duration, replayWindow int, now func() time.Time, counters CounterStore) (*Keyring, error) {
	if counters == nil {
		return nil, ErrNoCounterStore
	}
	if epochBits < 1 || epochBits > 32 {
		return nil, fmt.Errorf("mlskeys: %d epoch bits, want 1..32: %w", epochBits, ErrBadLayout)
	}
	if grace < 0 {
		return nil, fmt.Errorf("mlskeys: grace %v: %w", grace, ErrBadGrace)
	}
	receiver, err := sframe.NewReceiver(suite, replayWindow)
	if err != nil {
		return nil, fmt.Errorf("mlskeys: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Keyring{suite: suite, epochBits: epochBits, grace: grace, now: now, counters: counters, receiver: receiver}, nil
}

// Epoch returns the current epoch number and whether one is set.
func (k *Keyring) Epoch() (uint64, bool) {
	if k.current == nil {
		return 0, false
	}
	return k.current.epoch, true
}

// KeyID returns the KID this member sends under in the current epoch for
// the stream of the given context.
func (k *Keyring) KeyID(context uint64) (uint64, error) {
	if k.current == nil {
		return 0, ErrNoEpoch
	}
	return KeyID(context, k.current.leaf, k.current.epoch, k.epochBits, k.current.indexBits)
}

// SetEpoch moves the keyring to g's epoch: it exports the epoch's base key,
// ends the senders of the epoch it replaces, keeps that epoch readable for
// the grace period, and drops anything older. The epoch must be newer than
// the current one. As RFC 9605 requires, an old epoch whose low epochBits
// equal the new one's is dropped at once, grace or not.
func (k *Keyring) SetEpoch(g Group) error {
	epoch, leaf, leafCount := g.Epoch(), g.LeafIndex(), g.LeafCount()
	if k.current != nil && epoch <= k.current.epoch {
		return fmt.Errorf("mlskeys: epoch %d after %d: %w", epoch, k.current.epoch, ErrStaleEpoch)
	}
	if leaf >= leafCount {
		return fmt.Errorf("mlskeys: leaf index %d in a tree of %d leaves: %w", leaf, leafCount, ErrBadLayout)
	}
	indexBits := IndexBits(leafCount)
	if _, err := KeyID(0, leaf, epoch, k.epochBits, indexBits); err != nil {
		return err
	}
	baseKey, err := g.Export(ExporterLabel, nil, k.suite.KeySize())
	if err != nil {
		return fmt.Errorf("mlskeys: export base key of epoch %d: %w", epoch, err)
	}
	if len(baseKey) != k.suite.KeySize() {
		clear(baseKey)
		return fmt.Errorf("mlskeys: exporter returned %d bytes, want %d: %w", len(baseKey), k.suite.KeySize(), ErrBadExport)
	}

	k.drop(k.previous)
	k.previous = nil
	if old := k.current; old != nil {
		if k.grace == 0 || k.slot(old.epoch) == k.slot(epoch) {
			k.drop(old)
		} else {
			old.expires = k.now().Add(k.grace)
			k.previous = old
		}
	}
	k.current = &epochKeys{epoch: epoch, baseKey: baseKey, leaf: leaf, leafCount: leafCount, indexBits: indexBits, kids: make(map[uint64]struct{})}
	k.streams = make(map[uint64]*stream)
	return nil
}

// Protect encrypts plaintext under this member's KID of the current epoch
// for the stream of the given context (RFC 9605, Section 5.2: the context
// tells apart the streams of one sender; 0 gives the shortest header); see
// sframe.Sender.Protect. The first frame of a stream, and every
// CounterBlock-th after it, first reserves counters in the CounterStore;
// if that fails, no frame is produced.
func (k *Keyring) Protect(context uint64, dst, metadata, plaintext []byte) ([]byte, error) {
	if k.current == nil {
		return nil, ErrNoEpoch
	}
	s := k.streams[context]
	if s == nil || s.sender.NextCounter() >= s.limit {
		var err error
		if s, err = k.reserve(context, s); err != nil {
			return nil, err
		}
	}
	return s.sender.Protect(dst, metadata, plaintext)
}

// reserve takes the next block of counters for the stream of context from
// the store, starting the stream's sender if s is nil.
func (k *Keyring) reserve(context uint64, s *stream) (*stream, error) {
	ep := k.current
	kid, err := KeyID(context, ep.leaf, ep.epoch, k.epochBits, ep.indexBits)
	if err != nil {
		return nil, err
	}
	floor, err := k.counters.Reserve(ep.epoch, kid, CounterBlock)
	if err != nil {
		return nil, fmt.Errorf("mlskeys: reserve counters of key id %d in epoch %d: %w: %w", kid, ep.epoch, ErrCounterStore, err)
	}
	if s == nil {
		sender, err := sframe.NewSender(k.suite, kid, ep.baseKey)
		if err != nil {
			return nil, fmt.Errorf("mlskeys: %w", err)
		}
		s = &stream{sender: sender}
		k.streams[context] = s
	} else if floor < s.limit {
		// The store granted counters it had granted before: it lost
		// writes, and resuming could reuse nonces.
		return nil, fmt.Errorf("mlskeys: key id %d in epoch %d: store floor %d below the %d already reserved: %w", kid, ep.epoch, floor, s.limit, ErrCounterStore)
	}
	if err := s.sender.SetNextCounter(floor); err != nil {
		return nil, fmt.Errorf("mlskeys: %w", err)
	}
	s.limit = floor + CounterBlock
	if s.limit < floor {
		s.limit = math.MaxUint64
	}
	return s, nil
}

// Unprotect decrypts a frame from any member of the current epoch, or of the
// previous one during its grace period; see sframe.Receiver.Unprotect. Besides
// the errors of package sframe it returns ErrUnknownEpoch and
// ErrEpochExpired for frames from epochs it no longer (or does not yet)
// hold, ErrOwnFrame for a frame under this member's own leaf (any context),
// and ErrTooManyKeys when an epoch has seen MaxKeysPerEpoch KIDs.
func (k *Keyring) Unprotect(dst, metadata, frame []byte) ([]byte, error) {
	h, _, err := sframe.ParseHeader(frame)
	if err != nil {
		return nil, fmt.Errorf("mlskeys: %w", err)
	}
	ep, err := k.epochOf(h.KeyID)
	if err != nil {
		return nil, err
	}
	if _, ok := ep.kids[h.KeyID]; ok {
		return k.receiver.Unprotect(dst, metadata, frame)
	}
	// First frame under this KID: derive its key, and keep it only if the
	// frame authenticates, so that forged KIDs leave nothing behind.
	sender := h.KeyID >> k.epochBits & lowBits(ep.indexBits)
	if sender >= uint64(ep.leafCount) {
		return nil, fmt.Errorf("mlskeys: key id %d names leaf %d of %d in epoch %d: %w", h.KeyID, sender, ep.leafCount, ep.epoch, sframe.ErrUnknownKeyID)
	}
	if sender == uint64(ep.leaf) {
		return nil, fmt.Errorf("mlskeys: key id %d in epoch %d: %w", h.KeyID, ep.epoch, ErrOwnFrame)
	}
	if len(ep.kids) >= MaxKeysPerEpoch {
		return nil, fmt.Errorf("mlskeys: epoch %d: %w", ep.epoch, ErrTooManyKeys)
	}
	if err := k.receiver.AddKey(h.KeyID, ep.baseKey); err != nil {
		return nil, fmt.Errorf("mlskeys: %w", err)
	}
	out, err := k.receiver.Unprotect(dst, metadata, frame)
	if err != nil {
		k.receiver.RemoveKey(h.KeyID)
		return nil, err
	}
	ep.kids[h.KeyID] = struct{}{}
	return out, nil
}

// epochOf finds the epoch a KID belongs to from its low epochBits. Only
// frames of the previous epoch consult the clock.
func (k *Keyring) epochOf(kid uint64) (*epochKeys, error) {
	slot := kid & lowBits(k.epochBits)
	if k.current != nil && k.slot(k.current.epoch) == slot {
		return k.current, nil
	}
	if k.previous != nil && k.slot(k.previous.epoch) == slot {
		if !k.now().Before(k.previous.expires) {
			epoch := k.previous.epoch
			k.drop(k.previous)
			k.previous = nil
			return nil, fmt.Errorf("mlskeys: key id %d of epoch %d: %w", kid, epoch, ErrEpochExpired)
		}
		return k.previous, nil
	}
	return nil, fmt.Errorf("mlskeys: key id %d, epoch bits %d: %w", kid, slot, ErrUnknownEpoch)
}

func (k *Keyring) slot(epoch uint64) uint64 { return epoch & lowBits(k.epochBits) }

// drop removes an epoch's receiving keys and zeroes its base key.
func (k *Keyring) drop(ep *epochKeys) {
	if ep == nil {
		return
	}
	for kid := range ep.kids {
		k.receiver.RemoveKey(kid)
	}
	clear(ep.kids)
	clear(ep.baseKey)
}
