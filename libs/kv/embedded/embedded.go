// Package embedded is the single-node [kv.Store]: one bbolt file in the data dir with
// group commit, so concurrent Update calls share one fsync; see docs/storage.md.
package embedded

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/guardyn/guardyn/libs/kv"
)

// FileName is the conventional name of the kv file inside the data dir.
const FileName = "kv.db"

var bucketName = []byte("kv")

// defaultMaxBatch bounds how many transactions share one commit, which bounds the work
// lost to a rollback when one of them fails.
const defaultMaxBatch = 1024

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// MaxBatch is the most transactions committed together (default 1024).
	MaxBatch int
	// OnAsyncError receives errors of transactions queued with UpdateNoWait, which
	// have no caller left to return them to. Nil drops them.
	OnAsyncError func(error)
}

// Store is a kv.Store on one bbolt file. Writers hand their transactions to a single
// committer goroutine that runs every transaction queued while the previous commit was
// syncing in one bbolt transaction with one fsync, so commit latency stays one fsync when
// idle and throughput grows with the number of concurrent writers.
type Store struct {
	db           *bbolt.DB
	maxBatch     int
	onAsyncError func(error)

	// mu guards closed and sending on reqs, so Close never races a send.
	mu      sync.RWMutex
	closed  bool
	reqs    chan *request
	stopped chan struct{}
}

var _ kv.Store = (*Store)(nil)

// request is one transaction waiting for the committer. done is nil for UpdateNoWait.
type request struct {
	ctx  context.Context
	fn   func(kv.Tx) error
	done chan error
}

// Open opens or creates the store file at path. The file is locked: a second Open of
// the same path, from this or another process, fails after one second.
func Open(path string, opts Options) (*Store, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: time.Second,
		// The freelist is rebuilt on open instead of written on every commit: smaller
		// commits on the hot path for a slower open.
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("open kv store %s: %w", path, err)
	}
	// bbolt syncs the file's pages but not the directory entry of a file it creates,
	// which a power cut can lose with every commit in the file.
	if err := syncDir(filepath.Dir(path)); err != nil {
		db.Close()
		return nil, fmt.Errorf("open kv store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open kv store %s: create bucket: %w", path, err)
	}
	maxBatch := opts.MaxBatch
	if maxBatch <= 0 {
		maxBatch = defaultMaxBatch
	}
	s := &Store{
		db:           db,
		maxBatch:     maxBatch,
		onAsyncError: opts.OnAsyncError,
		reqs:         make(chan *request, maxBatch),
		stopped:      make(chan struct{}),
	}
	go s.commitLoop()
	return s, nil
}

// syncDir makes the entries of directory dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory to sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// Update implements kv.Store. The embedded store never conflicts: transactions run one
// after another, and a failing transaction in the same group commit does not rerun fn
// (only a failure to undo its writes, or of the disk, can).
func (s *Store) Update(ctx context.Context, fn func(kv.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &request{ctx: ctx, fn: fn, done: make(chan error, 1)}
	if err := s.enqueue(req); err != nil {
		return err
	}
	err := <-req.done
	var p *fnPanic
	if errors.As(err, &p) {
		panic(p.value)
	}
	return err
}

// UpdateNoWait queues fn for the next group commit and returns without waiting for it.
// Its writes become visible and durable with that commit, typically within one fsync;
// a crash before then loses them. It suits writes whose loss is harmless, such as
// deleting acknowledged messages. Errors go to Options.OnAsyncError.
func (s *Store) UpdateNoWait(fn func(kv.Tx) error) error {
	return s.enqueue(&request{ctx: context.Background(), fn: fn})
}

func (s *Store) enqueue(req *request) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return kv.ErrClosed
	}
	s.reqs <- req
	return nil
}

// View implements kv.Store. Views run concurrently with each other and with commits.
func (s *Store) View(ctx context.Context, fn func(kv.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return kv.ErrClosed
	}
	return s.db.View(func(btx *bbolt.Tx) error {
		t := &tx{ctx: ctx, bucket: btx.Bucket(bucketName)}
		defer t.finish()
		return fn(t)
	})
}

// Close implements kv.Store: it commits everything already queued, then closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return kv.ErrClosed
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.stopped
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close kv store: %w", err)
	}
	return nil
}

// commitLoop is the single writer. Whatever queued up during one commit forms the next
// batch, so there is no timer and no added latency when the store is idle.
func (s *Store) commitLoop() {
	defer close(s.stopped)
	batch := make([]*request, 0, s.maxBatch)
	for req := range s.reqs {
		batch = append(batch[:0], req)
	fill:
		for len(batch) < s.maxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
		clear(batch)
	}
}

// commitBatch commits batch in one bbolt transaction. Each fn runs once: a failing one has
// its writes undone inside the shared transaction (see tx.undo), so its error reflects the
// state its batch predecessors left and its neighbours are not rerun for it. Only when an
// undo itself fails is the bbolt transaction rolled back; then the transaction whose undo
// failed runs alone and the rest are rerun together, as in bbolt's own Batch.
func (s *Store) commitBatch(batch []*request) {
	var solo []*request
	for len(batch) > 0 {
		results, broken, err := s.tryBatch(batch)
		if broken >= 0 {
			solo = append(solo, batch[broken])
			batch = append(batch[:broken:broken], batch[broken+1:]...)
			continue
		}
		for i, r := range batch {
			if err != nil {
				s.finish(r, err)
				continue
			}
			s.finish(r, results[i])
		}
		break
	}
	for _, r := range solo {
		s.finish(r, s.runSolo(r))
	}
}

// tryBatch runs every fn in one transaction and commits it. It returns each fn's error
// and the commit error; or, after rolling back, the index of the fn whose writes could
// not be undone (-1 otherwise).
func (s *Store) tryBatch(batch []*request) ([]error, int, error) {
	btx, err := s.db.Begin(true)
	if err != nil {
		return nil, -1, fmt.Errorf("begin kv transaction: %w", err)
	}
	bucket := btx.Bucket(bucketName)
	results := make([]error, len(batch))
	wrote := false
	for i, r := range batch {
		t := &tx{ctx: r.ctx, bucket: bucket, writable: true, undoable: true}
		if results[i] = run(r, t); results[i] != nil {
			if t.rollback() != nil {
				btx.Rollback()
				return nil, i, nil
			}
		}
		wrote = wrote || t.wrote
	}
	if err := commitOrDrop(btx, wrote); err != nil {
		return nil, -1, err
	}
	return results, -1, nil
}

// commitOrDrop commits btx if anything was written in it and rolls it back otherwise.
// An Update that only reads (a key-bundle fetch past the caller's share of one-time
// keys, a claim that finds nothing) has nothing to make durable, yet a bbolt commit
// writes a meta page and syncs the file twice: under a key-draining attack, the single
// writer spent a sync per refused-in-effect request.
func commitOrDrop(btx *bbolt.Tx, wrote bool) error {
	if !wrote {
		return btx.Rollback()
	}
	if err := btx.Commit(); err != nil {
		return fmt.Errorf("commit kv transaction: %w", err)
	}
	return nil
}

func (s *Store) runSolo(r *request) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	btx, err := s.db.Begin(true)
	if err != nil {
		return fmt.Errorf("begin kv transaction: %w", err)
	}
	t := &tx{ctx: r.ctx, bucket: btx.Bucket(bucketName), writable: true}
	if err := run(r, t); err != nil {
		btx.Rollback()
		return err
	}
	return commitOrDrop(btx, t.wrote)
}

func (s *Store) finish(r *request, err error) {
	if r.done != nil {
		r.done <- err
		return
	}
	if err != nil && s.onAsyncError != nil {
		s.onAsyncError(err)
	}
}

// fnPanic carries a panic out of the committer goroutine so it resurfaces in the caller
// of Update instead of killing the committer.
type fnPanic struct{ value any }

func (p *fnPanic) Error() string {
	return fmt.Sprintf("kv: transaction function panicked: %v", p.value)
}

// run calls r.fn on t, turning a canceled context or a panic into an error.
func run(r *request, t *tx) (err error) {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	defer t.finish()
	defer func() {
		if v := recover(); v != nil {
			err = &fnPanic{value: v}
		}
	}()
	return r.fn(t)
}

// tx adapts a bbolt bucket to kv.Tx.
type tx struct {
	ctx      context.Context
	bucket   *bbolt.Bucket
	writable bool
	done     bool
	// undoable records, before every write, what the key held, so that the writes of
	// one failed fn can be taken back without rolling back its batch.
	undoable bool
	undo     []prior
	// wrote records that fn wrote (or undid a write): a batch in which no fn did is
	// rolled back instead of committed, see commitOrDrop.
	wrote bool
}

// prior is a key's value before a write; existed is false for a missing key.
type prior struct {
	key, value []byte
	existed    bool
}

// remember records key's current value for rollback.
func (t *tx) remember(key []byte) {
	if !t.undoable {
		return
	}
	p := prior{key: bytes.Clone(key)}
	if k, v := t.bucket.Cursor().Seek(key); k != nil && bytes.Equal(k, key) {
		p.value, p.existed = bytes.Clone(v), true
	}
	t.undo = append(t.undo, p)
}

// rollback restores every key t wrote, newest write first.
func (t *tx) rollback() error {
	for i := len(t.undo) - 1; i >= 0; i-- {
		p := t.undo[i]
		var err error
		if p.existed {
			err = t.bucket.Put(p.key, append([]byte{}, p.value...))
		} else {
			err = t.bucket.Delete(p.key)
		}
		if err != nil {
			return fmt.Errorf("undo write of %q: %w", p.key, err)
		}
	}
	t.undo = nil
	return nil
}

func (t *tx) finish() { t.done = true }

func (t *tx) check(key []byte) error {
	if t.done {
		return kv.ErrTxDone
	}
	if err := t.ctx.Err(); err != nil {
		return err
	}
	return kv.CheckKey(key)
}

func (t *tx) Get(key []byte) ([]byte, error) {
	if err := t.check(key); err != nil {
		return nil, err
	}
	// A cursor tells a stored empty value apart from a missing key.
	k, v := t.bucket.Cursor().Seek(key)
	if k == nil || !bytes.Equal(k, key) {
		return nil, kv.ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (t *tx) Put(key, value []byte) error {
	if err := t.check(key); err != nil {
		return err
	}
	if err := kv.CheckValue(value); err != nil {
		return err
	}
	if !t.writable {
		return kv.ErrReadOnly
	}
	t.remember(key)
	t.wrote = true
	// bbolt keeps the slices until commit, after fn has returned and the caller may
	// reuse them.
	if err := t.bucket.Put(bytes.Clone(key), append([]byte{}, value...)); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	return nil
}

func (t *tx) Delete(key []byte) error {
	if err := t.check(key); err != nil {
		return err
	}
	if !t.writable {
		return kv.ErrReadOnly
	}
	t.remember(key)
	t.wrote = true
	if err := t.bucket.Delete(key); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

func (t *tx) Scan(start, end []byte, limit int) ([]kv.Pair, error) {
	if t.done {
		return nil, kv.ErrTxDone
	}
	if err := t.ctx.Err(); err != nil {
		return nil, err
	}
	c := t.bucket.Cursor()
	var k, v []byte
	if len(start) == 0 {
		k, v = c.First()
	} else {
		k, v = c.Seek(start)
	}
	var out []kv.Pair
	for ; k != nil; k, v = c.Next() {
		if end != nil && bytes.Compare(k, end) >= 0 {
			break
		}
		if limit > 0 && len(out) >= limit {
			break
		}
		out = append(out, kv.Pair{Key: bytes.Clone(k), Value: append([]byte{}, v...)})
	}
	return out, nil
}
