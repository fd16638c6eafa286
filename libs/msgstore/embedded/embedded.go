// Package embedded is the single-node [msgstore.Store]: the inboxes live in a Pebble
// database (an LSM tree with a write-ahead log) in the data dir; see docs/storage.md.
//
// Pebble keeps in memory only its memtables and a block cache of fixed size, so the
// store's memory does not grow with the number of stored messages (the segmented log
// this replaces kept an index of about 100 bytes per message in memory). Appends are
// made durable by Pebble's write-ahead log, whose commit pipeline shares one fsync among
// every append in flight: throughput grows with the number of concurrent appenders while
// an idle store commits at once. Acknowledgement deletes are written without waiting for
// a sync; they become durable with the next append's.
package embedded

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// DirName is the conventional directory of the message store inside the data dir.
const DirName = "msgstore"

const (
	defaultReclaimInterval = time.Minute
	// defaultCacheSize and defaultMemTableSize bound Pebble's memory: the block cache,
	// and up to memTableStopWrites memtables (one taking writes, the others being
	// flushed). Together about 192 MiB at most, whatever the number of messages.
	defaultCacheSize    = 64 << 20
	defaultMemTableSize = 32 << 20
	memTableStopWrites  = 4
	// reclaimChunk is how many expired messages one reclaim batch drops.
	reclaimChunk = 1024
	// inboxStripes is how many locks the inboxes are spread over.
	inboxStripes = 256
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// ReclaimInterval is how often expired messages are deleted and so dropped from
	// Count (default one minute).
	ReclaimInterval time.Duration
	// Now is the clock for expiry (default time.Now).
	Now func() time.Time
	// OnError receives errors of background work that has no caller to report to:
	// reclaiming expired messages, and Pebble's own background errors. Nil drops them.
	OnError func(error)
	// CacheSize and MemTableSize override Pebble's block cache (default 64 MiB) and
	// memtable size (default 32 MiB), for tests and benchmarks.
	CacheSize, MemTableSize int64

	// fs replaces the file system, for tests that inject failures.
	fs vfs.FS
}

// Store is a msgstore.Store in one directory.
type Store struct {
	db      *pebble.DB
	now     func() time.Time
	onError func(error)

	// mu guards closed: every call holds it for reading while it uses db, Close for
	// writing, so db is never used after it was closed.
	mu     sync.RWMutex
	closed bool

	// stripes serialize the writes of an inbox: a write looks up the ids it depends on
	// and queues its batch, visible, before another write of the same inbox looks. Writes
	// of different inboxes look up in parallel.
	stripes [inboxStripes]sync.Mutex
	// wmu orders the batches that take sequence numbers: they enter Pebble's log in
	// sequence order. It is held only to number and queue a batch, never across a
	// lookup or an fsync, so appends in flight share one fsync.
	wmu     sync.Mutex
	lastSeq uint64 // guarded by wmu

	// durableSeq is the highest sequence number up to which every append is durable.
	// Pebble makes a batch visible before its fsync; reads stop before the first message
	// above durableSeq, so nobody sees, or holds a cursor past, a message a power cut
	// can still take back (its sequence number would then be given out again). Batches
	// enter the log in sequence order (under wmu) and an fsync covers everything before
	// it, so the highest sequence number of a synced batch is such a bound.
	durableSeq atomic.Uint64

	// broken holds the first failed write: the store refuses writes from then on, and
	// Ready reports it.
	broken atomic.Pointer[error]

	stop    chan struct{}
	stopped chan struct{}
}

var _ msgstore.Store = (*Store)(nil)

// Open opens or creates the store in dir. Pebble creates the directory and syncs its
// parents, so a power cut cannot lose it with everything synced inside. The directory is
// locked against a second Open, from this or another process, until Close.
func Open(dir string, opts Options) (*Store, error) {
	s := &Store{now: opts.Now, onError: opts.OnError, stop: make(chan struct{}), stopped: make(chan struct{})}
	if s.now == nil {
		s.now = time.Now
	}
	cache := pebble.NewCache(cmp.Or(opts.CacheSize, defaultCacheSize))
	defer cache.Unref()
	popts := &pebble.Options{
		Cache:                       cache,
		MemTableSize:                uint64(cmp.Or(opts.MemTableSize, defaultMemTableSize)),
		MemTableStopWritesThreshold: memTableStopWrites,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      logger{s},
		FS:                          opts.fs,
		Merger:                      countMerger,
	}
	// Bloom filters on every level: an append looks up its id, which is almost never
	// there, and a filter answers that without reading the table.
	popts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("open msgstore %s: %w", dir, err)
	}
	s.db = db
	v, closer, err := db.Get([]byte{prefixSeq})
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		db.Close()
		return nil, fmt.Errorf("open msgstore: read sequence number: %w", err)
	default:
		s.lastSeq, err = decodeUint64("sequence number", v)
		closer.Close()
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open msgstore: %w", err)
		}
	}
	s.durableSeq.Store(s.lastSeq)
	// What expired while the store was closed goes now, so Count is exact after Open.
	if err := s.Reclaim(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open msgstore: %w", err)
	}
	go s.reclaimLoop(cmp.Or(opts.ReclaimInterval, defaultReclaimInterval))
	return s, nil
}

// logger routes Pebble's log: errors to Options.OnError, the rest nowhere.
type logger struct{ s *Store }

func (l logger) Infof(string, ...any) {}
func (l logger) Errorf(format string, args ...any) {
	l.s.report(fmt.Errorf("msgstore: pebble: "+format, args...))
}
func (l logger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("msgstore: pebble: "+format, args...))
}

func (s *Store) report(err error) {
	if s.onError != nil {
		s.onError(err)
	}
}

// enter checks that the store is open and holds it open until the returned func runs.
func (s *Store) enter(ctx context.Context) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, msgstore.ErrClosed
	}
	return s.mu.RUnlock, nil
}

// writable is enter for writes: it also refuses them after a failed write.
func (s *Store) writable(ctx context.Context) (func(), error) {
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, err
	}
	if p := s.broken.Load(); p != nil {
		leave()
		return nil, *p
	}
	return leave, nil
}

// fail records a failed write: the database may hold it in memory without it being
// durable, so no later write may be acknowledged until the store is reopened.
func (s *Store) fail(err error) error {
	err = fmt.Errorf("msgstore: write failed, reopen to recover: %w", err)
	s.broken.CompareAndSwap(nil, &err)
	return err
}

// commit applies b durably. The caller holds wmu and the stripes unlock releases;
// commit releases both as soon as the batch is queued and visible, so that the fsync is
// shared with the batches queued meanwhile. seq is the highest sequence number b holds,
// 0 if none.
func (s *Store) commit(b *pebble.Batch, seq uint64, unlock func()) error {
	err := s.db.ApplyNoSyncWait(b, pebble.Sync)
	s.wmu.Unlock()
	unlock()
	if err == nil {
		err = b.SyncWait()
	}
	if err != nil {
		return s.fail(err)
	}
	for {
		d := s.durableSeq.Load()
		if d >= seq || s.durableSeq.CompareAndSwap(d, seq) {
			return nil
		}
	}
}

// lockInboxes locks the stripes of the inboxes, in order, and returns the func that
// unlocks them.
func (s *Store) lockInboxes(ins []msgstore.Inbox) func() {
	var idx []int
	for _, in := range ins {
		h := fnv.New32a()
		h.Write([]byte(in.UserID))
		h.Write([]byte{0})
		h.Write([]byte(in.DeviceID))
		idx = append(idx, int(h.Sum32()%inboxStripes))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		s.stripes[i].Lock()
	}
	return func() {
		for _, i := range idx {
			s.stripes[i].Unlock()
		}
	}
}

// has reports whether key is stored and, if so, returns a copy of its value.
func (s *Store) get(key []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return bytes.Clone(v), true, nil
}

// addCounts adds each inbox's delta to its count in b. Counts are merge operands that
// Pebble sums when they are read, so a write reads no count.
func addCounts(b *pebble.Batch, deltas map[msgstore.Inbox]int) error {
	for in, d := range deltas {
		if d != 0 {
			if err := b.Merge(countKey(in), binary.BigEndian.AppendUint64(nil, uint64(int64(d))), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// countMerger sums the count operands of a key: 8-byte big-endian two's complement.
// Its name is stored in the database, which then refuses to open without it.
var countMerger = &pebble.Merger{
	Name: "guardyn.msgstore.count.v1",
	Merge: func(_, value []byte) (pebble.ValueMerger, error) {
		m := &countSum{}
		return m, m.add(value)
	},
}

type countSum struct{ n int64 }

func (c *countSum) add(v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("%w: count operand of %d bytes, want 8", msgstore.ErrCorrupt, len(v))
	}
	c.n += int64(binary.BigEndian.Uint64(v))
	return nil
}

func (c *countSum) MergeNewer(v []byte) error { return c.add(v) }
func (c *countSum) MergeOlder(v []byte) error { return c.add(v) }
func (c *countSum) Finish(bool) ([]byte, io.Closer, error) {
	return binary.BigEndian.AppendUint64(nil, uint64(c.n)), nil, nil
}

// Append implements msgstore.Store.
func (s *Store) Append(ctx context.Context, msgs []msgstore.Message) error {
	leave, err := s.writable(ctx)
	if err != nil {
		return err
	}
	defer leave()
	if err := msgstore.CheckMessages(msgs); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	ins := make([]msgstore.Inbox, len(msgs))
	for i := range msgs {
		ins[i] = msgs[i].Inbox
	}
	unlock := s.lockInboxes(ins)
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	now := s.now().UnixNano()
	seen := map[string]bool{}
	dup := false
	var fresh []int
	for i := range msgs {
		m := &msgs[i]
		if expiry := unixNano(m.Expiry); expiry != 0 && expiry <= now {
			continue
		}
		ik := idKey(m.Inbox, m.ID)
		if seen[string(ik)] {
			continue
		}
		seen[string(ik)] = true
		if _, ok, err := s.get(ik); err != nil {
			return fmt.Errorf("msgstore: look up message %x: %w", m.ID, err)
		} else if ok {
			dup = true
			continue
		}
		fresh = append(fresh, i)
	}
	if len(fresh) == 0 {
		if !dup {
			return nil
		}
		// Every message was already stored, perhaps by an append still waiting for its
		// fsync: answer only once that is durable too.
		if err := s.db.LogData(nil, pebble.Sync); err != nil {
			return s.fail(err)
		}
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	deltas := map[msgstore.Inbox]int{}
	var value []byte
	s.wmu.Lock()
	for _, i := range fresh {
		m := &msgs[i]
		expiry := unixNano(m.Expiry)
		s.lastSeq++
		seq := s.lastSeq
		value = appendValue(value[:0], m)
		err := errors.Join(
			b.Set(messageKey(m.Inbox, seq), value, nil),
			b.Set(idKey(m.Inbox, m.ID), binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, seq), uint64(expiry)), nil))
		if err == nil && expiry != 0 {
			err = b.Set(expiryKey(expiry, m.Inbox, seq), nil, nil)
		}
		if err != nil {
			s.wmu.Unlock()
			return fmt.Errorf("msgstore: append: %w", err)
		}
		deltas[m.Inbox]++
	}
	if err := errors.Join(addCounts(b, deltas),
		b.Set([]byte{prefixSeq}, binary.BigEndian.AppendUint64(nil, s.lastSeq), nil)); err != nil {
		s.wmu.Unlock()
		return fmt.Errorf("msgstore: append: %w", err)
	}
	locked = false
	return s.commit(b, s.lastSeq, unlock)
}

// Delete implements msgstore.Store. The messages are gone for readers at once; the
// delete becomes durable with the next append's fsync (or Close).
func (s *Store) Delete(ctx context.Context, in msgstore.Inbox, ids []msgstore.ID) error {
	leave, err := s.writable(ctx)
	if err != nil {
		return err
	}
	defer leave()
	if err := in.Validate(); err != nil {
		return err
	}
	if err := msgstore.CheckIDs(ids); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	defer s.lockInboxes([]msgstore.Inbox{in})()
	n := 0
	for _, id := range ids {
		ik := idKey(in, id)
		v, ok, err := s.get(ik)
		if err != nil {
			return fmt.Errorf("msgstore: look up message %x: %w", id, err)
		}
		if !ok {
			continue
		}
		if len(v) != 16 {
			return fmt.Errorf("%w: id entry of %d bytes, want 16", msgstore.ErrCorrupt, len(v))
		}
		seq, expiry := binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:]))
		err = errors.Join(b.Delete(ik, nil), b.Delete(messageKey(in, seq), nil))
		if err == nil && expiry != 0 {
			err = b.Delete(expiryKey(expiry, in, seq), nil)
		}
		if err != nil {
			return fmt.Errorf("msgstore: delete: %w", err)
		}
		n++
	}
	if n == 0 {
		return nil
	}
	if err := addCounts(b, map[msgstore.Inbox]int{in: -n}); err != nil {
		return fmt.Errorf("msgstore: delete: %w", err)
	}
	if err := s.db.Apply(b, pebble.NoSync); err != nil {
		return s.fail(err)
	}
	return nil
}

// DeleteInbox implements msgstore.Store. It is durable when it returns.
func (s *Store) DeleteInbox(ctx context.Context, in msgstore.Inbox) error {
	leave, err := s.writable(ctx)
	if err != nil {
		return err
	}
	defer leave()
	if err := in.Validate(); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	unlock := s.lockInboxes([]msgstore.Inbox{in})
	s.wmu.Lock()
	// Expiry entries of the inbox's messages stay until they expire; Reclaim then
	// finds their message gone and drops them.
	mp, ip := inboxPrefix(prefixMessage, in), inboxPrefix(prefixID, in)
	if err := errors.Join(
		b.DeleteRange(mp, prefixEnd(mp), nil),
		b.DeleteRange(ip, prefixEnd(ip), nil),
		b.Delete(countKey(in), nil)); err != nil {
		s.wmu.Unlock()
		unlock()
		return fmt.Errorf("msgstore: delete inbox: %w", err)
	}
	return s.commit(b, 0, unlock)
}

// prefixEnd returns the first key after every key starting with p, which never ends in
// 0xff here: every prefix ends in an inbox's device id length or name.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i]++; end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// Read implements msgstore.Store. The budget counts each message's key and value, which
// hold the body and at most msgstore.ReadOverhead bytes more.
func (s *Store) Read(ctx context.Context, in msgstore.Inbox, after msgstore.Cursor, limit, maxBytes int) ([]msgstore.Message, error) {
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer leave()
	if err := msgstore.CheckReadBytes(maxBytes); err != nil {
		return nil, err
	}
	var out []msgstore.Message
	total := 0
	err = s.scan(in, after, limit, func(seq uint64, key, value []byte) (bool, error) {
		size := len(key) + len(value)
		if len(out) > 0 && size > maxBytes-total {
			return false, nil
		}
		m, err := decodeValue(value)
		if err != nil {
			return false, err
		}
		m.Inbox = in
		m.Body = bytes.Clone(m.Body)
		m.Cursor = binary.BigEndian.AppendUint64(nil, seq)
		out = append(out, m)
		total += size
		return true, nil
	})
	return out, err
}

// ReadIDs implements msgstore.Store.
func (s *Store) ReadIDs(ctx context.Context, in msgstore.Inbox, after msgstore.Cursor, limit int) ([]msgstore.ID, msgstore.Cursor, error) {
	leave, err := s.enter(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer leave()
	var ids []msgstore.ID
	var last uint64
	err = s.scan(in, after, limit, func(seq uint64, _, value []byte) (bool, error) {
		ids = append(ids, msgstore.ID(value[:16]))
		last = seq
		return true, nil
	})
	if err != nil || len(ids) == 0 {
		return nil, after, err
	}
	return ids, binary.BigEndian.AppendUint64(nil, last), nil
}

// scan calls fn for up to limit unexpired messages of in after the cursor, in order,
// until fn returns false. The key and value are only valid during the call; the value
// holds at least a value header.
func (s *Store) scan(in msgstore.Inbox, after msgstore.Cursor, limit int, fn func(seq uint64, key, value []byte) (bool, error)) error {
	if err := in.Validate(); err != nil {
		return err
	}
	if err := msgstore.CheckLimit(limit); err != nil {
		return err
	}
	var afterSeq uint64
	switch len(after) {
	case 0:
	case 8:
		afterSeq = binary.BigEndian.Uint64(after)
	default:
		return fmt.Errorf("%w: cursor of %d bytes", msgstore.ErrInvalid, len(after))
	}
	if afterSeq == math.MaxUint64 {
		return nil
	}
	prefix := inboxPrefix(prefixMessage, in)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: messageKey(in, afterSeq+1), UpperBound: prefixEnd(prefix)})
	if err != nil {
		return fmt.Errorf("msgstore: read %s: %w", in, err)
	}
	now := s.now().UnixNano()
	durable := s.durableSeq.Load()
	n := 0
	for ok := it.First(); ok && n < limit; ok = it.Next() {
		key := it.Key()
		value, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("msgstore: read %s: %w", in, err)
		}
		if len(key) != len(prefix)+8 || len(value) < valueHeaderSize {
			it.Close()
			return fmt.Errorf("%w: message entry of %s with a %d-byte key and a %d-byte value", msgstore.ErrCorrupt, in, len(key), len(value))
		}
		seq := binary.BigEndian.Uint64(key[len(prefix):])
		if seq > durable {
			break // and so is everything after it
		}
		if expiry := int64(binary.BigEndian.Uint64(value[25:])); expiry != 0 && expiry <= now {
			continue
		}
		more, err := fn(seq, key, value)
		if err != nil {
			it.Close()
			return err
		}
		if !more {
			break
		}
		n++
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("msgstore: read %s: %w", in, err)
	}
	return nil
}

// Count implements msgstore.Store. It includes expired messages until they are
// reclaimed.
func (s *Store) Count(ctx context.Context, in msgstore.Inbox) (int, error) {
	leave, err := s.enter(ctx)
	if err != nil {
		return 0, err
	}
	defer leave()
	if err := in.Validate(); err != nil {
		return 0, err
	}
	v, ok, err := s.get(countKey(in))
	if err != nil || !ok {
		return 0, err
	}
	n, err := decodeUint64("count of "+in.String(), v)
	if int64(n) < 0 {
		return 0, fmt.Errorf("%w: count of %s is %d", msgstore.ErrCorrupt, in, int64(n))
	}
	return int(min(n, math.MaxInt32)), err
}

// Reclaim deletes expired messages now instead of at the next ReclaimInterval, so Count
// stops counting them.
func (s *Store) Reclaim(ctx context.Context) error {
	leave, err := s.writable(ctx)
	if err != nil {
		return err
	}
	defer leave()
	for {
		n, err := s.reclaimChunk()
		if err != nil || n < reclaimChunk {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

func (s *Store) reclaimLoop(every time.Duration) {
	defer close(s.stopped)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			if err := s.Reclaim(context.Background()); err != nil && !errors.Is(err, msgstore.ErrClosed) {
				s.report(fmt.Errorf("msgstore: reclaim: %w", err))
			}
		}
	}
}

// reclaimChunk deletes up to reclaimChunk expired messages, oldest expiry first, and
// returns how many expiry entries it visited.
func (s *Store) reclaimChunk() (int, error) {
	now := s.now().UnixNano()
	upper := binary.BigEndian.AppendUint64([]byte{prefixExpiry}, uint64(now)+1)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixExpiry}, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	var keys [][]byte
	for ok := it.First(); ok && len(keys) < reclaimChunk; ok = it.Next() {
		keys = append(keys, bytes.Clone(it.Key()))
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	if len(keys) == 0 {
		return 0, nil
	}
	ins := make([]msgstore.Inbox, len(keys))
	seqs := make([]uint64, len(keys))
	for i, xk := range keys {
		if ins[i], seqs[i], err = decodeExpiryKey(xk); err != nil {
			return 0, err
		}
	}
	b := s.db.NewBatch()
	defer b.Close()
	defer s.lockInboxes(ins)()
	deltas := map[msgstore.Inbox]int{}
	for i, xk := range keys {
		in, seq := ins[i], seqs[i]
		if err := b.Delete(xk, nil); err != nil {
			return 0, err
		}
		mk := messageKey(in, seq)
		v, ok, err := s.get(mk)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue // deleted with its inbox
		}
		m, err := decodeValue(v)
		if err != nil {
			return 0, err
		}
		if err := errors.Join(b.Delete(mk, nil), b.Delete(idKey(in, m.ID), nil)); err != nil {
			return 0, err
		}
		deltas[in]--
	}
	if err := addCounts(b, deltas); err != nil {
		return 0, err
	}
	// Losing a reclaim in a crash costs nothing: the next one does it again.
	if err := s.db.Apply(b, pebble.NoSync); err != nil {
		return 0, s.fail(err)
	}
	return len(keys), nil
}

// Close implements msgstore.Store and releases the directory. Pebble syncs its log on
// Close, which makes every delete durable: a clean shutdown redelivers nothing
// (TestPowerLossAfterClose).
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return msgstore.ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.stopped
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close msgstore: %w", err)
	}
	return nil
}
