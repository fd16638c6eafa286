// Package embedded is the single-node [msgstore.Store]: an append-only segmented log in
// the data dir with group commit and an in-memory index per inbox; see docs/storage.md.
//
// All writes go through one committer goroutine. Appends queued while a commit is
// syncing form the next commit: one write and one fdatasync for all of them, so
// throughput grows with the number of concurrent appenders while an idle store commits
// at once. Segments are zero-filled ahead of time so that the sync flushes data only.
// Acknowledgement deletes update the index at once and ride along in the next write
// without waiting for a sync. Open replays the log to rebuild the index, cutting a torn
// tail off the last segment with records. Segments are compacted oldest first by
// copying their live records forward.
package embedded

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/embedded/internal/record"
)

// DirName is the conventional directory of the message log inside the data dir.
const DirName = "msgstore"

const (
	defaultSegmentSize     = 32 << 20
	defaultReclaimInterval = time.Minute
	// maxBatchRequests and maxBatchBytes bound how many calls share one commit; a
	// single Append may exceed maxBatchBytes alone.
	maxBatchRequests = 1024
	maxBatchBytes    = 16 << 20
	// maxSegmentSize bounds Options.SegmentSize so that every offset in a segment,
	// which may outgrow it by one batch, fits the index's 32 bits (maxSegmentBytes).
	maxSegmentSize  = 1 << 30
	maxSegmentBytes = math.MaxUint32 >> 1
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// SegmentSize is the size at which the active segment is closed and a new one
	// started (default 32 MiB, at most 1 GiB). Segments after a new store's first are
	// zero-filled to	// this size in the background once the active one is half full.
	SegmentSize int64
	// ReclaimInterval is how often expired messages are dropped from the index and
	// so from Count (default one minute).
	ReclaimInterval time.Duration
	// Now is the clock for expiry (default time.Now).
	Now func() time.Time
	// OnError receives errors of background work that has no caller to report to:
	// writing deletes, compaction, and torn tails cut off on Open. Nil drops them.
	OnError func(error)
}

// Store is a msgstore.Store in one directory.
type Store struct {
	dir         string
	segmentSize int64
	now         func() time.Time
	onError     func(error)
	lock        *os.File

	// sendMu guards closed and sending on reqs, so Close never races a send.
	sendMu  sync.RWMutex
	closed  bool
	reqs    chan *request
	stopped chan struct{}
	tick    *time.Ticker

	// mu guards the index: inboxes, the live and size fields of segments and the
	// segment list. Readers copy locations out under it and read files without it.
	mu       sync.RWMutex
	inboxes  map[msgstore.Inbox]*inbox
	segments []*segment
	// arena holds the inboxes' entries outside the Go heap; released by Close.
	arena *arena
	// seed keys the id fingerprints of the index.
	seed maphash.Seed
	// filesClosed is set by Close, for readers that passed the closed check before it.
	filesClosed bool

	// broken is failed, published for Ready.
	broken atomic.Pointer[error]

	// Owned by the committer goroutine.
	nextSeq  uint64
	failed   error
	unsynced bool
	spare    chan spareResult // a spare segment under way
	ready    *spareResult     // a spare segment created
	buf      []byte
	ops      []op
}

var _ msgstore.Store = (*Store)(nil)

// request is one call waiting for the committer; exactly one of the payload fields is
// set. done is nil for lazily durable deletes.
type request struct {
	msgs        []msgstore.Message
	deleteInbox *msgstore.Inbox
	deleted     *tombstone
	done        chan error
	size        int // body bytes, for bounding a batch
}

type tombstone struct {
	inbox msgstore.Inbox
	seqs  []uint64
}

// entry locates one message of an inbox in the log. It is kept small, 28 bytes without
// pointers, because the index holds one per stored message (docs/storage.md: 10 M
// undelivered messages must fit in a few hundred MB): the id is kept only as a 32-bit
// keyed hash and confirmed against the record on disk when the hash matches, and the
// expiry is kept in whole seconds rounded up and checked exactly on the record read.
type entry struct {
	seqLo, seqHi uint32 // the sequence number, split so the struct needs no padding
	fp           uint32 // fingerprint of the id under the store's hash seed
	seg          uint32 // id of the segment holding the record
	off          uint32 // offset of the record in the segment
	n            uint32 // record length, with entryDead set once the message is gone
	expiry       uint32 // Unix seconds rounded up; 0 is never
}

const entryDead = 1 << 31

func (e *entry) seq() uint64       { return uint64(e.seqHi)<<32 | uint64(e.seqLo) }
func (e *entry) setSeq(seq uint64) { e.seqLo, e.seqHi = uint32(seq), uint32(seq>>32) }
func (e *entry) size() int64       { return int64(e.n &^ entryDead) }
func (e *entry) dead() bool        { return e.n&entryDead != 0 }

// expired reports whether the message is certainly expired at now (Unix nanoseconds).
// The expiry is rounded up, so a message may pass this check up to a second after it
// expired; readers check the exact expiry in the record.
func (e *entry) expired(now int64) bool {
	return e.expiry != 0 && int64(e.expiry) <= now/1e9
}

// expirySeconds rounds t up to whole Unix seconds for entry.expiry; the zero time is
// never. Expiry times after 2106 are kept as 2106.
func expirySeconds(t time.Time) uint32 {
	if t.IsZero() {
		return 0
	}
	ns := t.UnixNano()
	if ns <= 0 {
		return 1 // already expired at any clock the store runs with
	}
	sec := (ns + 1e9 - 1) / 1e9
	return uint32(min(sec, math.MaxUint32))
}

// expiredAt reports whether m is expired at now (Unix nanoseconds), exactly.
func expiredAt(m *msgstore.Message, now int64) bool {
	return !m.Expiry.IsZero() && m.Expiry.UnixNano() <= now
}

// inbox is the index of one device's messages: entries in sequence order, with dead
// ones removed in bulk once they are half of the slice. The entries are a block of the
// store's arena, in chunk; only the arena allocates, grows or frees them.
type inbox struct {
	entries []entry
	chunk   *chunk
	live    int
	dead    int
	// fps maps the fingerprints of the live entries to their sequence numbers, or to
	// 0 where two share one, once the inbox has bigInbox entries; smaller inboxes are
	// searched by a pass over entries, which costs no memory.
	fps map[uint32]uint64
}

// bigInbox is the size from which an inbox keeps fps, so that looking an id up in
// it, as every Append does, does not take a pass over all its entries.
const bigInbox = 256

// indexFP records entry i in fps, building fps once the inbox is big.
func (ib *inbox) indexFP(i int) {
	if ib.fps == nil {
		if len(ib.entries) < bigInbox {
			return
		}
		ib.fps = make(map[uint32]uint64, len(ib.entries))
		for j := range ib.entries {
			if e := &ib.entries[j]; !e.dead() && j != i {
				ib.putFP(e)
			}
		}
	}
	ib.putFP(&ib.entries[i])
}

func (ib *inbox) putFP(e *entry) {
	if _, ok := ib.fps[e.fp]; ok {
		ib.fps[e.fp] = 0 // shared: look it up by a pass over entries
		return
	}
	ib.fps[e.fp] = e.seq()
}

func (ib *inbox) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(ib.entries, seq, func(e entry, seq uint64) int { return cmp.Compare(e.seq(), seq) })
}

// add appends e, which has the highest sequence number of the inbox, growing the block
// to the next size class of a, an eighth bigger, rather than doubling it: the index is
// most of the store's memory.
func (ib *inbox) add(a *arena, e entry) {
	ib.reserve(a)
	ib.entries = append(ib.entries, e)
	ib.live++
	ib.indexFP(len(ib.entries) - 1)
}

// reserve makes room in the block for one more entry.
func (ib *inbox) reserve(a *arena) {
	if len(ib.entries) == cap(ib.entries) {
		ib.entries, ib.chunk = a.resize(ib.entries, ib.chunk, len(ib.entries)+1)
	}
}

// kill marks entry i dead; the caller holds mu.
func (s *Store) kill(ib *inbox, i int) {
	e := &ib.entries[i]
	if seg := s.segment(e.seg); seg != nil {
		seg.live -= e.size()
	}
	e.n |= entryDead
	ib.live--
	ib.dead++
	if seq, ok := ib.fps[e.fp]; ok && seq == e.seq() {
		delete(ib.fps, e.fp)
	}
}

// sweep removes the dead entries once they are half of the inbox and moves the rest
// to a block of their size, so that a draining inbox gives its memory back.
func (ib *inbox) sweep(a *arena) {
	if ib.dead < 32 || 2*ib.dead < len(ib.entries) {
		return
	}
	ib.entries = slices.DeleteFunc(ib.entries, func(e entry) bool { return e.dead() })
	ib.dead = 0
	if a.capacity(len(ib.entries)) < cap(ib.entries) {
		ib.entries, ib.chunk = a.resize(ib.entries, ib.chunk, len(ib.entries))
	}
}

// segment returns the open segment with id, or nil; the caller holds mu.
func (s *Store) segment(id uint32) *segment {
	i, ok := slices.BinarySearchFunc(s.segments, uint64(id), func(seg *segment, id uint64) int { return cmp.Compare(seg.id, id) })
	if !ok {
		return nil
	}
	return s.segments[i]
}

// fingerprint is the index's hash of an id, keyed per store so that no client can
// choose ids that collide and make lookups read the log.
func (s *Store) fingerprint(id msgstore.ID) uint32 {
	return uint32(maphash.Bytes(s.seed, id[:]))
}

// findID returns the index of the live entry of ib whose record holds id, reading the
// log for the entries whose fingerprint matches; the caller holds mu.
func (s *Store) findID(ib *inbox, id msgstore.ID) (int, bool, error) {
	fp := s.fingerprint(id)
	if ib.fps != nil {
		seq, ok := ib.fps[fp]
		if !ok {
			return 0, false, nil
		}
		if seq != 0 {
			i, ok := ib.find(seq)
			if !ok || ib.entries[i].dead() {
				return 0, false, nil
			}
			got, err := s.readID(&ib.entries[i])
			return i, err == nil && got == id, err
		}
	}
	for i := range ib.entries {
		e := &ib.entries[i]
		if e.fp != fp || e.dead() {
			continue
		}
		got, err := s.readID(e)
		if err != nil {
			return 0, false, err
		}
		if got == id {
			return i, true, nil
		}
	}
	return 0, false, nil
}

// readID reads the id of e's record from the log; the caller holds mu, so the
// segment stays open.
func (s *Store) readID(e *entry) (msgstore.ID, error) {
	if s.segment(e.seg) == nil {
		return msgstore.ID{}, fmt.Errorf("%w: index names missing segment %d", msgstore.ErrCorrupt, e.seg)
	}
	id, _, err := readHead(s.location(e))
	return id, err
}

// readHead reads the id and exact expiry of the message record at l. A segment
// closed meanwhile gives an error matching os.ErrClosed.
func readHead(l location) (msgstore.ID, time.Time, error) {
	var b [record.MessageHeadSize]byte
	if l.n < int64(len(b)) {
		return msgstore.ID{}, time.Time{}, fmt.Errorf("%w: segment %d at %d: message record of %d bytes", msgstore.ErrCorrupt, l.seg.id, l.off, l.n)
	}
	if _, err := l.seg.f.ReadAt(b[:], l.off); err != nil {
		return msgstore.ID{}, time.Time{}, fmt.Errorf("read message from segment %d at %d: %w", l.seg.id, l.off, err)
	}
	seq, id, expiry, err := record.DecodeMessageHead(b[:])
	if err != nil || seq != l.seq {
		return msgstore.ID{}, time.Time{}, fmt.Errorf("%w: segment %d at %d holds another record", msgstore.ErrCorrupt, l.seg.id, l.off)
	}
	return id, expiry, nil
}

// Open opens or creates the store in dir, replaying its log. The directory is locked
// against a second Open, from this or another process, until Close.
func Open(dir string, opts Options) (*Store, error) {
	if opts.SegmentSize < 0 || opts.SegmentSize > maxSegmentSize {
		return nil, fmt.Errorf("open msgstore: segment size %d: want 0 (the default) to %d", opts.SegmentSize, maxSegmentSize)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open msgstore: %w", err)
	}
	// A new directory's entry is durable only once its parent is synced; without it a
	// power cut can lose the directory with every segment synced inside it.
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return nil, fmt.Errorf("open msgstore: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open msgstore lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("open msgstore %s: in use by another store: %w", dir, err)
	}
	s := &Store{
		dir:         dir,
		segmentSize: cmp.Or(opts.SegmentSize, defaultSegmentSize),
		now:         opts.Now,
		onError:     opts.OnError,
		lock:        lock,
		reqs:        make(chan *request, maxBatchRequests),
		stopped:     make(chan struct{}),
		inboxes:     map[msgstore.Inbox]*inbox{},
		arena:       newArena(),
		seed:        maphash.MakeSeed(),
		nextSeq:     1,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.load(); err != nil {
		s.closeFiles()
		s.arena.release()
		return nil, err
	}
	s.tick = time.NewTicker(cmp.Or(opts.ReclaimInterval, defaultReclaimInterval))
	go s.commitLoop()
	return s, nil
}

// load replays every segment in order to rebuild the index. It builds the index in
// place, so reopening needs no more memory than the index itself.
func (s *Store) load() error {
	ids, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	now := s.now().UnixNano()
	apply := func(seg *segment, r *record.Record, off, n int) error {
		switch r.Type {
		case record.TypeMessage:
			if r.Seq == 0 || r.Seq == math.MaxUint64 {
				return fmt.Errorf("%w: message with sequence number %d", msgstore.ErrCorrupt, r.Seq)
			}
			s.nextSeq = max(s.nextSeq, r.Seq+1)
			ib := s.inboxes[r.Inbox]
			if ib != nil {
				// A second copy of a message with its sequence number is a compaction
				// copy and supersedes the first.
				if i, ok := ib.find(r.Seq); ok {
					if e := &ib.entries[i]; !e.dead() {
						if old := s.segment(e.seg); old != nil {
							old.live -= e.size()
						}
						e.seg, e.off, e.n = uint32(seg.id), uint32(off), uint32(n)
						seg.live += int64(n)
					}
					return nil
				}
			}
			if expiredAt(&r.Message, now) {
				return nil
			}
			if ib == nil {
				ib = &inbox{}
				s.inboxes[r.Inbox] = ib
			}
			e := entry{fp: s.fingerprint(r.Message.ID), seg: uint32(seg.id), off: uint32(off), n: uint32(n), expiry: expirySeconds(r.Message.Expiry)}
			e.setSeq(r.Seq)
			if len(ib.entries) == 0 || ib.entries[len(ib.entries)-1].seq() < r.Seq {
				ib.add(s.arena, e)
			} else {
				// A compaction copy whose original's segment is gone comes after
				// messages appended later. With room reserved, Insert moves the
				// entries within the block.
				i, _ := ib.find(r.Seq)
				ib.reserve(s.arena)
				ib.entries = slices.Insert(ib.entries, i, e)
				ib.live++
				ib.indexFP(i)
			}
			seg.live += int64(n)
		case record.TypeDelete:
			ib := s.inboxes[r.Inbox]
			if ib == nil {
				return nil
			}
			for _, seq := range r.Seqs {
				if i, ok := ib.find(seq); ok && !ib.entries[i].dead() {
					s.kill(ib, i)
				}
			}
			s.dropIfEmpty(r.Inbox, ib)
		case record.TypeDeleteInbox:
			if ib := s.inboxes[r.Inbox]; ib != nil {
				for i := range ib.entries {
					if !ib.entries[i].dead() {
						s.kill(ib, i)
					}
				}
				s.dropInbox(r.Inbox, ib)
			}
		}
		return nil
	}
	// Replay every segment, then decide what its damage means: only the last segment
	// with records can hold a torn commit, and empty segments after it are spares
	// created ahead of time or cut short by a crash while being created.
	type scanned struct {
		seg     *segment
		content bool
		torn    *errTornTail
	}
	var scans []scanned
	for _, id := range ids {
		path := filepath.Join(s.dir, segmentName(id))
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open segment: %w", err)
		}
		seg := &segment{id: id, f: f}
		s.segments = append(s.segments, seg)
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read segment: %w", err)
		}
		if id > math.MaxUint32 || len(data) > maxSegmentBytes {
			return fmt.Errorf("%w: segment %s beyond the index's 32-bit ids and offsets", msgstore.ErrCorrupt, path)
		}
		records := 0
		firstSeq, end, err := scanSegment(data, func(r *record.Record, off, n int) error {
			records++
			return apply(seg, r, off, n)
		})
		seg.size, seg.alloc = int64(end), int64(len(data))
		s.nextSeq = max(s.nextSeq, firstSeq)
		var torn *errTornTail
		if err != nil && !errors.As(err, &torn) {
			return fmt.Errorf("segment %s: %w", path, err)
		}
		scans = append(scans, scanned{seg: seg, content: records > 0 || (torn != nil && torn.validLen > 0), torn: torn})
	}
	last := -1
	for i, sc := range scans {
		if sc.content {
			last = i
		}
	}
	for i, sc := range scans[:last+1] {
		switch {
		case sc.torn == nil:
		case i < last:
			return fmt.Errorf("%w: segment %s: %v", msgstore.ErrCorrupt, segmentName(sc.seg.id), sc.torn)
		default:
			if err := cutTail(sc.seg, int64(sc.torn.validLen)); err != nil {
				return err
			}
			s.report(fmt.Errorf("msgstore: cut the unacknowledged tail of segment %s at offset %d: %w",
				segmentName(sc.seg.id), sc.torn.validLen, sc.torn))
		}
	}
	nextID := uint64(1)
	if len(ids) > 0 {
		nextID = ids[len(ids)-1] + 1
	}
	for _, sc := range scans[last+1:] {
		sc.seg.f.Close()
		if err := os.Remove(filepath.Join(s.dir, segmentName(sc.seg.id))); err != nil {
			return fmt.Errorf("remove empty segment: %w", err)
		}
	}
	s.segments = s.segments[:last+1]
	if len(s.segments) == 0 {
		seg, err := createSegment(s.dir, nextID, s.nextSeq, 0)
		if err != nil {
			return err
		}
		s.segments = append(s.segments, seg)
	}
	return nil
}

// cutTail zeroes everything after the first validLen bytes of the active segment,
// where a crash left a partly written commit that was never acknowledged.
func cutTail(seg *segment, validLen int64) error {
	zeros := make([]byte, 1<<20)
	for off := validLen; off < seg.alloc; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), seg.alloc-off)
		if _, err := seg.f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("cut torn tail of segment %d: %w", seg.id, err)
		}
	}
	if err := seg.f.Sync(); err != nil {
		return fmt.Errorf("sync segment %d after cutting its tail: %w", seg.id, err)
	}
	seg.size = validLen
	return nil
}

func (s *Store) report(err error) {
	if s.onError != nil {
		s.onError(err)
	}
}

// Append implements msgstore.Store.
func (s *Store) Append(ctx context.Context, msgs []msgstore.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := msgstore.CheckMessages(msgs); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	// The committer reads msgs until it answers, so the call waits for the answer even
	// if ctx is canceled meanwhile; a commit takes about one fsync.
	size := 0
	for i := range msgs {
		size += len(msgs[i].Body)
	}
	return s.call(&request{msgs: msgs, done: make(chan error, 1), size: size})
}

// DeleteInbox implements msgstore.Store.
func (s *Store) DeleteInbox(ctx context.Context, in msgstore.Inbox) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := in.Validate(); err != nil {
		return err
	}
	return s.call(&request{deleteInbox: &in, done: make(chan error, 1)})
}

func (s *Store) call(req *request) error {
	s.sendMu.RLock()
	if s.closed {
		s.sendMu.RUnlock()
		return msgstore.ErrClosed
	}
	s.reqs <- req
	s.sendMu.RUnlock()
	return <-req.done
}

// Delete implements msgstore.Store. The messages leave the index at once; the record of
// the delete is written with the next commit and made durable by the next fsync.
func (s *Store) Delete(ctx context.Context, in msgstore.Inbox, ids []msgstore.ID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := in.Validate(); err != nil {
		return err
	}
	if err := msgstore.CheckIDs(ids); err != nil {
		return err
	}
	s.sendMu.RLock()
	defer s.sendMu.RUnlock()
	if s.closed {
		return msgstore.ErrClosed
	}
	// The ids are looked up under the read lock, since that may read the log, and
	// the entries found are killed by sequence number under the write lock, unless a
	// concurrent Delete or DeleteInbox killed them first.
	s.mu.RLock()
	var found []uint64
	var err error
	if ib := s.inboxes[in]; ib != nil {
		found, err = s.findIDs(ib, ids)
	}
	s.mu.RUnlock()
	if err != nil || len(found) == 0 {
		return err
	}
	var seqs []uint64
	s.mu.Lock()
	if ib := s.inboxes[in]; ib != nil {
		for _, seq := range found {
			if i, ok := ib.find(seq); ok && !ib.entries[i].dead() {
				s.kill(ib, i)
				seqs = append(seqs, seq)
			}
		}
		s.dropIfEmpty(in, ib)
	}
	s.mu.Unlock()
	if len(seqs) > 0 {
		s.reqs <- &request{deleted: &tombstone{inbox: in, seqs: seqs}}
	}
	return nil
}

// findIDs returns the sequence numbers of the live entries of ib holding ids; the
// caller holds mu. Without a fingerprint map it passes over the inbox once, reading
// the log only where a fingerprint matches.
func (s *Store) findIDs(ib *inbox, ids []msgstore.ID) ([]uint64, error) {
	var seqs []uint64
	if ib.fps != nil {
		for _, id := range ids {
			i, ok, err := s.findID(ib, id)
			if err != nil {
				return nil, err
			}
			if ok {
				seqs = append(seqs, ib.entries[i].seq())
			}
		}
		return seqs, nil
	}
	want := make(map[uint32]bool, len(ids))
	for _, id := range ids {
		want[s.fingerprint(id)] = true
	}
	for i := range ib.entries {
		e := &ib.entries[i]
		if e.dead() || !want[e.fp] {
			continue
		}
		got, err := s.readID(e)
		if err != nil {
			return nil, err
		}
		if slices.Contains(ids, got) {
			seqs = append(seqs, e.seq())
		}
	}
	return seqs, nil
}

// dropIfEmpty forgets an inbox without live messages; the caller holds mu.
func (s *Store) dropIfEmpty(in msgstore.Inbox, ib *inbox) {
	if ib.live == 0 {
		s.dropInbox(in, ib)
		return
	}
	ib.sweep(s.arena)
}

// dropInbox forgets an inbox and frees its entries; the caller holds mu.
func (s *Store) dropInbox(in msgstore.Inbox, ib *inbox) {
	s.arena.free(ib.entries, ib.chunk)
	ib.entries, ib.chunk = nil, nil
	delete(s.inboxes, in)
}

// A record holds a message's body and at most msgstore.ReadOverhead bytes more, so that
// Read may count records against its budget (this fails to compile otherwise).
var _ [msgstore.ReadOverhead - (record.HeaderSize + record.MaxSize - msgstore.MaxBodySize)]struct{}

// Read implements msgstore.Store. The budget counts whole records, which hold the body
// and at most msgstore.ReadOverhead bytes more; it bounds the one buffer the records are
// read into and the returned bodies alias.
func (s *Store) Read(ctx context.Context, in msgstore.Inbox, after msgstore.Cursor, limit, maxBytes int) ([]msgstore.Message, error) {
	afterSeq, err := checkRead(ctx, in, after, limit)
	if err != nil {
		return nil, err
	}
	if err := msgstore.CheckReadBytes(maxBytes); err != nil {
		return nil, err
	}
	if afterSeq == math.MaxUint64 {
		return nil, nil
	}
	for {
		locs, total, err := s.locate(in, afterSeq, limit, maxBytes)
		if err != nil || len(locs) == 0 {
			return nil, err
		}
		msgs, err := readMessages(locs, total)
		if errors.Is(err, os.ErrClosed) {
			// Compaction moved the messages and closed the old segment while they were
			// read: look them up again.
			continue
		}
		if err != nil {
			return nil, err
		}
		// The index rounds expiry up to the second; the records have it exactly.
		now := s.now().UnixNano()
		msgs = slices.DeleteFunc(msgs, func(m msgstore.Message) bool { return expiredAt(&m, now) })
		if len(msgs) > 0 {
			return msgs, nil
		}
		afterSeq = locs[len(locs)-1].seq
	}
}

// ReadIDs implements msgstore.Store from the index and the heads of the records, which
// hold the ids the index keeps only a hash of.
func (s *Store) ReadIDs(ctx context.Context, in msgstore.Inbox, after msgstore.Cursor, limit int) ([]msgstore.ID, msgstore.Cursor, error) {
	afterSeq, err := checkRead(ctx, in, after, limit)
	if err != nil {
		return nil, nil, err
	}
	if afterSeq == math.MaxUint64 {
		return nil, after, nil
	}
	for {
		locs, _, err := s.locate(in, afterSeq, limit, math.MaxInt)
		if err != nil || len(locs) == 0 {
			return nil, after, err
		}
		ids := make([]msgstore.ID, 0, len(locs))
		var last uint64
		now := s.now().UnixNano()
		for _, l := range locs {
			id, expiry, err := readHead(l)
			if errors.Is(err, os.ErrClosed) {
				break // compaction moved the rest: look them up again
			}
			if err != nil {
				return nil, after, err
			}
			afterSeq = l.seq
			// The index rounds expiry up to the second; the records have it exactly.
			if !expiry.IsZero() && expiry.UnixNano() <= now {
				continue
			}
			ids = append(ids, id)
			last = l.seq
		}
		if len(ids) > 0 {
			return ids, binary.BigEndian.AppendUint64(nil, last), nil
		}
	}
}

// Get implements msgstore.Store from the index and one read of the log.
func (s *Store) Get(ctx context.Context, in msgstore.Inbox, id msgstore.ID) (msgstore.Message, error) {
	if err := ctx.Err(); err != nil {
		return msgstore.Message{}, err
	}
	if err := in.Validate(); err != nil {
		return msgstore.Message{}, err
	}
	for {
		loc, ok, err := s.locateID(in, id)
		if err != nil {
			return msgstore.Message{}, err
		}
		if !ok {
			return msgstore.Message{}, fmt.Errorf("%w: %x in inbox %s", msgstore.ErrNotFound, id[:], in)
		}
		msgs, err := readMessages([]location{loc}, int(loc.n))
		if errors.Is(err, os.ErrClosed) {
			continue // compaction moved it meanwhile: look it up again
		}
		if err != nil {
			return msgstore.Message{}, err
		}
		if expiredAt(&msgs[0], s.now().UnixNano()) {
			return msgstore.Message{}, fmt.Errorf("%w: %x in inbox %s", msgstore.ErrNotFound, id[:], in)
		}
		return msgs[0], nil
	}
}

// locateID returns where the live message id of inbox is, if the index has it.
func (s *Store) locateID(in msgstore.Inbox, id msgstore.ID) (location, bool, error) {
	if s.isClosed() {
		return location{}, false, msgstore.ErrClosed
	}
	now := s.now().UnixNano()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.filesClosed {
		return location{}, false, msgstore.ErrClosed
	}
	ib := s.inboxes[in]
	if ib == nil {
		return location{}, false, nil
	}
	i, ok, err := s.findID(ib, id)
	if err != nil || !ok {
		return location{}, false, err
	}
	e := &ib.entries[i]
	if e.expired(now) {
		return location{}, false, nil
	}
	return s.location(e), true, nil
}

// checkRead validates the arguments Read and ReadIDs share and decodes the cursor.
func checkRead(ctx context.Context, in msgstore.Inbox, after msgstore.Cursor, limit int) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := in.Validate(); err != nil {
		return 0, err
	}
	if err := msgstore.CheckLimit(limit); err != nil {
		return 0, err
	}
	switch len(after) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(after), nil
	default:
		return 0, fmt.Errorf("%w: cursor of %d bytes", msgstore.ErrInvalid, len(after))
	}
}

// location is where a message's record is, copied out of the index so the file can be
// read without holding mu, which would delay commits.
type location struct {
	seg *segment
	off int64
	n   int64
	seq uint64
}

// location returns where e's record is; the caller holds mu.
func (s *Store) location(e *entry) location {
	return location{seg: s.segment(e.seg), off: int64(e.off), n: e.size(), seq: e.seq()}
}

// locate returns up to limit live messages of inbox after afterSeq that fit in maxBytes
// (at least one), and their total size.
func (s *Store) locate(in msgstore.Inbox, afterSeq uint64, limit, maxBytes int) ([]location, int, error) {
	if s.isClosed() {
		return nil, 0, msgstore.ErrClosed
	}
	now := s.now().UnixNano()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.filesClosed {
		return nil, 0, msgstore.ErrClosed
	}
	ib := s.inboxes[in]
	if ib == nil {
		return nil, 0, nil
	}
	i, _ := ib.find(afterSeq + 1)
	var locs []location
	total := 0
	for ; i < len(ib.entries) && len(locs) < limit; i++ {
		e := &ib.entries[i]
		if e.dead() || e.expired(now) {
			continue
		}
		if len(locs) > 0 && int(e.size()) > maxBytes-total {
			break
		}
		locs = append(locs, s.location(e))
		total += int(e.size())
	}
	return locs, total, nil
}

// readMessages reads and checks the records at locs. A segment closed meanwhile gives an
// error matching os.ErrClosed.
func readMessages(locs []location, total int) ([]msgstore.Message, error) {
	// One buffer for all records; the returned bodies alias it.
	buf := make([]byte, total)
	out := make([]msgstore.Message, 0, len(locs))
	for _, l := range locs {
		b := buf[:l.n:l.n]
		buf = buf[l.n:]
		if _, err := l.seg.f.ReadAt(b, l.off); err != nil {
			return nil, fmt.Errorf("read message from segment %d at %d: %w", l.seg.id, l.off, err)
		}
		r, _, err := record.Decode(b)
		if err != nil {
			return nil, fmt.Errorf("%w: segment %d at %d: %v", msgstore.ErrCorrupt, l.seg.id, l.off, err)
		}
		if r.Type != record.TypeMessage || r.Seq != l.seq {
			return nil, fmt.Errorf("%w: segment %d at %d holds another record", msgstore.ErrCorrupt, l.seg.id, l.off)
		}
		m := r.Message
		m.Cursor = binary.BigEndian.AppendUint64(nil, l.seq)
		out = append(out, m)
	}
	return out, nil
}

// Count implements msgstore.Store.
func (s *Store) Count(ctx context.Context, in msgstore.Inbox) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := in.Validate(); err != nil {
		return 0, err
	}
	if s.isClosed() {
		return 0, msgstore.ErrClosed
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ib := s.inboxes[in]; ib != nil {
		return ib.live, nil
	}
	return 0, nil
}

// Reclaim drops expired messages from the index now instead of at the next
// ReclaimInterval, so Count stops counting them. Their space is freed by compaction.
func (s *Store) Reclaim(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.isClosed() {
		return msgstore.ErrClosed
	}
	s.reclaim()
	return nil
}

func (s *Store) reclaim() {
	now := s.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.filesClosed {
		return // Close released the index
	}
	for in, ib := range s.inboxes {
		for i := range ib.entries {
			if e := &ib.entries[i]; !e.dead() && e.expired(now) {
				s.kill(ib, i)
			}
		}
		s.dropIfEmpty(in, ib)
	}
}

func (s *Store) isClosed() bool {
	s.sendMu.RLock()
	defer s.sendMu.RUnlock()
	return s.closed
}

// Close implements msgstore.Store: it commits everything queued, syncs and releases the
// directory.
func (s *Store) Close() error {
	s.sendMu.Lock()
	if s.closed {
		s.sendMu.Unlock()
		return msgstore.ErrClosed
	}
	s.closed = true
	close(s.reqs)
	s.sendMu.Unlock()
	<-s.stopped
	s.dropSpare()
	err := s.failed
	if s.unsynced && err == nil {
		if err = datasync(s.active().f); err != nil {
			err = fmt.Errorf("sync msgstore on close: %w", err)
		}
	}
	// Readers still using the files see os.ErrClosed, look again and find filesClosed.
	s.mu.Lock()
	defer s.mu.Unlock()
	s.filesClosed = true
	s.inboxes = nil
	s.arena.release()
	return errors.Join(err, s.closeFiles())
}

func (s *Store) closeFiles() error {
	var errs []error
	for _, seg := range s.segments {
		errs = append(errs, seg.f.Close())
	}
	errs = append(errs, s.lock.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close msgstore: %w", err)
	}
	return nil
}

func (s *Store) active() *segment { return s.segments[len(s.segments)-1] }
