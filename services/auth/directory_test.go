package auth_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/directory"
	"github.com/guardyn/guardyn/libs/kv"
	eventsv1 "github.com/guardyn/guardyn/proto/guardyn/events/v1"
)

// remoteStore is the embedded store behind a round trip: every read transaction first
// waits rtt, as one to a TiKV cluster does. It records the most reads it saw at once.
type remoteStore struct {
	kv.Store
	rtt            time.Duration
	now, maxAtOnce atomic.Int64
}

func (r *remoteStore) View(ctx context.Context, fn func(kv.Tx) error) error {
	n := r.now.Add(1)
	defer r.now.Add(-1)
	for m := r.maxAtOnce.Load(); n > m && !r.maxAtOnce.CompareAndSwap(m, n); m = r.maxAtOnce.Load() {
	}
	time.Sleep(r.rtt)
	return r.Store.View(ctx, fn)
}

// serveDirectory starts an embedded NATS server and the env's directory responder on it.
func (e *env) serveDirectory(t *testing.T) *bus.Bus {
	t.Helper()
	b, err := bus.StartEmbedded(context.Background(), filepath.Join(t.TempDir(), "nats"), bus.EmbeddedOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	r, err := e.svc.ServeDirectory(b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Unsubscribe() })
	return b
}

// TestDirectoryFloodIsAnsweredConcurrently (issue 17): 800 single-user device-list
// requests at once, against a store 5 ms away. The responder used to answer them one at a
// time (4 s at least); it now answers DirectoryWorkers at once, within the bound.
func TestDirectoryFloodIsAnsweredConcurrently(t *testing.T) {
	var remote *remoteStore
	e := newEnvWrapped(t, nil, func(s kv.Store) kv.Store {
		remote = &remoteStore{Store: s, rtt: 5 * time.Millisecond}
		return remote
	})
	alice := e.register(t, "alice")
	nc := e.serveDirectory(t).Conn()

	const requests = 800
	start := time.Now()
	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() {
			user := fmt.Sprint("nobody", i)
			if i%10 == 0 {
				user = alice.userID
			}
			req, _ := proto.Marshal(&eventsv1.DeviceListRequest{UserId: user})
			msg, err := nc.Request(bus.SubjectDirectoryDevices, req, 30*time.Second)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			var resp eventsv1.DeviceListResponse
			if err := proto.Unmarshal(msg.Data, &resp); err != nil || resp.GetError() != "" {
				t.Errorf("request %d: %v, %q", i, err, resp.GetError())
				return
			}
			if want := user == alice.userID; resp.GetFound() != want || (want && !slices.Equal(resp.GetDeviceIds(), []uint32{alice.id})) {
				t.Errorf("request %d for %s: found %v, devices %v", i, user, resp.GetFound(), resp.GetDeviceIds())
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d requests in %v, at most %d reads at once", requests, elapsed, remote.maxAtOnce.Load())
	if elapsed > 2*time.Second {
		t.Errorf("%d requests to a store 5 ms away took %v, want under 2s (serial: 4s)", requests, elapsed)
	}
	if got := remote.maxAtOnce.Load(); got < 2 {
		t.Errorf("the responder read the store %d at a time", got)
	}
}

// TestDirectoryColdLookupFlood (issue 17) is the herd end to end: a messaging process's
// directory.Client, empty after a restart, looks up 3,000 users at once over the bus,
// against a store 2 ms away. Every lookup gets its own user's devices (or not found), and
// the whole flood completes within the bound; one request per user, answered one at a
// time, took 5.8 s here, some lookups timing out.
func TestDirectoryColdLookupFlood(t *testing.T) {
	var remote *remoteStore
	e := newEnvWrapped(t, nil, func(s kv.Store) kv.Store {
		remote = &remoteStore{Store: s, rtt: 2 * time.Millisecond}
		return remote
	})
	alice := e.register(t, "alice")
	phone := e.linkDevice(t, alice)
	bob := e.register(t, "bob")
	b := e.serveDirectory(t)
	c := directory.New(directory.NewBusSource(b.Conn()), directory.Options{})

	const users = 3000
	start := time.Now()
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			user, want := fmt.Sprint("nobody", i), []uint32(nil)
			switch i % 100 {
			case 0:
				user, want = alice.userID, []uint32{alice.id, phone.id}
			case 1:
				user, want = bob.userID, []uint32{bob.id}
			}
			got, found, err := c.Devices(ctx, user)
			if err != nil || found != (want != nil) || !slices.Equal(got, want) {
				t.Errorf("lookup of %s: %v, %v, %v; want %v", user, got, found, err, want)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d cold lookups in %v", users, elapsed)
	if elapsed > 3*time.Second {
		t.Errorf("%d cold lookups took %v, want under 3s", users, elapsed)
	}
	// A device added after the flood is seen once the change is announced: batching kept
	// the cache's invalidation.
	before, _, _ := c.Devices(context.Background(), bob.userID)
	sub, err := directory.Subscribe(b.Conn(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	laptop := e.linkDevice(t, bob)
	data, _ := proto.Marshal(&eventsv1.DevicesChanged{UserId: bob.userID})
	if err := b.Conn().Publish(bus.SubjectDevicesChanged, data); err != nil {
		t.Fatal(err)
	}
	want := []uint32{bob.id, laptop.id}
	slices.Sort(want)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, _, err := c.Devices(context.Background(), bob.userID)
		if err == nil && slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's devices after linking one: %v (before %v), want %v", got, before, want)
		}
	}
}
