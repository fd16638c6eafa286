package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
)

// source is a Source whose answers the test sets, counting calls; a call blocks while
// gate is set and not closed.
type source struct {
	mu      sync.Mutex
	devices map[string][]uint32
	err     error
	gate    chan struct{}
	gated   string // the user whose lookups the gate holds; "" for all
	started chan string
	calls   atomic.Int64
	// delay, when set, is the time each request takes, one request at a time.
	delay  time.Duration
	serial sync.Mutex
}

func newSource() *source {
	return &source{devices: map[string][]uint32{}, started: make(chan string, 1000)}
}

func (s *source) set(user string, devices ...uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.devices[user] = devices
}

func (s *source) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// hold makes later calls wait until the returned function is called.
func (s *source) hold() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = make(chan struct{})
	gate := s.gate
	return sync.OnceFunc(func() { close(gate) })
}

func (s *source) Lookup(ctx context.Context, users []string) ([]List, error) {
	s.calls.Add(1)
	s.mu.Lock()
	// Read the answers when the call starts, as a request to the auth service would.
	out := make([]List, len(users))
	for i, user := range users {
		out[i] = List{Devices: slices.Clone(s.devices[user]), Found: s.devices[user] != nil}
	}
	err, gate := s.err, s.gate
	if s.gated != "" && !slices.Contains(users, s.gated) {
		gate = nil
	}
	delay := s.delay
	s.mu.Unlock()
	for _, user := range users {
		select {
		case s.started <- user:
		default: // a flood; no test waits for these
		}
	}
	if delay > 0 {
		// One request at a time, as a serial responder answers.
		s.serial.Lock()
		time.Sleep(delay)
		s.serial.Unlock()
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func devicesOf(t *testing.T, c *Client, user string) []uint32 {
	t.Helper()
	devs, found, err := c.Devices(testCtx(t), user)
	if err != nil || !found {
		t.Fatalf("Devices(%s) = %v, %v, %v", user, devs, found, err)
	}
	return devs
}

// TestForgetWinsOverLookupInFlight is the race of finding 7: a lookup fetches bob's
// list, bob removes a device and the change event makes the cache forget him, then the
// lookup's (old) answer arrives. It must not be cached: the next lookup asks again and
// sees the removal.
func TestForgetWinsOverLookupInFlight(t *testing.T) {
	src := newSource()
	src.set("bob", 1, 2)
	c := New(src, Options{TTL: time.Hour})
	release := src.hold()
	stale := make(chan []uint32, 1)
	go func() {
		devs, _, _ := c.Devices(testCtx(t), "bob")
		stale <- devs
	}()
	<-src.started // the request is out, carrying the old list
	src.set("bob", 1)
	c.Forget("bob")
	release()
	if got := <-stale; !slices.Equal(got, []uint32{1, 2}) {
		t.Fatalf("the lookup in flight answered %v", got)
	}
	src.mu.Lock()
	src.gate = nil
	src.mu.Unlock()
	if got := devicesOf(t, c, "bob"); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("after Forget the cache still answers %v, want [1]", got)
	}
	revoked, err := c.IsDeviceRevoked(testCtx(t), "bob", 2)
	if err != nil || !revoked {
		t.Fatalf("removed device: revoked %v, %v", revoked, err)
	}
}

// TestForgetAfterEviction: the record of a Forget may be evicted while a lookup that
// started before it is still in flight; the lookup's answer must still be refused.
func TestForgetAfterEviction(t *testing.T) {
	src := newSource()
	src.set("bob", 1, 2)
	src.set("carol", 1)
	src.set("dave", 1)
	c := New(src, Options{TTL: time.Hour, MaxEntries: 2})
	src.gated = "bob"
	release := src.hold()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Devices(testCtx(t), "bob")
	}()
	<-src.started
	c.Forget("bob")
	devicesOf(t, c, "carol") // push bob's record out
	devicesOf(t, c, "dave")
	if c.Len() != 2 {
		t.Fatalf("cache holds %d users, want 2", c.Len())
	}
	release()
	<-done
	src.mu.Lock()
	src.gate = nil
	src.mu.Unlock()
	src.set("bob", 1)
	if got := devicesOf(t, c, "bob"); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("a lookup from before an evicted Forget was cached: %v", got)
	}
}

// TestForgetOfUnknownUsersTakesNoRoom: change events for users this process never looked
// up do not push the users it serves out of the cache.
func TestForgetOfUnknownUsersTakesNoRoom(t *testing.T) {
	src := newSource()
	src.set("bob", 1)
	c := New(src, Options{TTL: time.Hour, MaxEntries: 4})
	devicesOf(t, c, "bob")
	for i := range 100 {
		c.Forget(fmt.Sprint("stranger", i))
	}
	before := src.calls.Load()
	devicesOf(t, c, "bob")
	if src.calls.Load() != before || c.Len() != 1 {
		t.Fatalf("forgetting strangers evicted bob (%d users cached)", c.Len())
	}
}

// TestConcurrentLookupsShareOneRequest: a burst of lookups of one user costs the auth
// service one request, and a lookup arriving after Forget does not join a request sent
// before it.
func TestConcurrentLookupsShareOneRequest(t *testing.T) {
	src := newSource()
	src.set("bob", 1)
	c := New(src, Options{TTL: time.Hour})
	release := src.hold()
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if got := devicesOf(t, c, "bob"); !slices.Equal(got, []uint32{1}) {
				t.Errorf("got %v", got)
			}
		})
	}
	<-src.started
	// Give the other lookups time to reach the source, as they would without sharing;
	// any that come later find the answer cached.
	for deadline := time.Now().Add(500 * time.Millisecond); src.calls.Load() < n && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	release()
	wg.Wait()
	if calls := src.calls.Load(); calls != 1 {
		t.Fatalf("%d concurrent lookups made %d requests, want 1", n, calls)
	}
}

// TestCacheEvictsLeastRecentlyUsed: a full cache drops its least recently used entry, not
// everything; a user looked up all the time stays cached.
func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	src := newSource()
	const size = 8
	for i := range 10 * size {
		src.set(fmt.Sprint("user", i), 1)
	}
	c := New(src, Options{TTL: time.Hour, MaxEntries: size})
	devicesOf(t, c, "user0")
	for i := 1; i < 10*size; i++ {
		devicesOf(t, c, fmt.Sprint("user", i))
		before := src.calls.Load()
		devicesOf(t, c, "user0")
		if src.calls.Load() != before {
			t.Fatalf("after %d other users the hot user was evicted", i)
		}
		if n := c.Len(); n > size {
			t.Fatalf("cache holds %d users, limit %d", n, size)
		}
	}
	// The cache is full, not wiped: the most recent users are all still there.
	before := src.calls.Load()
	for i := 10*size - (size - 1); i < 10*size; i++ {
		devicesOf(t, c, fmt.Sprint("user", i))
	}
	if got := src.calls.Load() - before; got != 0 {
		t.Fatalf("%d of the %d most recent users were evicted", got, size-1)
	}
}

// TestOutageIsUnavailableNotRevoked: when the source cannot answer, the revocation check
// says so with ErrUnavailable; it never reports the device removed.
func TestOutageIsUnavailableNotRevoked(t *testing.T) {
	src := newSource()
	c := New(src, Options{TTL: time.Hour})
	src.fail(errors.New("no responders"))
	revoked, err := c.IsDeviceRevoked(testCtx(t), "bob", 1)
	if !errors.Is(err, ErrUnavailable) || revoked {
		t.Fatalf("outage: revoked %v, err %v; want ErrUnavailable", revoked, err)
	}
	// Failures are not cached.
	src.fail(nil)
	src.set("bob", 1)
	if revoked, err := c.IsDeviceRevoked(testCtx(t), "bob", 1); err != nil || revoked {
		t.Fatalf("after the outage: revoked %v, err %v", revoked, err)
	}
	// A user the source does not know is revoked.
	if revoked, err := c.IsDeviceRevoked(testCtx(t), "nobody", 1); err != nil || !revoked {
		t.Fatalf("unknown user: revoked %v, err %v", revoked, err)
	}
}

// TestEntriesExpire: without change events an entry is trusted for the TTL only.
func TestEntriesExpire(t *testing.T) {
	src := newSource()
	src.set("bob", 1, 2)
	var mu sync.Mutex
	now := time.Unix(1e9, 0)
	c := New(src, Options{TTL: time.Minute, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	devicesOf(t, c, "bob")
	src.set("bob", 1)
	if got := devicesOf(t, c, "bob"); len(got) != 2 {
		t.Fatalf("within the TTL: %v", got)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if got := devicesOf(t, c, "bob"); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("after the TTL: %v", got)
	}
}

// TestColdLookupFloodIsBatched is the herd of issue 17: every device's first send after a
// restart looks up a user the cache has never seen. Against a source that answers one
// request at a time (the auth service's responder, 2 ms each here) 2,000 cold lookups
// took one request each, over 4 s; batched, they take a few requests and complete within
// the bound, each with its own user's answer.
func TestColdLookupFloodIsBatched(t *testing.T) {
	src := newSource()
	src.delay = 2 * time.Millisecond
	const users = 2000
	for i := range users {
		src.set(fmt.Sprint("user", i), uint32(i%7+1))
	}
	c := New(src, Options{TTL: time.Hour})
	start := time.Now()
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			user := fmt.Sprint("user", i)
			if got := devicesOf(t, c, user); !slices.Equal(got, []uint32{uint32(i%7 + 1)}) {
				t.Errorf("%s: got %v", user, got)
			}
			if i%3 == 0 { // some users are not found at all
				if _, found, err := c.Devices(testCtx(t), fmt.Sprint("nobody", i)); found || err != nil {
					t.Errorf("unknown user: found %v, err %v", found, err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	lookups := users + users/3
	// Each request carries every lookup queued while the others were out: how many that is
	// depends on how the lookups arrive (11 to 33 requests here), but never one per user.
	if calls := src.calls.Load(); calls > int64(lookups/16) {
		t.Errorf("%d cold lookups made %d requests, want at most %d", lookups, calls, lookups/16)
	}
	if elapsed > 2*time.Second {
		t.Errorf("%d cold lookups took %v, want under 2s", lookups, elapsed)
	}
	t.Logf("%d cold lookups: %d requests in %v", lookups, src.calls.Load(), elapsed)
}

// FuzzDecodeReply feeds the auth service's reply decoder arbitrary bytes: it never panics
// and either fails or returns exactly one list per user asked.
func FuzzDecodeReply(f *testing.F) {
	seed := func(m *eventsv1.DeviceListResponse) []byte { b, _ := proto.Marshal(m); return b }
	f.Add([]byte{}, 1)
	f.Add(seed(&eventsv1.DeviceListResponse{Lists: []*eventsv1.DeviceList{{Found: true, DeviceIds: []uint32{1, 2}}, {}}}), 2)
	f.Add(seed(&eventsv1.DeviceListResponse{Found: true, DeviceIds: []uint32{1}}), 1)
	f.Add(seed(&eventsv1.DeviceListResponse{Error: "directory lookup failed"}), 1)
	f.Fuzz(func(t *testing.T, data []byte, want int) {
		want = max(0, min(want, MaxBatch))
		lists, err := decodeReply(data, want)
		if err == nil && len(lists) != want {
			t.Fatalf("decoded %d lists for %d users", len(lists), want)
		}
	})
}
