package platform_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	"github.com/guardyn/guardyn/libs/kv/tikv"
	"github.com/guardyn/guardyn/libs/kv/tikv/tikvtest"
	"github.com/guardyn/guardyn/libs/ratelimit"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// startOnMockTiKV starts the platform with its kv store on client-go's in-process mock
// TiKV cluster (a real one cannot run here), tuned further by tune.
func startOnMockTiKV(t *testing.T, opts tikv.Options, tune func(*platform.Config)) (*env, *tikvtest.Cluster) {
	t.Helper()
	store, cluster := tikvtest.Open(t, t.TempDir(), opts, nil)
	return startWith(t, func(c *platform.Config) {
		c.KVStore = kvbackend.Cluster(store)
		tune(c)
	}), cluster
}

// TestConcurrentPreKeyClaimsMockTiKV: callers racing for one device's one-time prekeys
// over gRPC, with the kv store on TiKV, get each key at most once and all of them in the
// end; the claims that lose a race retry pessimistically, queueing on the key's lock.
func TestConcurrentPreKeyClaimsMockTiKV(t *testing.T) {
	e, _ := startOnMockTiKV(t, tikv.Options{}, func(c *platform.Config) { c.Limits = ratelimit.Policy{} })
	alice := e.register(t, "alice")
	const uploaded, callers, each = 30, 6, 6
	must(e.auth.UploadPreKeys(alice.ctx(t), preKeyUpload(t, alice, keys.NewPreKeyStore(), true, uploaded)))
	var mu sync.Mutex
	claimed := map[uint32]int{}
	var wg sync.WaitGroup
	for i := range callers {
		caller := e.register(t, fmt.Sprintf("caller%d", i))
		wg.Go(func() {
			for range each {
				resp, err := e.auth.GetKeyBundles(caller.ctx(t), &authv1.GetKeyBundlesRequest{UserId: alice.UserID})
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				if k := resp.GetBundles()[0].GetOneTimeEcPrekey(); k != nil {
					mu.Lock()
					claimed[k.GetId()]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for id, n := range claimed {
		if n > 1 {
			t.Errorf("one-time prekey %d handed out %d times", id, n)
		}
	}
	if len(claimed) != uploaded {
		t.Fatalf("%d distinct one-time prekeys claimed by %d claims, want all %d", len(claimed), callers*each, uploaded)
	}
}
