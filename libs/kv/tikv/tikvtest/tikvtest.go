// Package tikvtest opens a [tikv.Store] on client-go's in-process mock cluster (mocktikv:
// one PD, one TiKV store, MVCC on a LevelDB under a directory), the test double for a real
// TiKV cluster, which cannot run here. Tests of the store itself, of the services and of
// the whole platform use it; GUARDYN_TEST_PD names a real cluster instead where a test
// supports one.
package tikvtest

import (
	"bytes"
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pingcap/kvproto/pkg/errorpb"
	"github.com/tikv/client-go/v2/testutils"
	tikvclient "github.com/tikv/client-go/v2/tikv"
	"github.com/tikv/client-go/v2/tikvrpc"

	"github.com/guardyn/guardyn/libs/kv/tikv"
)

// Cluster is the mock cluster behind a store, for tests that split its regions.
type Cluster = testutils.MockCluster

// Open opens a Store with opts on a mock cluster whose data lives in dir: reopening dir
// finds the same data. hijack, if not nil, wraps the client's RPC transport. The store is
// the caller's to close.
func Open(tb testing.TB, dir string, opts tikv.Options, hijack func(tikvclient.Client) tikvclient.Client) (*tikv.Store, *Cluster) {
	tb.Helper()
	client, cluster, pdClient, err := testutils.NewMockTiKV(filepath.Join(dir, "mocktikv"), nil)
	if err != nil {
		tb.Fatalf("start mock tikv: %v", err)
	}
	testutils.BootstrapWithSingleStore(cluster)
	kvs, err := tikvclient.NewTestTiKVStore(client, pdClient, hijack, nil, 0)
	if err != nil {
		tb.Fatalf("open mock tikv store: %v", err)
	}
	return tikv.New(kvs, opts), cluster
}

// Faults makes a store's cluster fail on demand: while Busy, every request is answered
// with a ServerIsBusy region error, as an overloaded or failing TiKV store answers, so
// the client backs off and retries until it gives up or the fault clears. Pass Hijack to
// Open.
type Faults struct {
	busy     atomic.Bool
	spare    atomic.Pointer[[]byte]
	injected atomic.Int64
}

// Hijack wraps c so that f's faults apply to it.
func (f *Faults) Hijack(c tikvclient.Client) tikvclient.Client { return faulty{Client: c, f: f} }

// SetBusy turns the fault on or off.
func (f *Faults) SetBusy(on bool) {
	f.spare.Store(nil)
	f.busy.Store(on)
}

// SetBusyExcept turns the fault on for every request but reads (Get, Scan) of keys
// starting with prefix, so that a test can fail one service's transactions while another
// service's lookups still work.
func (f *Faults) SetBusyExcept(prefix []byte) {
	p := bytes.Clone(prefix)
	f.spare.Store(&p)
	f.busy.Store(true)
}

// Injected is how many requests were answered with an injected error.
func (f *Faults) Injected() int64 { return f.injected.Load() }

func (f *Faults) spared(req *tikvrpc.Request) bool {
	p := f.spare.Load()
	if p == nil {
		return false
	}
	switch req.Type {
	case tikvrpc.CmdGet:
		return bytes.HasPrefix(req.Get().GetKey(), *p)
	case tikvrpc.CmdScan:
		return bytes.HasPrefix(req.Scan().GetStartKey(), *p)
	}
	return false
}

type faulty struct {
	tikvclient.Client
	f *Faults
}

func (c faulty) SendRequest(ctx context.Context, addr string, req *tikvrpc.Request, timeout time.Duration) (*tikvrpc.Response, error) {
	if c.f.busy.Load() && !c.f.spared(req) {
		c.f.injected.Add(1)
		return tikvrpc.GenRegionErrorResp(req, &errorpb.Error{
			Message: "injected by tikvtest.Faults", ServerIsBusy: &errorpb.ServerIsBusy{Reason: "injected by tikvtest.Faults"},
		})
	}
	return c.Client.SendRequest(ctx, addr, req, timeout)
}
