// Package tikv is the cluster [kv.Store]: transactions on a TiKV cluster through
// client-go's txnkv, for deployments that outgrow one machine; see docs/storage.md.
//
// TiKV transactions are snapshot-isolated and detect only write-write conflicts. To keep
// the serializability kv.Store promises, an Update adds every key it read (by Get, or
// returned by Scan) to its commit as a lock, so a concurrent commit to any of them makes
// the Update conflict and rerun. Phantoms in a scanned range are not detected: a key
// inserted into a range an Update scanned, but did not return, does not conflict.
//
// An Update first runs optimistically: nothing is locked until commit, the cheap path when
// transactions rarely touch the same keys. When its commit meets a write conflict it is
// rerun after a short randomized backoff, and from then on pessimistically: each key is
// locked as fn reads or writes it, waiting for the holder instead of doing the work again
// and failing at commit. Claims (one-time prekeys, key packages) that many callers race
// for therefore queue on the key's lock instead of retrying blindly. Attempts are bounded;
// when they run out Update returns kv.ErrConflict having written nothing.
//
// A cluster that cannot answer (a TiKV store or PD down, a region without a leader) makes
// client-go back off and retry for up to 40 s per read and 80 s per commit. Every call is
// bounded by Options.Timeout instead: past it, and on the errors client-go gives up with,
// the call fails with an error wrapping kv.ErrUnavailable. The transaction stays atomic:
// none of its writes is kept or, when the commit itself was cut off, all of them.
package tikv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tikv/client-go/v2/config"
	tikverr "github.com/tikv/client-go/v2/error"
	tikvkv "github.com/tikv/client-go/v2/kv"
	"github.com/tikv/client-go/v2/oracle"
	tikvclient "github.com/tikv/client-go/v2/tikv"
	"github.com/tikv/client-go/v2/txnkv/transaction"
	pd "github.com/tikv/pd/client"
	pdopt "github.com/tikv/pd/client/opt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/guardyn/guardyn/libs/kv"
)

// Defaults of Options.
const (
	defaultMaxAttempts = 32
	defaultBackoff     = 2 * time.Millisecond
	defaultMaxBackoff  = 100 * time.Millisecond
	defaultLockWait    = 3 * time.Second
	defaultTimeout     = 10 * time.Second
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// MaxAttempts bounds how many times one Update runs before it gives up with
	// kv.ErrConflict (default 32).
	MaxAttempts int
	// Backoff is the upper bound of the random delay before the first rerun; it doubles
	// with every rerun up to MaxBackoff (defaults 2 ms and 100 ms).
	Backoff, MaxBackoff time.Duration
	// LockWait bounds how long a pessimistic rerun waits for one key's lock before the
	// attempt counts as conflicting (default 3 s).
	LockWait time.Duration
	// Namespace is prepended to every key, so that several deployments (or test runs)
	// can share one cluster without seeing each other's keys. Empty by default.
	Namespace []byte
	// Timeout bounds one Update or View call, its retries included (default 10 s, a
	// third of a unary RPC's default deadline): a cluster that has not answered by then
	// fails the call with kv.ErrUnavailable, where client-go alone would keep retrying
	// for up to 80 s.
	Timeout time.Duration
	// CAFile, CertFile and KeyFile are PEM files for TLS to PD and TiKV, as in the
	// cluster's own security section: CAFile verifies the servers, CertFile and KeyFile
	// authenticate this client. All empty: plaintext. Open reads them; New ignores them.
	CAFile, CertFile, KeyFile string
}

// Store is a kv.Store on a TiKV cluster.
type Store struct {
	kvs  *tikvclient.KVStore
	opts Options

	// mu guards closed and the registration of running transactions in wg, so Close
	// never races a transaction starting.
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

var _ kv.Store = (*Store)(nil)

// Open connects to the cluster whose PD endpoints (host:port) are pdAddrs and reads one
// key through it, so that a cluster that cannot serve fails here, naming its endpoints,
// with an error wrapping kv.ErrUnavailable. ctx bounds the whole of it: client-go alone
// retries an unreachable PD for 100 s.
func Open(ctx context.Context, pdAddrs []string, opts Options) (_ *Store, err error) {
	name := strings.Join(pdAddrs, ",")
	if len(pdAddrs) == 0 {
		return nil, errors.New("open tikv store: no PD endpoint")
	}
	// What txnkv.NewClient does, but with ctx and TLS of this store, not the process's
	// global client-go configuration.
	sec := config.NewSecurity(opts.CAFile, opts.CertFile, opts.KeyFile, nil)
	tlsConfig, err := sec.ToTLSConfig()
	if err != nil {
		return nil, fmt.Errorf("tikv store at pd %s: tls: %w", name, err)
	}
	cfg := config.GetGlobalConfig()
	// The PD client lives in the context it is made with: give it one that ends with ctx
	// only until it is set up, so that ctx bounds the setup and not the store's life.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	stopBounding := context.AfterFunc(ctx, endLife)
	defer func() {
		if err != nil {
			stopBounding()
			endLife()
		}
	}()
	pdc, err := pd.NewClientWithContext(life, pdAddrs,
		pd.SecurityOption{CAPath: opts.CAFile, CertPath: opts.CertFile, KeyPath: opts.KeyFile},
		pdopt.WithGRPCDialOptions(grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:    time.Duration(cfg.TiKVClient.GrpcKeepAliveTime) * time.Second,
			Timeout: cfg.TiKVClient.GetGrpcKeepAliveTimeout(),
		})),
		pdopt.WithCustomTimeoutOption(time.Duration(cfg.PDClient.PDServerTimeout)*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("tikv store at pd %s: %w: %v", name, kv.ErrUnavailable, err)
	}
	codec := tikvclient.NewCodecPDClient(tikvclient.ModeTxn, pdc)
	spkv, err := tikvclient.NewEtcdSafePointKV(pdAddrs, tlsConfig)
	if err != nil {
		pdc.Close()
		return nil, fmt.Errorf("tikv store at pd %s: safe point client: %w", name, err)
	}
	rpc := tikvclient.NewRPCClient(tikvclient.WithSecurity(sec), tikvclient.WithCodec(codec.GetCodec()))
	kvs, err := tikvclient.NewKVStore(fmt.Sprintf("tikv-%d", codec.GetClusterID(ctx)), codec, spkv, rpc)
	if err != nil {
		rpc.Close()
		spkv.Close()
		pdc.Close()
		return nil, fmt.Errorf("tikv store at pd %s: %w", name, err)
	}
	s := New(kvs, opts)
	if err := s.Ready(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("tikv store at pd %s: %w", name, err)
	}
	if !stopBounding() {
		// ctx ended after the probe: the PD client's context is ending with it.
		s.Close()
		return nil, fmt.Errorf("tikv store at pd %s: %w", name, ctx.Err())
	}
	return s, nil
}

// New returns a Store on kvs, which it owns from then on: Close closes it. Tests pass
// the store of client-go's in-process mock cluster here.
func New(kvs *tikvclient.KVStore, opts Options) *Store {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = defaultMaxAttempts
	}
	if opts.Backoff <= 0 {
		opts.Backoff = defaultBackoff
	}
	if opts.MaxBackoff < opts.Backoff {
		opts.MaxBackoff = max(defaultMaxBackoff, opts.Backoff)
	}
	if opts.LockWait <= 0 {
		opts.LockWait = defaultLockWait
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	opts.Namespace = bytes.Clone(opts.Namespace)
	return &Store{kvs: kvs, opts: opts}
}

// enter registers a transaction, or fails once the store is closed.
func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return kv.ErrClosed
	}
	s.wg.Add(1)
	return nil
}

// Close implements kv.Store: it waits for running transactions, then disconnects.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return kv.ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
	if err := s.kvs.Close(); err != nil {
		return fmt.Errorf("close tikv store: %w", err)
	}
	return nil
}

// readyKey is the key Ready reads, under the namespace. No service writes it: it only
// has to be served by the TiKV store holding its region.
var readyKey = []byte("\x00ready")

// Ready reports whether the cluster serves reads, for readiness probes: it takes a
// timestamp from PD and reads one key from TiKV.
func (s *Store) Ready(ctx context.Context) error {
	err := s.View(ctx, func(tx kv.Tx) error {
		_, err := tx.Get(readyKey)
		return err
	})
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		return fmt.Errorf("tikv store: %w", err)
	}
	return nil
}

// errNoAnswer is the cause of a call's context when Options.Timeout ended it.
var errNoAnswer = errors.New("kv/tikv: no answer from the cluster in time")

// bound returns ctx limited to the store's Timeout.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, s.opts.Timeout, errNoAnswer)
}

// unavailable wraps err in kv.ErrUnavailable when it means the cluster could not answer:
// ctx (a bounded call's context) ran out of its Timeout, not the caller's deadline, or
// client-go gave up on the cluster. Other errors are returned unchanged.
func (s *Store) unavailable(ctx context.Context, err error) error {
	switch {
	case err == nil, errors.Is(err, kv.ErrUnavailable):
		return err
	case errors.Is(context.Cause(ctx), errNoAnswer):
		// %v: this is not the caller's deadline, which callers answer differently.
		return fmt.Errorf("%w: no answer within %v: %v", kv.ErrUnavailable, s.opts.Timeout, err)
	case isUnavailable(err):
		return fmt.Errorf("%w: %w", kv.ErrUnavailable, err)
	}
	return err
}

// isUnavailable reports whether err is one of the errors client-go gives up with when
// the cluster, not the request, is at fault.
func isUnavailable(err error) bool {
	for _, e := range []error{
		tikverr.ErrTiKVServerTimeout, tikverr.ErrTiKVServerBusy, tikverr.ErrTiKVStaleCommand,
		tikverr.ErrTiKVMaxTimestampNotSynced, tikverr.ErrTiKVDiskFull, tikverr.ErrResolveLockTimeout,
		tikverr.ErrRegionUnavailable, tikverr.ErrRegionDataNotReady, tikverr.ErrRegionNotInitialized,
		tikverr.ErrRegionRecoveryInProgress, tikverr.ErrResultUndetermined,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	var pdErr *tikverr.PDError
	return errors.As(err, &pdErr)
}

// begin starts a transaction, taking its start timestamp from PD under ctx (client-go's
// Begin would wait up to 15 s for it whatever ctx says). Call done when the transaction
// has ended.
func (s *Store) begin(ctx context.Context) (_ *transaction.KVTxn, done func() bool, err error) {
	ts, err := s.kvs.GetTimestampWithRetry(tikvclient.NewBackofferWithVars(ctx, transaction.TsoMaxBackoff, nil), oracle.GlobalTxnScope)
	if err != nil {
		return nil, nil, fmt.Errorf("begin tikv transaction: %w", s.unavailable(ctx, err))
	}
	txn, err := s.kvs.Begin(tikvclient.WithStartTS(ts))
	if err != nil {
		return nil, nil, fmt.Errorf("begin tikv transaction: %w", s.unavailable(ctx, err))
	}
	// client-go's scanner backs off without a context, for up to 20 s per batch: a kill
	// flag set when ctx ends stops it at its next backoff instead.
	killed := new(uint32)
	txn.SetVars(tikvkv.NewVariables(killed))
	done = context.AfterFunc(ctx, func() { atomic.StoreUint32(killed, 1) })
	return txn, done, nil
}

// Update implements kv.Store.
func (s *Store) Update(ctx context.Context, fn func(kv.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.wg.Done()
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var last error
	for attempt := range s.opts.MaxAttempts {
		if attempt > 0 {
			if err := s.backoff(ctx, attempt); err != nil {
				return s.unavailable(ctx, err)
			}
		}
		err := s.attempt(ctx, fn, attempt > 0)
		if !isConflict(err) {
			return err
		}
		last = err
	}
	return fmt.Errorf("%w: gave up after %d attempts: %v", kv.ErrConflict, s.opts.MaxAttempts, last)
}

// backoff sleeps a random time below Backoff·2^(attempt-1), capped at MaxBackoff, so
// that the transactions that conflicted do not rerun in step.
func (s *Store) backoff(ctx context.Context, attempt int) error {
	limit := s.opts.Backoff << min(attempt-1, 20)
	if limit > s.opts.MaxBackoff || limit <= 0 {
		limit = s.opts.MaxBackoff
	}
	t := time.NewTimer(rand.N(limit) + 1)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// attempt runs fn once in a new transaction and commits it.
func (s *Store) attempt(ctx context.Context, fn func(kv.Tx) error, pessimistic bool) (err error) {
	txn, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if pessimistic {
		txn.SetPessimistic(true)
	}
	t := &tx{s: s, ctx: ctx, txn: txn, writable: true, pessimistic: pessimistic, lockWait: s.opts.LockWait, namespace: s.opts.Namespace}
	committed := false
	defer func() {
		if !committed {
			txn.Rollback()
		}
	}()
	err = run(fn, t)
	if err == nil {
		// A conflict fn saw and dropped still leaves this attempt incomplete.
		err = t.failed
	}
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return s.unavailable(ctx, err)
	}
	if !t.wrote {
		// Nothing to make durable: a read-only Update commits nothing, like the embedded store.
		return nil
	}
	if !pessimistic && len(t.reads) > 0 {
		// In an optimistic transaction this only marks the keys: they are checked for
		// newer commits when the transaction prewrites.
		if err := txn.LockKeys(ctx, tikvkv.NewLockCtx(txn.StartTS(), tikvkv.LockNoWait, time.Now()), t.reads...); err != nil {
			return fmt.Errorf("lock keys read: %w", s.unavailable(ctx, err))
		}
	}
	committed = true
	if err := txn.Commit(ctx); err != nil {
		return fmt.Errorf("commit tikv transaction: %w", s.unavailable(ctx, err))
	}
	return nil
}

// run calls fn on t and marks t finished when fn returns or panics.
func run(fn func(kv.Tx) error, t *tx) error {
	defer func() { t.done = true }()
	return fn(t)
}

// isConflict reports whether err means the attempt lost a race with another transaction
// and may succeed when rerun.
func isConflict(err error) bool {
	if err == nil {
		return false
	}
	var latch *tikverr.ErrWriteConflictInLatch
	var deadlock *tikverr.ErrDeadlock
	return tikverr.IsErrWriteConflict(err) || errors.As(err, &latch) || errors.As(err, &deadlock) ||
		errors.Is(err, tikverr.ErrLockWaitTimeout)
}

// View implements kv.Store: fn reads one snapshot, taken when View starts.
func (s *Store) View(ctx context.Context, fn func(kv.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.wg.Done()
	ctx, cancel := s.bound(ctx)
	defer cancel()
	txn, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	defer txn.Rollback()
	return run(fn, &tx{s: s, ctx: ctx, txn: txn, namespace: s.opts.Namespace})
}

// Stored values carry a one-byte header: TiKV's write buffer takes an empty value for a
// delete, and kv.Store keeps empty values. The header also leaves room for a format change.
const valueHeader = 0

func encode(value []byte) []byte {
	out := make([]byte, 1+len(value))
	out[0] = valueHeader
	copy(out[1:], value)
	return out
}

// errCorrupt means a stored value lacks the header every Put writes: the key range is
// shared with something that is not this package.
var errCorrupt = errors.New("kv/tikv: stored value has no valid header")

func decode(key, stored []byte) ([]byte, error) {
	if len(stored) == 0 || stored[0] != valueHeader {
		return nil, fmt.Errorf("%w (key %q)", errCorrupt, key)
	}
	return bytes.Clone(stored[1:]), nil
}

// tx adapts a client-go transaction to kv.Tx.
type tx struct {
	s           *Store
	ctx         context.Context
	txn         *transaction.KVTxn
	writable    bool
	pessimistic bool
	lockWait    time.Duration
	namespace   []byte
	done        bool
	wrote       bool
	// reads are the keys an optimistic Update read, locked at commit.
	reads [][]byte
	// failed is the first lock conflict of a pessimistic attempt; it fails the attempt
	// even if fn ignores it.
	failed error
}

// ns returns a new slice holding key under the store's namespace.
func (t *tx) ns(key []byte) []byte {
	out := make([]byte, 0, len(t.namespace)+len(key))
	return append(append(out, t.namespace...), key...)
}

func (t *tx) check() error {
	if t.done {
		return kv.ErrTxDone
	}
	return t.s.unavailable(t.ctx, t.ctx.Err())
}

// read records keys read by a read-write transaction for conflict checking.
func (t *tx) read(keys ...[]byte) error {
	if !t.writable || len(keys) == 0 {
		return nil
	}
	if t.pessimistic {
		return t.lock(keys...)
	}
	for _, k := range keys {
		t.reads = append(t.reads, bytes.Clone(k))
	}
	return nil
}

// lock takes pessimistic locks on keys, waiting up to lockWait for their holders. The
// locks are taken at the transaction's start timestamp, so a key committed by another
// transaction since then fails with a write conflict, and every read of a locked key
// from the start snapshot is also its newest value.
func (t *tx) lock(keys ...[]byte) error {
	lc := tikvkv.NewLockCtx(t.txn.StartTS(), t.lockWait.Milliseconds(), time.Now())
	if err := t.txn.LockKeys(t.ctx, lc, keys...); err != nil {
		err = fmt.Errorf("lock keys: %w", t.s.unavailable(t.ctx, err))
		if t.failed == nil {
			t.failed = err
		}
		return err
	}
	return nil
}

func (t *tx) Get(key []byte) ([]byte, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if err := kv.CheckKey(key); err != nil {
		return nil, err
	}
	key = t.ns(key)
	if err := t.read(key); err != nil {
		return nil, err
	}
	e, err := t.txn.Get(t.ctx, key)
	switch {
	case tikverr.IsErrNotFound(err):
		return nil, kv.ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("get: %w", t.s.unavailable(t.ctx, err))
	}
	return decode(key, e.Value)
}

func (t *tx) write(key, value []byte, del bool) error {
	if err := t.check(); err != nil {
		return err
	}
	if err := kv.CheckKey(key); err != nil {
		return err
	}
	if !del {
		if err := kv.CheckValue(value); err != nil {
			return err
		}
	}
	if !t.writable {
		return kv.ErrReadOnly
	}
	// ns copies key: the write buffer keeps the slice and the caller may reuse it.
	key = t.ns(key)
	if t.pessimistic {
		if err := t.lock(key); err != nil {
			return err
		}
	}
	var err error
	if del {
		err = t.txn.Delete(key)
	} else {
		err = t.txn.Set(key, encode(value))
	}
	if err != nil {
		return fmt.Errorf("buffer write: %w", err)
	}
	t.wrote = true
	return nil
}

func (t *tx) Put(key, value []byte) error { return t.write(key, value, false) }

func (t *tx) Delete(key []byte) error { return t.write(key, nil, true) }

// Scan reads in batches of client-go's scan size (256 pairs per request), so a region's
// response stays small whatever limit is.
func (t *tx) Scan(start, end []byte, limit int) ([]kv.Pair, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if end != nil && bytes.Compare(start, end) >= 0 {
		return nil, nil
	}
	lo := t.ns(start)
	hi := kv.PrefixEnd(t.namespace)
	if end != nil {
		hi = t.ns(end)
	}
	it, err := t.txn.Iter(lo, hi)
	if err != nil {
		return nil, fmt.Errorf("scan: %w", t.s.unavailable(t.ctx, err))
	}
	defer it.Close()
	var out []kv.Pair
	var keys [][]byte
	for it.Valid() {
		if limit > 0 && len(out) >= limit {
			break
		}
		if err := t.ctx.Err(); err != nil {
			return nil, t.s.unavailable(t.ctx, err)
		}
		k := bytes.Clone(it.Key())
		v, err := decode(k, it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, kv.Pair{Key: k[len(t.namespace):], Value: v})
		keys = append(keys, k)
		if err := it.Next(); err != nil {
			return nil, fmt.Errorf("scan: %w", t.s.unavailable(t.ctx, err))
		}
	}
	if err := t.read(keys...); err != nil {
		return nil, err
	}
	return out, nil
}
