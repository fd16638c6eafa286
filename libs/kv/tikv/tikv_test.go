package tikv_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tikvclient "github.com/tikv/client-go/v2/tikv"
	"github.com/tikv/client-go/v2/tikvrpc"

	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/kv/kvtest"
	"github.com/guardyn/guardyn/libs/kv/tikv"
	"github.com/guardyn/guardyn/libs/kv/tikv/tikvtest"
)

// openMockTiKV opens a Store on client-go's in-process mock cluster (see tikvtest).
func openMockTiKV(tb testing.TB, dir string, opts tikv.Options, hijack func(tikvclient.Client) tikvclient.Client) (*tikv.Store, *tikvtest.Cluster) {
	tb.Helper()
	return tikvtest.Open(tb, dir, opts, hijack)
}

func openMock(tb testing.TB, dir string) kv.Store {
	s, _ := openMockTiKV(tb, dir, tikv.Options{}, nil)
	return s
}

// pdAddrs returns the PD endpoints of a real cluster named by GUARDYN_TEST_PD
// (host:port[,host:port...]), or skips the test.
func pdAddrs(tb testing.TB) []string {
	pd := os.Getenv("GUARDYN_TEST_PD")
	if pd == "" {
		tb.Skip("GUARDYN_TEST_PD is not set: no real TiKV cluster to test against")
	}
	return strings.Split(pd, ",")
}

// openReal opens a Store on the real cluster, in a namespace of its own per dir so that
// test runs sharing the cluster never see each other's keys.
func openReal(tb testing.TB, dir string) kv.Store {
	tb.Helper()
	s, err := tikv.Open(context.Background(), pdAddrs(tb), tikv.Options{Namespace: []byte("kvtest/" + dir + "/")})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestConformanceMockTiKV(t *testing.T) {
	kvtest.Run(t, openMock)
}

func TestConformanceRealTiKV(t *testing.T) {
	pdAddrs(t)
	kvtest.Run(t, openReal)
}

func BenchmarkStoreMockTiKV(b *testing.B) {
	kvtest.Benchmark(b, openMock)
}

// regionErrors counts the responses that carry a region error.
type regionErrors struct {
	tikvclient.Client
	n *atomic.Int64
}

func (c regionErrors) SendRequest(ctx context.Context, addr string, req *tikvrpc.Request, timeout time.Duration) (*tikvrpc.Response, error) {
	resp, err := c.Client.SendRequest(ctx, addr, req, timeout)
	if err == nil {
		if e, _ := resp.GetRegionError(); e != nil {
			c.n.Add(1)
		}
	}
	return resp, err
}

// TestRegionSplitRetryMockTiKV splits the only region under running transactions, so the
// client's cached region goes stale: requests come back with a region error
// (epoch not match), and the client must reload the region and retry them without the
// caller seeing anything.
func TestRegionSplitRetryMockTiKV(t *testing.T) {
	var errs atomic.Int64
	s, cluster := openMockTiKV(t, t.TempDir(), tikv.Options{}, func(c tikvclient.Client) tikvclient.Client {
		return regionErrors{Client: c, n: &errs}
	})
	defer s.Close()
	ctx := context.Background()
	const n = 100
	if err := s.Update(ctx, func(tx kv.Tx) error {
		for i := range n {
			if err := tx.Put(fmt.Appendf(nil, "r/%03d", i), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The client now caches the single region; split it into several behind its back.
	cluster.SplitKeys([]byte("r/000"), []byte("r/100"), 4)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := s.Update(ctx, func(tx kv.Tx) error {
				return tx.Put(fmt.Appendf(nil, "r/%03d", i*12), []byte("w"))
			}); err != nil {
				t.Errorf("update after split: %v", err)
			}
		})
	}
	wg.Wait()
	var got []kv.Pair
	if err := s.View(ctx, func(tx kv.Tx) error {
		var err error
		got, err = kv.ScanPrefix(tx, []byte("r/"), 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("scan across split regions returned %d pairs, want %d", len(got), n)
	}
	for i, p := range got {
		want := "v"
		if i%12 == 0 && i/12 < 8 {
			want = "w"
		}
		if string(p.Value) != want {
			t.Errorf("%q = %q, want %q", p.Key, p.Value, want)
		}
	}
	if errs.Load() == 0 {
		t.Fatal("no region error was returned: the retry path was not exercised")
	}
}

// TestNoWriteSkewMockTiKV runs the classic write skew: two on-call flags, both set; each
// Update reads both and clears its own only if the other is still set. Snapshot isolation,
// TiKV's own level, lets both commit and leaves nobody on call; kv.Store promises
// serializable transactions, so one of them must see the other's write and keep its flag.
func TestNoWriteSkewMockTiKV(t *testing.T) {
	s := openMock(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	for round := range 5 {
		a, b := fmt.Appendf(nil, "oncall/%d/a", round), fmt.Appendf(nil, "oncall/%d/b", round)
		if err := s.Update(ctx, func(tx kv.Tx) error {
			if err := tx.Put(a, []byte("1")); err != nil {
				return err
			}
			return tx.Put(b, []byte("1"))
		}); err != nil {
			t.Fatal(err)
		}
		// Both first attempts read before either commits.
		var read sync.WaitGroup
		read.Add(2)
		var wg sync.WaitGroup
		for _, keys := range [][2][]byte{{a, b}, {b, a}} {
			wg.Go(func() {
				first := true
				err := s.Update(ctx, func(tx kv.Tx) error {
					mine, err := tx.Get(keys[0])
					if err != nil {
						return err
					}
					other, err := tx.Get(keys[1])
					if err != nil {
						return err
					}
					if first {
						first = false
						read.Done()
						read.Wait()
					}
					if string(mine) == "1" && string(other) == "1" {
						return tx.Put(keys[0], []byte("0"))
					}
					return nil
				})
				if err != nil {
					t.Errorf("update: %v", err)
				}
			})
		}
		wg.Wait()
		var sum int
		if err := s.View(ctx, func(tx kv.Tx) error {
			for _, k := range [][]byte{a, b} {
				v, err := tx.Get(k)
				if err != nil {
					return err
				}
				sum += int(v[0] - '0')
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if sum != 1 {
			t.Fatalf("round %d: %d flags set after both updates, want 1 (write skew)", round, sum)
		}
	}
}
