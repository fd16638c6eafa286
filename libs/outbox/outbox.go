// Package outbox makes "change the store, then tell someone" survive a crash between the
// two: the transactional outbox pattern over a [kv.Store].
//
// A service records what it must tell (an event to publish, a fan-out to run) with
// [Outbox.Add] inside the same kv transaction as the state change, so both commit or
// neither does. After the commit it calls [Outbox.Deliver] for read-your-writes latency;
// [Outbox.Run], started once per process, hands every entry still in the outbox to the
// [Handler] until the handler succeeds, retrying failures with backoff, and after a
// restart delivers what a crash left behind. A delivered entry is removed by the next
// transaction that adds one (or by Run), so the outbox costs no commit of its own.
//
// Delivery is at least once: an entry may reach the handler twice (a crash after the
// handler succeeded and before the entry was removed, or Deliver and Run racing), so
// handlers and whoever consumes their effects must be idempotent; the entry id is the
// natural deduplication key.
//
// Some sinks acknowledge before their acknowledgement is durable (JetStream syncs its
// files every two minutes unless told to sync every write). For them [Config.Linger]
// keeps a delivered entry for a while, and Run delivers lingering entries again after a
// restart: a power loss that takes the sink's unsynced tail also restarts this process.
package outbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
)

// Defaults for Config fields left zero.
const (
	// DefaultRetry is the first wait after a failed delivery; it doubles up to MaxRetry.
	DefaultRetry = 100 * time.Millisecond
	// DefaultMaxRetry bounds the wait between retries of a failing entry.
	DefaultMaxRetry = 30 * time.Second
	// DefaultPoll is how often Run looks for entries nobody told it about (written by
	// another process sharing the store).
	DefaultPoll = 10 * time.Second
	// MaxIDSize bounds an entry id.
	MaxIDSize = 256
	// scanBatch is how many entries one read transaction of Run loads.
	scanBatch = 64
)

// Errors returned by the package; test for them with errors.Is.
var (
	// ErrBadID means an entry id is empty, too long, or holds a byte outside
	// printable ASCII.
	ErrBadID = errors.New("outbox: bad entry id")
	// ErrMalformedEntry means a stored entry does not decode.
	ErrMalformedEntry = errors.New("outbox: malformed entry")
)

// Handler delivers one entry: it publishes the event, runs the fan-out. It returns nil
// once the effect is durable at the receiving end; an error leaves the entry for a retry.
// It may be called more than once for the same id and must be idempotent.
type Handler func(ctx context.Context, id string, payload []byte) error

// Config holds the dependencies of an Outbox.
type Config struct {
	// Store is the kv store whose transactions Add joins.
	Store kv.Store
	// Prefix namespaces the entries, for example "auth/outbox/"; it must end in '/'.
	Prefix string
	// Handle delivers entries.
	Handle Handler
	// Linger keeps delivered entries this long and redelivers them after a restart, for
	// sinks whose acknowledgement is not durable at once; 0 removes an entry as soon as
	// it is delivered.
	Linger time.Duration
	// Retry, MaxRetry and Poll: see the defaults.
	Retry, MaxRetry, Poll time.Duration
	Now                   func() time.Time
	Logger                *slog.Logger
}

// Outbox records entries in kv transactions and delivers them after commit.
type Outbox struct {
	cfg    Config
	prefix []byte
	kick   chan struct{}

	mu       sync.Mutex
	inflight map[string]bool
	// settled are entries delivered in this process whose removal (or, with Linger, the
	// record of delivery) has not been written yet: it rides on the next transaction that
	// adds an entry, or on Run's next pass, instead of costing a commit of its own. Losing
	// it in a crash costs one more delivery, which handlers tolerate.
	settled map[string]settledEntry
}

type settledEntry struct {
	payload []byte
	at      int64 // delivery time, Unix nanoseconds
}

// New returns an Outbox over cfg.Store.
func New(cfg Config) (*Outbox, error) {
	if cfg.Store == nil || cfg.Handle == nil {
		return nil, errors.New("outbox: config needs a Store and a Handle")
	}
	if !strings.HasSuffix(cfg.Prefix, "/") || len(cfg.Prefix) < 2 {
		return nil, fmt.Errorf("outbox: prefix %q must be non-empty and end in '/'", cfg.Prefix)
	}
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultRetry
	}
	if cfg.MaxRetry <= 0 {
		cfg.MaxRetry = DefaultMaxRetry
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Outbox{cfg: cfg, prefix: []byte(cfg.Prefix), kick: make(chan struct{}, 1), inflight: map[string]bool{}, settled: map[string]settledEntry{}}, nil
}

// entry is the stored form: a version byte, the time the handler last succeeded (0:
// pending) as big-endian Unix nanoseconds, then the payload.
const (
	entryVersion    = 1
	entryHeaderSize = 1 + 8
)

func encodeEntry(deliveredAt int64, payload []byte) []byte {
	b := make([]byte, entryHeaderSize, entryHeaderSize+len(payload))
	b[0] = entryVersion
	binary.BigEndian.PutUint64(b[1:], uint64(deliveredAt))
	return append(b, payload...)
}

// decodeEntry splits a stored entry; deliveredAt is 0 for a pending entry.
func decodeEntry(b []byte) (deliveredAt int64, payload []byte, err error) {
	if len(b) < entryHeaderSize {
		return 0, nil, fmt.Errorf("%w: %d bytes, want at least %d", ErrMalformedEntry, len(b), entryHeaderSize)
	}
	if b[0] != entryVersion {
		return 0, nil, fmt.Errorf("%w: version %d, want %d", ErrMalformedEntry, b[0], entryVersion)
	}
	at := int64(binary.BigEndian.Uint64(b[1:]))
	if at < 0 {
		return 0, nil, fmt.Errorf("%w: negative delivery time", ErrMalformedEntry)
	}
	return at, b[entryHeaderSize:], nil
}

func checkID(id string) error {
	if id == "" || len(id) > MaxIDSize {
		return fmt.Errorf("%w: %d bytes, want 1 to %d", ErrBadID, len(id), MaxIDSize)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return fmt.Errorf("%w: byte %#x at %d", ErrBadID, id[i], i)
		}
	}
	return nil
}

func (o *Outbox) key(id string) []byte { return append(append([]byte(nil), o.prefix...), id...) }

// Add records payload under id inside tx; it is delivered once tx commits. Ids are
// delivered by Run in ascending byte order. Adding an id that is already pending
// replaces its payload.
func (o *Outbox) Add(tx kv.Tx, id string, payload []byte) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := tx.Put(o.key(id), encodeEntry(0, payload)); err != nil {
		return fmt.Errorf("outbox: add %s: %w", id, err)
	}
	// A new payload under a delivered id needs its own delivery.
	o.mu.Lock()
	delete(o.settled, id)
	o.mu.Unlock()
	return o.settle(tx, id)
}

// settle writes into tx the removals (or, with Linger, the delivery records) of entries
// delivered in this process, except the entry id being added. An entry leaves settled
// only once a later transaction sees its removal or record committed: a transaction may
// be rolled back or rerun (kv.Store.Update), and a settlement lost with it would cost a
// redelivery.
func (o *Outbox) settle(tx kv.Tx, except string) error {
	o.mu.Lock()
	pending := make(map[string]settledEntry, len(o.settled))
	for id, e := range o.settled {
		if id != except {
			pending[id] = e
		}
	}
	o.mu.Unlock()
	var written []string
	for id, e := range pending {
		key := o.key(id)
		b, err := tx.Get(key)
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("outbox: settle %s: %w", id, err)
		}
		if err == nil && string(b) == string(encodeEntry(0, e.payload)) {
			if o.cfg.Linger <= 0 {
				err = tx.Delete(key)
			} else {
				err = tx.Put(key, encodeEntry(e.at, e.payload))
			}
			if err != nil {
				return fmt.Errorf("outbox: settle %s: %w", id, err)
			}
			continue
		}
		// Gone, recorded, or replaced by a newer Add (which needs its own delivery).
		written = append(written, id)
	}
	o.mu.Lock()
	for _, id := range written {
		if o.settled[id].at == pending[id].at {
			delete(o.settled, id)
		}
	}
	o.mu.Unlock()
	return nil
}

// flush writes the pending settlements in a transaction of their own.
func (o *Outbox) flush(ctx context.Context) error {
	o.mu.Lock()
	n := len(o.settled)
	o.mu.Unlock()
	if n == 0 {
		return nil
	}
	return o.cfg.Store.Update(ctx, func(tx kv.Tx) error { return o.settle(tx, "") })
}

// Pending reports whether id is in the outbox and not yet delivered, inside tx.
func (o *Outbox) Pending(tx kv.Tx, id string) (bool, error) {
	if err := checkID(id); err != nil {
		return false, err
	}
	b, err := tx.Get(o.key(id))
	if errors.Is(err, kv.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	at, _, err := decodeEntry(b)
	if err != nil || at != 0 {
		return false, err
	}
	o.mu.Lock()
	_, done := o.settled[id]
	o.mu.Unlock()
	return !done, nil
}

// Deliver hands the entry id to the handler now, if it is still pending, and records
// the success. Call it after the transaction that added id committed. On failure the
// entry stays and Run retries it.
func (o *Outbox) Deliver(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if !o.claim(id) {
		// Run has it in hand; it reports its own failures.
		return nil
	}
	defer o.release(id)
	var (
		payload []byte
		pending bool
	)
	err := o.cfg.Store.View(ctx, func(tx kv.Tx) error {
		b, err := tx.Get(o.key(id))
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		at, p, err := decodeEntry(b)
		pending, payload = at == 0, p
		return err
	})
	if err != nil {
		return fmt.Errorf("outbox: load %s: %w", id, err)
	}
	o.mu.Lock()
	_, done := o.settled[id]
	o.mu.Unlock()
	if !pending || done {
		return nil
	}
	if err := o.deliver(ctx, id, payload); err != nil {
		o.Kick()
		return err
	}
	return nil
}

// deliver runs the handler on one entry and records the success in memory; the store
// learns of it with the next transaction (see settled).
func (o *Outbox) deliver(ctx context.Context, id string, payload []byte) error {
	if err := o.cfg.Handle(ctx, id, payload); err != nil {
		return fmt.Errorf("outbox: deliver %s: %w", id, err)
	}
	o.mu.Lock()
	o.settled[id] = settledEntry{payload: payload, at: o.cfg.Now().UnixNano()}
	o.mu.Unlock()
	return nil
}

func (o *Outbox) claim(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inflight[id] {
		return false
	}
	o.inflight[id] = true
	return true
}

func (o *Outbox) release(id string) {
	o.mu.Lock()
	delete(o.inflight, id)
	o.mu.Unlock()
}

// Kick makes Run look at the outbox now rather than at its next poll.
func (o *Outbox) Kick() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// Run delivers entries until ctx ends, then returns ctx's error. It starts by marking
// every lingering entry pending again (its sink may have lost it in the crash that
// restarted this process), then delivers pending entries, drops lingering ones older
// than Linger, and retries failures with backoff. Start one Run per Outbox.
func (o *Outbox) Run(ctx context.Context) error {
	wait := o.cfg.Retry
	reset := o.cfg.Linger > 0
	for {
		failed := false
		if reset {
			if err := o.reset(ctx); err != nil {
				failed = true
				if ctx.Err() == nil {
					o.cfg.Logger.WarnContext(ctx, "outbox: restart reset failed; will retry", "prefix", o.cfg.Prefix, "err", err)
				}
			} else {
				reset = false
			}
		}
		if !reset {
			failed = o.pass(ctx)
		}
		next := o.cfg.Poll
		if failed {
			next, wait = wait, min(2*wait, o.cfg.MaxRetry)
		} else {
			wait = o.cfg.Retry
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-o.kick:
			if failed {
				// A kick does not cut a backoff short: wait it out.
				select {
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				case <-t.C:
				}
			}
		case <-t.C:
		}
		t.Stop()
	}
}

// reset marks every lingering entry pending, in batches.
func (o *Outbox) reset(ctx context.Context) error {
	start, end := o.prefix, kv.PrefixEnd(o.prefix)
	for {
		var last []byte
		n := 0
		err := o.cfg.Store.Update(ctx, func(tx kv.Tx) error {
			pairs, err := tx.Scan(start, end, scanBatch)
			if err != nil {
				return err
			}
			n, last = len(pairs), nil
			for _, p := range pairs {
				last = p.Key
				if at, payload, err := decodeEntry(p.Value); err == nil && at != 0 {
					if err := tx.Put(p.Key, encodeEntry(0, payload)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n < scanBatch {
			return nil
		}
		start = append(last, 0)
	}
}

// pass walks the whole outbox once and reports whether any delivery failed.
func (o *Outbox) pass(ctx context.Context) (failed bool) {
	if err := o.flush(ctx); err != nil {
		if ctx.Err() == nil {
			o.cfg.Logger.WarnContext(ctx, "outbox: recording deliveries failed", "prefix", o.cfg.Prefix, "err", err)
		}
		return true
	}
	start, end := o.prefix, kv.PrefixEnd(o.prefix)
	for ctx.Err() == nil {
		var pairs []kv.Pair
		err := o.cfg.Store.View(ctx, func(tx kv.Tx) error {
			var err error
			pairs, err = tx.Scan(start, end, scanBatch)
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				o.cfg.Logger.WarnContext(ctx, "outbox: scan failed", "prefix", o.cfg.Prefix, "err", err)
			}
			return true
		}
		for _, p := range pairs {
			if ctx.Err() != nil {
				return true
			}
			if err := o.visit(ctx, p); err != nil {
				failed = true
				o.cfg.Logger.WarnContext(ctx, "outbox: delivery failed; will retry", "entry", string(p.Key), "err", err)
			}
		}
		if len(pairs) < scanBatch {
			return failed
		}
		start = append(pairs[len(pairs)-1].Key, 0)
	}
	return true
}

// visit delivers or expires one stored entry.
func (o *Outbox) visit(ctx context.Context, p kv.Pair) error {
	id := string(p.Key[len(o.prefix):])
	at, payload, err := decodeEntry(p.Value)
	if err != nil {
		// Nothing can ever deliver it; keep it for an operator rather than loop on it.
		o.cfg.Logger.ErrorContext(ctx, "outbox: skipping malformed entry", "entry", string(p.Key), "err", err)
		return nil
	}
	if at != 0 {
		if o.cfg.Now().Sub(time.Unix(0, at)) < o.cfg.Linger {
			return nil
		}
		return o.cfg.Store.Update(ctx, func(tx kv.Tx) error {
			b, err := tx.Get(p.Key)
			if err != nil || string(b) != string(p.Value) {
				return nil // gone or re-added meanwhile
			}
			return tx.Delete(p.Key)
		})
	}
	o.mu.Lock()
	_, done := o.settled[id]
	o.mu.Unlock()
	if done || !o.claim(id) {
		return nil
	}
	defer o.release(id)
	return o.deliver(ctx, id, payload)
}

// Len returns the number of entries in the outbox, pending and lingering.
func (o *Outbox) Len(ctx context.Context) (int, error) {
	var n int
	err := o.cfg.Store.View(ctx, func(tx kv.Tx) error {
		pairs, err := kv.ScanPrefix(tx, o.prefix, 0)
		n = len(pairs)
		return err
	})
	return n, err
}
