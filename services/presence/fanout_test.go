package presence_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
)

// countingStore counts read transactions.
type countingStore struct {
	kv.Store
	views atomic.Int64
}

func (c *countingStore) View(ctx context.Context, fn func(kv.Tx) error) error {
	c.views.Add(1)
	return c.Store.View(ctx, fn)
}

// TestFanOutSharesOneChange: one account going offline under 50 watches is built once
// and sent to all of them; no watch reads the store for it (the view knows when it went
// offline). Each watch used to read the stored last seen itself, 50 reads per change.
func TestFanOutSharesOneChange(t *testing.T) {
	var store *countingStore
	e := start(t, options{tune: func(c *presenceConfig) {
		store = &countingStore{Store: c.Store}
		c.Store = store
	}})
	e.everyone(t, "bob")
	must(e.client.SetStatus(e.as(t, "bob", 1), &presencev1.SetStatusRequest{Status: presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE}))
	const n = 50
	watchers := make([]*watcher, n)
	for i := range watchers {
		viewer := fmt.Sprintf("viewer%02d", i)
		e.everyone(t, viewer)
		watchers[i] = e.watch(t, viewer, "bob")
		watchers[i].next(t, presencev1.PresenceStatus_PRESENCE_STATUS_ONLINE, 10*time.Second)
	}
	before := store.views.Load()
	must(e.client.SetStatus(e.as(t, "bob", 1), &presencev1.SetStatusRequest{Status: presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE}))
	var first *presencev1.Presence
	for _, w := range watchers {
		p := w.next(t, presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE, 10*time.Second)
		if p.GetLastSeen() == nil || p.GetUserId() != "bob" {
			t.Fatalf("offline presence %v: want bob with a last seen", p)
		}
		if first == nil {
			first = p
		} else if !p.GetLastSeen().AsTime().Equal(first.GetLastSeen().AsTime()) {
			t.Fatalf("watches disagree on last seen: %v and %v", first.GetLastSeen().AsTime(), p.GetLastSeen().AsTime())
		}
	}
	if reads := store.views.Load() - before; reads > 2 {
		t.Fatalf("one change to %d watches read the store %d times, want at most 2", n, reads)
	}
}
