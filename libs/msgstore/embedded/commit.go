package embedded

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/guardyn/guardyn/libs/msgstore"
	"github.com/guardyn/guardyn/libs/msgstore/embedded/internal/record"
)

// op is an index change a commit applies once its records are written.
type op struct {
	inbox       msgstore.Inbox
	e           entry
	deleteInbox bool
}

type inboxID struct {
	inbox msgstore.Inbox
	id    msgstore.ID
}

// commitLoop is the single writer. Whatever queued up during one commit forms the next,
// so there is no timer and no added latency when the store is idle.
func (s *Store) commitLoop() {
	defer close(s.stopped)
	defer s.tick.Stop()
	batch := make([]*request, 0, maxBatchRequests)
	for {
		select {
		case req, ok := <-s.reqs:
			if !ok {
				return
			}
			batch = append(batch[:0], req)
			bytes := req.size
		fill:
			for len(batch) < maxBatchRequests && bytes < maxBatchBytes {
				select {
				case r, ok := <-s.reqs:
					if !ok {
						break fill
					}
					batch = append(batch, r)
					bytes += r.size
				default:
					break fill
				}
			}
			s.commit(batch)
			clear(batch)
			s.afterCommit()
			if cap(s.buf) > 2*maxBatchBytes {
				s.buf = nil
			}
			s.maybeCompact()
		case <-s.tick.C:
			s.reclaim()
			s.maybeCompact()
		}
	}
}

// commit writes the records of batch with one write and, if anyone waits, one fsync,
// then applies them to the index and answers the callers.
func (s *Store) commit(batch []*request) {
	err := s.writeBatch(batch)
	if s.failed != nil && s.broken.Load() == nil {
		failed := s.failed
		s.broken.Store(&failed)
	}
	for _, r := range batch {
		switch {
		case r.done != nil:
			r.done <- err
		case err != nil:
			s.report(fmt.Errorf("msgstore: write deletes: %w", err))
		}
	}
}

func (s *Store) writeBatch(batch []*request) error {
	if s.failed != nil {
		return s.failed
	}
	if s.active().size >= s.segmentSize {
		if err := s.roll(); err != nil {
			return err
		}
	}
	active := s.active()
	now := s.now().UnixNano()
	s.buf, s.ops = s.buf[:0], s.ops[:0]
	sync := false
	// Within a batch, an id counts as present if an earlier request of the batch added
	// it, or if the index has it and no earlier DeleteInbox of the batch cleared it.
	var added map[inboxID]bool
	var cleared map[msgstore.Inbox]bool
	s.mu.RLock()
	for _, r := range batch {
		sync = sync || r.done != nil
		switch {
		case r.msgs != nil:
			for i := range r.msgs {
				m := &r.msgs[i]
				if expiredAt(m, now) {
					continue
				}
				key := inboxID{m.Inbox, m.ID}
				if added[key] {
					continue
				}
				if ib := s.inboxes[m.Inbox]; ib != nil && !cleared[m.Inbox] {
					_, ok, err := s.findID(ib, m.ID)
					if err != nil {
						s.mu.RUnlock()
						return fmt.Errorf("msgstore: look up message id: %w", err)
					}
					if ok {
						continue
					}
				}
				if added == nil {
					added = map[inboxID]bool{}
				}
				added[key] = true
				off := len(s.buf)
				seq := s.nextSeq
				s.nextSeq++
				s.buf = record.AppendMessage(s.buf, seq, m)
				e := entry{fp: s.fingerprint(m.ID), seg: uint32(active.id), off: uint32(active.size + int64(off)),
					n: uint32(len(s.buf) - off), expiry: expirySeconds(m.Expiry)}
				e.setSeq(seq)
				s.ops = append(s.ops, op{inbox: m.Inbox, e: e})
			}
		case r.deleted != nil:
			// The index already dropped these messages when Delete was called.
			s.buf = record.AppendDelete(s.buf, r.deleted.inbox, r.deleted.seqs)
		case r.deleteInbox != nil:
			in := *r.deleteInbox
			s.buf = record.AppendDeleteInbox(s.buf, in)
			s.ops = append(s.ops, op{inbox: in, deleteInbox: true})
			if cleared == nil {
				cleared = map[msgstore.Inbox]bool{}
			}
			cleared[in] = true
			for key := range added {
				if key.inbox == in {
					delete(added, key)
				}
			}
		}
	}
	s.mu.RUnlock()
	if len(s.buf) == 0 {
		return nil
	}
	if err := s.write(active, s.buf, sync); err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	active.size += int64(len(s.buf))
	for i := range s.ops {
		o := &s.ops[i]
		ib := s.inboxes[o.inbox]
		if o.deleteInbox {
			if ib != nil {
				for i := range ib.entries {
					if !ib.entries[i].dead() {
						s.kill(ib, i)
					}
				}
				s.dropInbox(o.inbox, ib)
			}
			continue
		}
		if ib == nil {
			ib = &inbox{}
			s.inboxes[o.inbox] = ib
		}
		ib.add(s.arena, o.e)
		active.live += o.e.size()
	}
	return nil
}

// write appends b to seg and, if sync is set, makes everything written so far durable.
// A failed write leaves an unknown tail, so the store stops writing; reopening cuts it.
func (s *Store) write(seg *segment, b []byte, sync bool) error {
	if _, err := seg.f.WriteAt(b, seg.size); err != nil {
		s.failed = fmt.Errorf("msgstore: write failed, reopen to recover: %w", err)
		return s.failed
	}
	seg.alloc = max(seg.alloc, seg.size+int64(len(b)))
	s.unsynced = true
	if !sync {
		return nil
	}
	if err := datasync(seg.f); err != nil {
		s.failed = fmt.Errorf("msgstore: fsync failed, reopen to recover: %w", err)
		return s.failed
	}
	s.unsynced = false
	return nil
}

// roll makes the spare segment the active one after syncing the current one, so that
// replay never finds unsynced bytes anywhere but in the last segment with records.
func (s *Store) roll() error {
	old := s.active()
	if s.unsynced {
		if err := datasync(old.f); err != nil {
			s.failed = fmt.Errorf("msgstore: fsync failed, reopen to recover: %w", err)
			return s.failed
		}
		s.unsynced = false
	}
	seg, err := s.takeSpare()
	if err != nil {
		return err
	}
	if err := writeHeader(seg, s.nextSeq); err != nil {
		return err
	}
	if err := datasync(seg.f); err != nil {
		return fmt.Errorf("sync header of segment %d: %w", seg.id, err)
	}
	// Give back the zeros the old segment did not use. No sync needed: after a crash
	// the zeros are still read as the end of the segment.
	if old.alloc > old.size && old.f.Truncate(old.size) == nil {
		old.alloc = old.size
	}
	s.mu.Lock()
	s.segments = append(s.segments, seg)
	s.mu.Unlock()
	return nil
}

// spareResult is a segment created ahead of time, off the commit path, since zero-filling
// a segment takes far longer than a commit.
type spareResult struct {
	seg *segment
	err error
}

// startSpare starts creating the next segment unless one is ready or under way.
func (s *Store) startSpare() {
	if s.spare != nil || s.ready != nil {
		return
	}
	ch := make(chan spareResult, 1)
	s.spare = ch
	id := s.active().id + 1
	go func() {
		seg, err := createSegment(s.dir, id, 0, s.segmentSize)
		ch <- spareResult{seg, err}
	}()
}

// spareReady reports, without waiting, whether a spare segment is ready.
func (s *Store) spareReady() bool {
	if s.ready == nil && s.spare != nil {
		select {
		case r := <-s.spare:
			s.spare, s.ready = nil, &r
		default:
		}
	}
	return s.ready != nil
}

// takeSpare returns the spare segment, creating it first if need be.
func (s *Store) takeSpare() (*segment, error) {
	if s.ready == nil {
		s.startSpare()
		r := <-s.spare
		s.spare, s.ready = nil, &r
	}
	r := s.ready
	s.ready = nil
	return r.seg, r.err
}

// dropSpare closes a spare that is ready or under way; the next Open removes the file.
func (s *Store) dropSpare() {
	if s.spare != nil {
		r := <-s.spare
		s.spare, s.ready = nil, &r
	}
	if s.ready != nil && s.ready.seg != nil {
		s.ready.seg.f.Close()
	}
	s.ready = nil
}

// afterCommit starts preparing the next segment once the active one is half full. When
// the active segment has no zero-filled room left, as with a new store's first segment
// (Open does not zero-fill, to stay cheap), it switches as soon as the spare is ready.
func (s *Store) afterCommit() {
	if s.failed != nil {
		return
	}
	active := s.active()
	if active.size >= s.segmentSize/2 {
		s.startSpare()
	}
	if active.alloc <= active.size && s.spareReady() {
		if err := s.roll(); err != nil {
			s.report(fmt.Errorf("msgstore: switch to preallocated segment: %w", err))
		}
	}
}

// maybeCompact compacts the oldest segment while the log holds more than twice the live
// bytes plus two segments, which bounds disk use and copies each byte a few times at most.
func (s *Store) maybeCompact() {
	for s.failed == nil {
		s.mu.RLock()
		var size, live int64
		for _, seg := range s.segments {
			size += seg.size
			live += seg.live
		}
		n := len(s.segments)
		s.mu.RUnlock()
		if n < 2 || size <= 2*live+2*s.segmentSize {
			return
		}
		if err := s.compactOldest(); err != nil {
			s.report(fmt.Errorf("msgstore: compaction: %w", err))
			return
		}
	}
}

type move struct {
	inbox  msgstore.Inbox
	seq    uint64
	off, n int64
}

// compactOldest copies the live messages of the oldest segment to the active one and
// deletes it. Deleting the oldest segment first keeps replay correct: delete records in
// later segments only refer to messages in the same or earlier segments.
func (s *Store) compactOldest() error {
	old := s.segments[0]
	now := s.now().UnixNano()
	var moves []move
	s.mu.RLock()
	for in, ib := range s.inboxes {
		for i := range ib.entries {
			if e := &ib.entries[i]; !e.dead() && e.seg == uint32(old.id) && !e.expired(now) {
				moves = append(moves, move{inbox: in, seq: e.seq(), off: int64(e.off), n: e.size()})
			}
		}
	}
	s.mu.RUnlock()

	active := s.active()
	s.buf = s.buf[:0]
	newOff := make([]int64, len(moves))
	for i, mv := range moves {
		start := len(s.buf)
		s.buf = append(s.buf, make([]byte, mv.n)...)
		if _, err := old.f.ReadAt(s.buf[start:], mv.off); err != nil {
			return fmt.Errorf("read segment %d: %w", old.id, err)
		}
		if _, _, err := record.Decode(s.buf[start:]); err != nil {
			return fmt.Errorf("%w: segment %d at %d: %v", msgstore.ErrCorrupt, old.id, mv.off, err)
		}
		newOff[i] = active.size + int64(start)
	}
	// The copies must be durable before the file goes. Deletes still unsynced need not
	// be: the messages they delete are dead in the index and not copied.
	if len(s.buf) > 0 {
		if err := s.write(active, s.buf, true); err != nil {
			return err
		}
	}

	s.mu.Lock()
	active.size += int64(len(s.buf))
	for i, mv := range moves {
		ib := s.inboxes[mv.inbox]
		if ib == nil {
			continue
		}
		if j, ok := ib.find(mv.seq); ok && !ib.entries[j].dead() && ib.entries[j].seg == uint32(old.id) {
			e := &ib.entries[j]
			old.live -= e.size()
			e.seg, e.off = uint32(active.id), uint32(newOff[i])
			active.live += e.size()
		}
	}
	// What is left in the old segment is expired: forget it with the file.
	for in, ib := range s.inboxes {
		for i := range ib.entries {
			if e := &ib.entries[i]; !e.dead() && e.seg == uint32(old.id) {
				s.kill(ib, i)
			}
		}
		s.dropIfEmpty(in, ib)
	}
	s.segments = s.segments[1:]
	s.mu.Unlock()

	if err := old.f.Close(); err != nil {
		return fmt.Errorf("close segment %d: %w", old.id, err)
	}
	if err := os.Remove(filepath.Join(s.dir, segmentName(old.id))); err != nil {
		return fmt.Errorf("remove segment %d: %w", old.id, err)
	}
	return syncDir(s.dir)
}
