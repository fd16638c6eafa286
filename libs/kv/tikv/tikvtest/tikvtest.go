// Package tikvtest opens a [tikv.Store] on client-go's in-process mock cluster (mocktikv:
// one PD, one TiKV store, MVCC on a LevelDB under a directory), the test double for a real
// TiKV cluster, which cannot run here. Tests of the store itself, of the services and of
// the whole platform use it; GUARDYN_TEST_PD names a real cluster instead where a test
// supports one.
package tikvtest

import (
	"path/filepath"
	"testing"

	"github.com/tikv/client-go/v2/testutils"
	tikvclient "github.com/tikv/client-go/v2/tikv"

	"github.com/guardyn/guardyn/libs/kv/tikv"
)

// Cluster is the mock cluster behind a store, for tests that split its regions or stop
// its TiKV store (StopStore makes every request fail as a refused connection would).
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

// StopStores makes every TiKV store of cluster refuse requests, as if its processes were
// down, until StartStores.
func StopStores(cluster *Cluster) {
	for _, s := range cluster.GetAllStores() {
		cluster.StopStore(s.GetId())
	}
}

// StartStores brings the stores StopStores stopped back.
func StartStores(cluster *Cluster) {
	for _, s := range cluster.GetAllStores() {
		cluster.StartStore(s.GetId())
	}
}
