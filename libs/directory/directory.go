// Package directory tells services which devices an account has right now, and so
// whether a device has been removed. The auth service owns the device lists; every other
// service (messaging, media, presence, notification) asks it through a [Client], which
// caches answers and drops them when the auth service announces a change.
//
// Start with [New] over a [Source] ([NewBusSource] asks the auth service over NATS),
// call [Subscribe] so announced changes reach the cache, and pass the Client to
// authn.NewVerifier as its revocation check and to the services that need device lists.
//
// The contract a caller can rely on:
//   - After [Client.Forget] returns, no answer fetched before it is ever served again:
//     cache entries are versioned, so a lookup that raced with the change cannot put the
//     old list back.
//   - Concurrent lookups of one user share one request to the source, and lookups of
//     different users that miss the cache together share a batch: at most
//     [MaxRequests] requests are in flight, each for up to [MaxBatch] users, so a herd
//     of cold lookups (every device's first send after a restart) costs the auth service
//     a few requests, not one per user.
//   - The cache is bounded: beyond its size the least recently used entries go, one at a
//     time, never the whole cache at once.
//   - When the source cannot answer, lookups fail with an error wrapping
//     [ErrUnavailable], never with "not found" or "revoked": an outage is temporary,
//     a removal is permanent, and callers must be able to tell them apart.
package directory

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ErrUnavailable wraps every error of a lookup the source could not answer.
var ErrUnavailable = errors.New("device directory unavailable")

// Source answers device lists with authority (the auth service).
type Source interface {
	// Lookup returns the current devices of each user, one List per user in the order
	// asked; it is never asked for more than MaxBatch users at once.
	Lookup(ctx context.Context, userIDs []string) ([]List, error)
}

// List is one user's devices as the source answered.
type List struct {
	// Devices are the current device ids, ascending.
	Devices []uint32
	// Found is false when no such account exists.
	Found bool
}

// Bounds on the requests a Client sends.
const (
	// MaxBatch bounds the users of one request (DeviceListRequest.user_ids).
	MaxBatch = 256
	// MaxRequests bounds a Client's requests in flight. Lookups that miss while they are
	// all out wait for the next, which takes every one of them (up to MaxBatch): the
	// batch grows with the herd, and a lone lookup is sent at once, never held back.
	MaxRequests = 4
)

// Defaults for Options left zero.
const (
	// DefaultTTL bounds how long a device list is trusted without a change event, in
	// case an announcement was lost.
	DefaultTTL = 30 * time.Second
	// DefaultMaxEntries bounds the cached users.
	DefaultMaxEntries = 1 << 16
	// DefaultTimeout bounds one request to the source.
	DefaultTimeout = 5 * time.Second
)

// Options tune a Client; the zero value takes the defaults.
type Options struct {
	TTL        time.Duration
	MaxEntries int
	Timeout    time.Duration
	Now        func() time.Time
}

// Client is a caching view of a Source. It is safe for concurrent use.
type Client struct {
	src     Source
	ttl     time.Duration
	max     int
	timeout time.Duration
	now     func() time.Time

	mu      sync.Mutex
	entries map[string]*list.Element // of *entry, most recently used at the front
	lru     *list.List
	flights map[string]*flight
	// queue holds the flights no request carries yet, in arrival order; sending counts
	// the goroutines sending requests (at most MaxRequests).
	queue   []*flight
	sending int
	// version counts Forget calls; each entry remembers the version of the last Forget
	// of its user, and evicted records the highest such version among evicted entries,
	// so a fetch that started before a Forget is recognised even when the Forget's
	// record is gone.
	version uint64
	evicted uint64
}

type entry struct {
	user    string
	devices []uint32
	found   bool
	valid   bool // false: a tombstone that only remembers forgot
	at      time.Time
	forgot  uint64
}

// flight is one user's lookup that concurrent lookups of the user share.
type flight struct {
	user  string
	start uint64 // c.version when the flight began: a later Forget refuses its answer
	done  chan struct{}
	// Set before done is closed.
	devices []uint32
	found   bool
	err     error
}

// New returns a Client answering from src.
func New(src Source, opts Options) *Client {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Client{
		src: src, ttl: opts.TTL, max: opts.MaxEntries, timeout: opts.Timeout, now: opts.Now,
		entries: make(map[string]*list.Element),
		lru:     list.New(),
		flights: make(map[string]*flight),
	}
}

// Devices returns the current device ids of a user in ascending order, and false when
// no such account exists. The slice is shared: do not modify it.
func (c *Client) Devices(ctx context.Context, userID string) ([]uint32, bool, error) {
	c.mu.Lock()
	if el, ok := c.entries[userID]; ok {
		e := el.Value.(*entry)
		if e.valid && c.now().Sub(e.at) < c.ttl {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			return e.devices, e.found, nil
		}
	}
	f, ok := c.flights[userID]
	if !ok {
		f = &flight{user: userID, start: c.version, done: make(chan struct{})}
		c.flights[userID] = f
		c.queue = append(c.queue, f)
		if c.sending < MaxRequests {
			c.sending++
			go c.send()
		}
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.devices, f.found, f.err
	case <-ctx.Done():
		return nil, false, fmt.Errorf("device directory lookup of %q: %w", userID, ctx.Err())
	}
}

// send asks the source for the queued flights, a batch of up to MaxBatch at a time, until
// the queue is empty.
func (c *Client) send() {
	for {
		c.mu.Lock()
		n := min(len(c.queue), MaxBatch)
		if n == 0 {
			c.sending--
			c.mu.Unlock()
			return
		}
		batch := slices.Clone(c.queue[:n])
		clear(c.queue[:n])
		c.queue = c.queue[n:]
		c.mu.Unlock()
		c.fetch(batch)
	}
}

// fetch asks the source on behalf of every lookup sharing the flights of batch, and caches
// each answer unless its user was forgotten since its flight began.
func (c *Client) fetch(batch []*flight) {
	users := make([]string, len(batch))
	for i, f := range batch {
		users[i] = f.user
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	lists, err := c.src.Lookup(ctx, users)
	cancel()
	if err == nil && len(lists) != len(users) {
		err = fmt.Errorf("source answered %d lists for %d users", len(lists), len(users))
	}
	for i, f := range batch {
		if err != nil {
			f.err = fmt.Errorf("%w: lookup of %q: %w", ErrUnavailable, f.user, err)
			continue
		}
		f.devices, f.found = lists[i].Devices, lists[i].Found
	}

	c.mu.Lock()
	for _, f := range batch {
		if c.flights[f.user] == f {
			delete(c.flights, f.user)
		}
		if f.err == nil && !c.forgottenSince(f.user, f.start) {
			e := c.entry(f.user)
			e.devices, e.found, e.valid, e.at = f.devices, f.found, true, c.now()
		}
	}
	c.mu.Unlock()
	for _, f := range batch {
		close(f.done)
	}
}

// forgottenSince reports whether Forget(userID) may have run after version start; c.mu
// is held.
func (c *Client) forgottenSince(userID string, start uint64) bool {
	if c.evicted > start {
		return true
	}
	el, ok := c.entries[userID]
	return ok && el.Value.(*entry).forgot > start
}

// entry returns the user's entry, created at the front and evicting the least recently
// used one when the cache is full; c.mu is held.
func (c *Client) entry(userID string) *entry {
	if el, ok := c.entries[userID]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*entry)
	}
	for c.lru.Len() >= c.max {
		oldest := c.lru.Back()
		e := oldest.Value.(*entry)
		c.evicted = max(c.evicted, e.forgot)
		c.lru.Remove(oldest)
		delete(c.entries, e.user)
	}
	e := &entry{user: userID}
	c.entries[userID] = c.lru.PushFront(e)
	return e
}

// Forget drops the cached device list of a user: the next lookup asks the source, and no
// lookup already in flight can cache what it fetched.
func (c *Client) Forget(userID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	_, cached := c.entries[userID]
	if _, inFlight := c.flights[userID]; !cached && !inFlight {
		// Nothing to drop and no lookup to outrun (one whose flight an earlier Forget
		// removed is refused by that Forget's record, or by c.evicted): a burst of
		// changes of users this process never asks about takes no room in the cache.
		return
	}
	e := c.entry(userID)
	e.devices, e.found, e.valid, e.forgot = nil, false, false, c.version
	// Lookups arriving from now on must not join a request sent before the change.
	delete(c.flights, userID)
}

// Len is the number of users the cache holds (tombstones included), for tests and
// metrics.
func (c *Client) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// IsDeviceRevoked implements authn.Revocations: a device missing from its account's
// current list, or whose account is gone, is revoked. When the source cannot answer it
// returns an error wrapping ErrUnavailable, so that callers refuse the call as
// unavailable, not as revoked.
func (c *Client) IsDeviceRevoked(ctx context.Context, userID string, deviceID uint32) (bool, error) {
	devices, found, err := c.Devices(ctx, userID)
	if err != nil {
		return false, err
	}
	if !found {
		return true, nil
	}
	return !slices.Contains(devices, deviceID), nil
}
