package tikv_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/kv/tikv"
	"github.com/guardyn/guardyn/libs/kv/tikv/tikvtest"
)

// TestStoreDownIsUnavailableMockTiKV: while the cluster's TiKV store answers every request
// with a region error (ServerIsBusy), an Update of several keys, a View, a Scan and the
// readiness probe fail within Options.Timeout with kv.ErrUnavailable (client-go alone backs off a
// read for up to 40 s and a commit for 80 s: a stopped mock store made a Get wait 41 s),
// not with a context error, which services would answer as the caller's deadline;
// nothing of the Update is kept, and once the store answers the same Update succeeds. A
// shorter fault is ridden out: client-go retries and the call succeeds.
func TestStoreDownIsUnavailableMockTiKV(t *testing.T) {
	const timeout = time.Second
	var faults tikvtest.Faults
	s, _ := openMockTiKV(t, t.TempDir(), tikv.Options{Timeout: timeout}, faults.Hijack)
	defer s.Close()
	ctx := context.Background()
	write := func(tx kv.Tx) error {
		if _, err := tx.Get([]byte("acct/counter")); err != nil && !errors.Is(err, kv.ErrNotFound) {
			return err
		}
		for i := range 5 {
			if err := tx.Put(fmt.Appendf(nil, "acct/%d", i), []byte("v")); err != nil {
				return err
			}
		}
		return tx.Put([]byte("acct/counter"), []byte("5"))
	}
	if err := s.Update(ctx, func(tx kv.Tx) error { return tx.Put([]byte("other"), []byte("x")) }); err != nil {
		t.Fatal(err)
	}

	faults.SetBusy(true)
	for name, call := range map[string]func() error{
		"update": func() error { return s.Update(ctx, write) },
		"view": func() error {
			return s.View(ctx, func(tx kv.Tx) error { _, err := tx.Get([]byte("other")); return err })
		},
		"ready": func() error { return s.Ready(ctx) },
		// client-go's scanner backs off without a context: the store stops it with a kill flag.
		"scan": func() error {
			return s.View(ctx, func(tx kv.Tx) error { _, err := kv.ScanPrefix(tx, []byte("o"), 0); return err })
		},
	} {
		start := time.Now()
		err := call()
		took := time.Since(start)
		if !errors.Is(err, kv.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s with the store down: %v; want kv.ErrUnavailable, not a deadline of the caller's", name, err)
		}
		if took > timeout+5*time.Second {
			t.Fatalf("%s with the store down failed after %v, want about %v", name, took, timeout)
		}
		t.Logf("%s: %v after %v", name, err, took.Round(time.Millisecond))
	}

	faults.SetBusy(false)
	var left []kv.Pair
	if err := s.View(ctx, func(tx kv.Tx) error {
		var err error
		left, err = kv.ScanPrefix(tx, []byte("acct/"), 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("the failed update left %d keys behind: %q", len(left), left[0].Key)
	}
	if err := s.Update(ctx, write); err != nil {
		t.Fatalf("the update once the store is back: %v", err)
	}

}

// TestShortFaultIsRiddenOutMockTiKV: a region error that clears before Options.Timeout is
// retried by client-go (ServerIsBusy backs off 1 to 2 s first), and the call succeeds.
func TestShortFaultIsRiddenOutMockTiKV(t *testing.T) {
	var faults tikvtest.Faults
	s, _ := openMockTiKV(t, t.TempDir(), tikv.Options{Timeout: 10 * time.Second}, faults.Hijack)
	defer s.Close()
	faults.SetBusy(true)
	cleared := time.AfterFunc(300*time.Millisecond, func() { faults.SetBusy(false) })
	defer cleared.Stop()
	if err := s.Update(context.Background(), func(tx kv.Tx) error { return tx.Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatalf("update across a 300 ms fault: %v", err)
	}
	if faults.Injected() == 0 {
		t.Fatal("no request met the fault: the retry path was not exercised")
	}
}
