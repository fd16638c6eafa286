// Package ratelimit limits actions per key (a caller, a username) with token
// buckets from golang.org/x/time/rate, in bounded memory.
//
// See https://pkg.go.dev/golang.org/x/time/rate and
// https://en.wikipedia.org/wiki/Token_bucket.
package ratelimit

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// shardCount spreads keys over independently locked maps so concurrent
// callers rarely contend.
const shardCount = 16

// Config describes a Limiter.
type Config struct {
	// Rate is the sustained number of actions per second per key and Burst
	// how many may happen at once; e.g. 5 bundle fetches a second, bursts of 20.
	Rate  float64
	Burst int
	// MaxKeys bounds how many keys are tracked (memory). Keys whose bucket
	// has refilled are forgotten first, which loses nothing: a new bucket
	// starts full. When every tracked key is still draining, a new key is
	// refused, so a flood of distinct keys cannot reset anyone's bucket.
	MaxKeys int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Limiter is a set of token buckets, one per key, safe for concurrent use.
type Limiter struct {
	limit    rate.Limit
	burst    int
	perShard int
	refill   time.Duration // time for an empty bucket to become full
	now      func() time.Time
	seed     maphash.Seed
	shards   [shardCount]shard
}

type shard struct {
	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
}

// New returns a Limiter for cfg.
func New(cfg Config) (*Limiter, error) {
	if !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 0) || cfg.Burst < 1 {
		return nil, errors.New("ratelimit: Rate must be positive and finite, Burst at least 1")
	}
	if cfg.MaxKeys < shardCount {
		return nil, errors.New("ratelimit: MaxKeys must be at least 16")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limiter{
		limit:    rate.Limit(cfg.Rate),
		burst:    cfg.Burst,
		perShard: cfg.MaxKeys / shardCount,
		refill:   time.Duration(float64(cfg.Burst) / cfg.Rate * float64(time.Second)),
		now:      cfg.Now,
		seed:     maphash.MakeSeed(),
	}
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*rate.Limiter)
	}
	return l, nil
}

// Allow takes one token from key's bucket. When it refuses, retryAfter is
// how long until a token will be available (for a RetryInfo detail).
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	return l.AllowN(key, 1)
}

// AllowN takes n tokens from key's bucket at once, for limits on amounts
// rather than events (bytes sent). It takes nothing when it refuses; n above
// the burst is always refused, so the burst must hold the largest amount
// one event may carry.
func (l *Limiter) AllowN(key string, n int) (ok bool, retryAfter time.Duration) {
	now := l.now()
	s := &l.shards[maphash.String(l.seed, key)%shardCount]
	s.mu.Lock()
	defer s.mu.Unlock()
	b, known := s.buckets[key]
	if !known {
		if len(s.buckets) >= l.perShard && !l.sweepLocked(s, now) {
			return false, l.refill
		}
		b = rate.NewLimiter(l.limit, l.burst)
		s.buckets[key] = b
	}
	if b.AllowN(now, n) {
		return true, 0
	}
	if n > l.burst {
		return false, l.refill
	}
	missing := float64(n) - b.TokensAt(now)
	return false, time.Duration(missing / float64(l.limit) * float64(time.Second))
}

// Debit charges n tokens to key's bucket for an amount known only after the fact (bytes a
// caller made the server send and then threw away). Unlike AllowN it never refuses: the
// bucket may go into debt, at most one burst deep, and later calls for key are refused
// until the debt is paid back at the bucket's rate. n beyond the burst counts as the
// burst. A new key that finds the table full is not charged (see MaxKeys).
func (l *Limiter) Debit(key string, n int) {
	if n <= 0 {
		return
	}
	now := l.now()
	s := &l.shards[maphash.String(l.seed, key)%shardCount]
	s.mu.Lock()
	defer s.mu.Unlock()
	b, known := s.buckets[key]
	if !known {
		if len(s.buckets) >= l.perShard && !l.sweepLocked(s, now) {
			return
		}
		b = rate.NewLimiter(l.limit, l.burst)
		s.buckets[key] = b
	}
	// A reservation that is never cancelled is a debt: its tokens are gone now and
	// come back at the rate. Capping the debt bounds how long a key stays refused.
	n = min(n, l.burst, int(b.TokensAt(now))+l.burst)
	if n > 0 {
		b.ReserveN(now, n)
	}
}

// sweepLocked forgets keys whose bucket is full again and reports whether
// there is room now. A fruitless sweep is not repeated until buckets had
// time to refill, so a key flood costs O(1) per refused key, not O(MaxKeys).
func (l *Limiter) sweepLocked(s *shard, now time.Time) bool {
	if now.Sub(s.lastSweep) < l.refill/time.Duration(l.burst) {
		return false
	}
	s.lastSweep = now
	full := float64(l.burst)
	for k, b := range s.buckets {
		if b.TokensAt(now) >= full {
			delete(s.buckets, k)
		}
	}
	return len(s.buckets) < l.perShard
}

// Len is the number of keys currently tracked.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}

// Policy gives the limit of each action a service names ("bundles", "login", "send",
// ...); an action without an entry is not limited.
type Policy map[string]Config

// Actions rate-limits keys of the form "action|caller" with one Limiter per action of a
// Policy. Services consume it through a one-method interface (Allow(key) bool).
type Actions struct {
	limiters map[string]*Limiter
}

// NewActions returns the limiters of p.
func NewActions(p Policy) (*Actions, error) {
	a := &Actions{limiters: make(map[string]*Limiter, len(p))}
	for action, cfg := range p {
		l, err := New(cfg)
		if err != nil {
			return nil, fmt.Errorf("rate limit %q: %w", action, err)
		}
		a.limiters[action] = l
	}
	return a, nil
}

// Allow takes a token for key "action|caller"; actions without a limit always pass.
func (a *Actions) Allow(key string) bool {
	return a.AllowN(key, 1)
}

// AllowN takes n tokens for key "action|caller" (see Limiter.AllowN); actions
// without a limit always pass.
func (a *Actions) AllowN(key string, n int) bool {
	action, _, _ := strings.Cut(key, "|")
	l, ok := a.limiters[action]
	if !ok {
		return true
	}
	allowed, _ := l.AllowN(key, n)
	return allowed
}

// Debit charges n tokens to key "action|caller" after the fact (see Limiter.Debit);
// actions without a limit are not charged.
func (a *Actions) Debit(key string, n int) {
	action, _, _ := strings.Cut(key, "|")
	if l, ok := a.limiters[action]; ok {
		l.Debit(key, n)
	}
}
