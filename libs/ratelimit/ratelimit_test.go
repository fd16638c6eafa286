package ratelimit

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newLimiter(t testing.TB, cfg Config) (*Limiter, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)}
	cfg.Now = c.Now
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, c
}

func TestBurstThenRate(t *testing.T) {
	l, c := newLimiter(t, Config{Rate: 2, Burst: 3, MaxKeys: 1000})
	for i := range 3 {
		if ok, _ := l.Allow("alice"); !ok {
			t.Fatalf("call %d within burst refused", i)
		}
	}
	ok, retry := l.Allow("alice")
	if ok {
		t.Fatal("call beyond burst allowed")
	}
	if retry != 500*time.Millisecond {
		t.Errorf("retryAfter = %v, want 500ms at 2/s", retry)
	}
	if ok, _ := l.Allow("bob"); !ok {
		t.Error("another key was limited by alice's calls")
	}
	c.Advance(499 * time.Millisecond)
	if ok, _ := l.Allow("alice"); ok {
		t.Error("allowed before a token refilled")
	}
	c.Advance(time.Millisecond)
	if ok, _ := l.Allow("alice"); !ok {
		t.Error("refused after a token refilled")
	}
	if ok, _ := l.Allow("alice"); ok {
		t.Error("second call on one refilled token allowed")
	}
}

func TestMemoryIsBounded(t *testing.T) {
	l, c := newLimiter(t, Config{Rate: 10, Burst: 1, MaxKeys: 160})
	for i := range 10000 {
		if ok, _ := l.Allow("caller-" + strconv.Itoa(i)); !ok {
			t.Fatalf("key %d refused although every earlier bucket had refilled", i)
		}
		c.Advance(100 * time.Millisecond)
		if n := l.Len(); n > 160 {
			t.Fatalf("tracking %d keys, limit 160", n)
		}
	}
}

func TestKeyFloodCannotResetABucket(t *testing.T) {
	l, _ := newLimiter(t, Config{Rate: 1, Burst: 2, MaxKeys: 16})
	l.Allow("victim")
	l.Allow("victim")
	if ok, _ := l.Allow("victim"); ok {
		t.Fatal("victim not drained")
	}
	// At the same instant, an attacker tries many fresh keys.
	refused := 0
	for i := range 1000 {
		if ok, _ := l.Allow("attacker-" + strconv.Itoa(i)); !ok {
			refused++
		}
	}
	if refused == 0 {
		t.Error("a limiter full of draining buckets kept admitting new keys")
	}
	if ok, _ := l.Allow("victim"); ok {
		t.Error("the key flood reset the victim's bucket")
	}
	if n := l.Len(); n > 16 {
		t.Errorf("tracking %d keys, limit 16", n)
	}
}

func TestConfigRejected(t *testing.T) {
	for _, cfg := range []Config{
		{Rate: 0, Burst: 1, MaxKeys: 100},
		{Rate: -1, Burst: 1, MaxKeys: 100},
		{Rate: 1, Burst: 0, MaxKeys: 100},
		{Rate: 1, Burst: 1, MaxKeys: 3},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	l, _ := newLimiter(t, Config{Rate: 1, Burst: 100, MaxKeys: 1000})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 8 {
		wg.Go(func() {
			for range 50 {
				if ok, _ := l.Allow("shared"); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
				l.Allow("own-" + strconv.Itoa(g))
			}
		})
	}
	wg.Wait()
	if allowed != 100 {
		t.Errorf("%d calls allowed on a frozen clock with burst 100", allowed)
	}
}

func BenchmarkAllow(b *testing.B) {
	l, err := New(Config{Rate: 1e9, Burst: 1 << 30, MaxKeys: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(keys[i%len(keys)])
			i++
		}
	})
}

func TestActions(t *testing.T) {
	a, err := NewActions(Policy{"login": {Rate: 0.001, Burst: 2, MaxKeys: 1 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if !a.Allow("login|alice") {
			t.Fatalf("login %d refused within the burst", i)
		}
	}
	if a.Allow("login|alice") {
		t.Fatal("login beyond the burst allowed")
	}
	if !a.Allow("login|bob") {
		t.Fatal("another caller shares alice's bucket")
	}
	for range 100 {
		if !a.Allow("send|alice") {
			t.Fatal("an action without a limit was refused")
		}
	}
	if _, err := NewActions(Policy{"x": {Rate: -1, Burst: 1, MaxKeys: 1}}); err == nil {
		t.Fatal("a bad policy was accepted")
	}
}

// TestAllowNLimitsAmounts: AllowN takes n tokens at once, takes nothing when it refuses
// (a small amount still passes after a large one was refused), and refuses more than the
// burst outright.
func TestAllowNLimitsAmounts(t *testing.T) {
	l, c := newLimiter(t, Config{Rate: 100, Burst: 1000, MaxKeys: 16})
	if ok, _ := l.AllowN("k", 600); !ok {
		t.Fatal("600 of a 1000 burst refused")
	}
	if ok, wait := l.AllowN("k", 600); ok || wait <= 0 {
		t.Fatalf("600 more of 400 left: ok %v, retry after %v", ok, wait)
	}
	if ok, _ := l.AllowN("k", 400); !ok {
		t.Fatal("a refused AllowN took tokens: 400 of 400 left refused")
	}
	if ok, _ := l.AllowN("k", 1); ok {
		t.Fatal("empty bucket allowed one more")
	}
	c.Advance(2 * time.Second)
	if ok, _ := l.AllowN("k", 200); !ok {
		t.Fatal("200 refused after refilling 200")
	}
	if ok, _ := l.AllowN("other", 1001); ok {
		t.Fatal("more than the burst allowed")
	}
}

// TestDebitGoesIntoDebt: a Debit is never refused, puts the bucket into debt (at most one
// burst deep, however much is charged) and the key is refused until the debt is paid back
// at the rate; other keys are not charged.
func TestDebitGoesIntoDebt(t *testing.T) {
	l, c := newLimiter(t, Config{Rate: 100, Burst: 1000, MaxKeys: 16})
	l.Debit("k", 1500) // counts as the burst: empties the full bucket
	l.Debit("k", 5000) // and one burst of debt at most
	if ok, wait := l.Allow("k"); ok || wait != 10010*time.Millisecond {
		t.Fatalf("after debts of two bursts: ok %v, retry after %v; want refused for 10.01 s", ok, wait)
	}
	if ok, _ := l.Allow("other"); !ok {
		t.Fatal("another key was charged")
	}
	c.Advance(10 * time.Second) // the debt is paid, the bucket still empty
	if ok, _ := l.Allow("k"); ok {
		t.Fatal("allowed with an empty bucket")
	}
	c.Advance(10 * time.Millisecond)
	if ok, _ := l.Allow("k"); !ok {
		t.Fatal("refused after the debt was paid back and a token refilled")
	}
	l.Debit("k", 0)
	l.Debit("k", -5)
	if ok, _ := l.Allow("k"); ok {
		t.Fatal("the last token was taken above; an empty debit must not give any back")
	}
}
