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
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// SegmentSize is the size at which the active segment is closed and a new one
	// started (default 32 MiB). Segments after a new store's first are zero-filled to
	// this size in the background once the active one is half full.
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

// entry locates one message of an inbox in the log.
type entry struct {
	seq    uint64
	id     msgstore.ID
	seg    *segment
	off    int64
	n      int64
	expiry int64 // Unix nanoseconds; 0 is never
	dead   bool
}

func (e *entry) expired(now int64) bool { return e.expiry != 0 && e.expiry <= now }

// inbox is the index of one device's messages: entries in sequence order, with dead
// ones removed in bulk once they are half of the slice.
type inbox struct {
	entries []entry
	byID    map[msgstore.ID]uint64
	dead    int
}

func (ib *inbox) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(ib.entries, seq, func(e entry, seq uint64) int { return cmp.Compare(e.seq, seq) })
}

// kill marks entry i dead; the caller holds mu.
func (ib *inbox) kill(i int) {
	e := &ib.entries[i]
	e.dead = true
	e.seg.live -= e.n
	delete(ib.byID, e.id)
	ib.dead++
}

func (ib *inbox) sweep() {
	if ib.dead < 32 || 2*ib.dead < len(ib.entries) {
		return
	}
	ib.entries = slices.DeleteFunc(ib.entries, func(e entry) bool { return e.dead })
	ib.dead = 0
}

// Open opens or creates the store in dir, replaying its log. The directory is locked
// against a second Open, from this or another process, until Close.
func Open(dir string, opts Options) (*Store, error) {
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
		nextSeq:     1,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.load(); err != nil {
		s.closeFiles()
		return nil, err
	}
	s.tick = time.NewTicker(cmp.Or(opts.ReclaimInterval, defaultReclaimInterval))
	go s.commitLoop()
	return s, nil
}

// replayed is a message found while replaying the log.
type replayed struct {
	inbox msgstore.Inbox
	e     entry
}

// load replays every segment in order to rebuild the index.
func (s *Store) load() error {
	ids, err := listSegments(s.dir)
	if err != nil {
		return err
	}
	now := s.now().UnixNano()
	bySeq := map[uint64]*replayed{}
	byID := map[msgstore.Inbox]map[msgstore.ID]uint64{}
	apply := func(seg *segment, r *record.Record, off, n int) error {
		switch r.Type {
		case record.TypeMessage:
			if r.Seq == 0 || r.Seq == math.MaxUint64 {
				return fmt.Errorf("%w: message with sequence number %d", msgstore.ErrCorrupt, r.Seq)
			}
			if p := bySeq[r.Seq]; p != nil && (p.inbox != r.Inbox || p.e.id != r.Message.ID) {
				return fmt.Errorf("%w: sequence number %d used twice", msgstore.ErrCorrupt, r.Seq)
			}
			s.nextSeq = max(s.nextSeq, r.Seq+1)
			ids := byID[r.Inbox]
			if seq, ok := ids[r.Message.ID]; ok {
				// A second copy of a message is a compaction copy and supersedes the
				// first; a different sequence number is a re-append, which is a no-op.
				if p := bySeq[seq]; seq == r.Seq && p != nil {
					p.e.seg.live -= p.e.n
					p.e.seg, p.e.off, p.e.n = seg, int64(off), int64(n)
					seg.live += p.e.n
				}
				return nil
			}
			e := entry{seq: r.Seq, id: r.Message.ID, seg: seg, off: int64(off), n: int64(n)}
			if !r.Message.Expiry.IsZero() {
				e.expiry = r.Message.Expiry.UnixNano()
			}
			if e.expired(now) {
				return nil
			}
			if ids == nil {
				ids = map[msgstore.ID]uint64{}
				byID[r.Inbox] = ids
			}
			ids[e.id] = e.seq
			bySeq[e.seq] = &replayed{inbox: r.Inbox, e: e}
			seg.live += e.n
		case record.TypeDelete:
			for _, seq := range r.Seqs {
				if p := bySeq[seq]; p != nil && p.inbox == r.Inbox {
					p.e.seg.live -= p.e.n
					delete(byID[r.Inbox], p.e.id)
					delete(bySeq, seq)
				}
			}
		case record.TypeDeleteInbox:
			for _, seq := range byID[r.Inbox] {
				if p := bySeq[seq]; p != nil {
					p.e.seg.live -= p.e.n
					delete(bySeq, seq)
				}
			}
			delete(byID, r.Inbox)
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
	for _, p := range bySeq {
		ib := s.inboxes[p.inbox]
		if ib == nil {
			ib = &inbox{byID: map[msgstore.ID]uint64{}}
			s.inboxes[p.inbox] = ib
		}
		ib.entries = append(ib.entries, p.e)
		ib.byID[p.e.id] = p.e.seq
	}
	for _, ib := range s.inboxes {
		slices.SortFunc(ib.entries, func(a, b entry) int { return cmp.Compare(a.seq, b.seq) })
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
	var seqs []uint64
	s.mu.Lock()
	if ib := s.inboxes[in]; ib != nil {
		for _, id := range ids {
			seq, ok := ib.byID[id]
			if !ok {
				continue
			}
			if i, ok := ib.find(seq); ok {
				ib.kill(i)
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

// dropIfEmpty forgets an inbox without live messages; the caller holds mu.
func (s *Store) dropIfEmpty(in msgstore.Inbox, ib *inbox) {
	if len(ib.byID) == 0 {
		delete(s.inboxes, in)
		return
	}
	ib.sweep()
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
		return msgs, err
	}
}

// ReadIDs implements msgstore.Store from the index alone, without reading the log.
func (s *Store) ReadIDs(ctx context.Context, in msgstore.Inbox, after msgstore.Cursor, limit int) ([]msgstore.ID, msgstore.Cursor, error) {
	afterSeq, err := checkRead(ctx, in, after, limit)
	if err != nil {
		return nil, nil, err
	}
	if afterSeq == math.MaxUint64 {
		return nil, after, nil
	}
	locs, _, err := s.locate(in, afterSeq, limit, math.MaxInt)
	if err != nil || len(locs) == 0 {
		return nil, after, err
	}
	ids := make([]msgstore.ID, len(locs))
	for i, l := range locs {
		ids[i] = l.id
	}
	return ids, binary.BigEndian.AppendUint64(nil, locs[len(locs)-1].seq), nil
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
	seq, ok := ib.byID[id]
	if !ok {
		return location{}, false, nil
	}
	i, ok := ib.find(seq)
	if !ok {
		return location{}, false, nil
	}
	e := &ib.entries[i]
	if e.dead || e.expired(now) {
		return location{}, false, nil
	}
	return location{seg: e.seg, off: e.off, n: e.n, seq: e.seq, id: e.id}, true, nil
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
	id  msgstore.ID
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
		if e.dead || e.expired(now) {
			continue
		}
		if len(locs) > 0 && int(e.n) > maxBytes-total {
			break
		}
		locs = append(locs, location{seg: e.seg, off: e.off, n: e.n, seq: e.seq, id: e.id})
		total += int(e.n)
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
		if r.Type != record.TypeMessage || r.Seq != l.seq || r.Message.ID != l.id {
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
		return len(ib.byID), nil
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
	for in, ib := range s.inboxes {
		for i := range ib.entries {
			if e := &ib.entries[i]; !e.dead && e.expired(now) {
				ib.kill(i)
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
