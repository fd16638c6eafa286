package platform_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	tikvclient "github.com/tikv/client-go/v2/tikv"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	"github.com/guardyn/guardyn/libs/kv/tikv"
	"github.com/guardyn/guardyn/libs/kv/tikv/tikvtest"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// startOnMockTiKV starts the platform with its kv store on client-go's in-process mock
// TiKV cluster (a real one cannot run here), its transport wrapped by hijack if not nil,
// tuned further by tune.
func startOnMockTiKV(t *testing.T, opts tikv.Options, hijack func(tikvclient.Client) tikvclient.Client, tune func(*platform.Config)) (*env, *tikvtest.Cluster) {
	t.Helper()
	store, cluster := tikvtest.Open(t, t.TempDir(), opts, hijack)
	return startWith(t, func(c *platform.Config) {
		c.KVStore = kvbackend.Cluster(store)
		tune(c)
	}), cluster
}

// TestConcurrentPreKeyClaimsMockTiKV: callers racing for one device's one-time prekeys
// over gRPC, with the kv store on TiKV, get each key at most once and all of them in the
// end; the claims that lose a race retry pessimistically, queueing on the key's lock.
func TestConcurrentPreKeyClaimsMockTiKV(t *testing.T) {
	e, _ := startOnMockTiKV(t, tikv.Options{}, nil, func(c *platform.Config) { c.Limits = ratelimit.Policy{} })
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

// TestStoreFaultIsUnavailableMockTiKV: while the TiKV cluster answers every request with a
// region error, calls that need the kv store fail within the store's timeout with
// UNAVAILABLE and the stable reason STORE_UNAVAILABLE (before: INTERNAL, after client-go's
// 40 to 80 s of backoff, beyond the caller's deadline); nothing of them is written: once
// the store answers, the same registration and the same group creation succeed, where a
// half-written one would have left the username taken or the group existing.
// Authenticated calls are refused by the device check that comes first, with
// UNAVAILABLE/REVOCATION_UNAVAILABLE, unless the fault spares the auth store.
func TestStoreFaultIsUnavailableMockTiKV(t *testing.T) {
	var faults tikvtest.Faults
	e, _ := startOnMockTiKV(t, tikv.Options{Timeout: time.Second}, faults.Hijack, func(*platform.Config) {})
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	gid := clientID()
	create := &messagingv1.CreateGroupRequest{GroupId: gid, GroupInfo: []byte("gi0"), Members: []*commonv1.DeviceAddress{
		{UserId: alice.UserID, DeviceId: alice.ID}, {UserId: bob.UserID, DeviceId: bob.ID}}}
	// alice's token is verified, and remembered, before the fault.
	_, err := e.msg.GetGroupInfo(alice.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: clientID()})
	wantErr(t, err, codes.NotFound, "GROUP_NOT_FOUND")

	faults.SetBusy(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = rawdevice.Register(ctx, e.auth, "carol")
	wantErr(t, err, codes.Unavailable, server.ReasonStoreUnavailable)
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("registration with the store failing answered after %v", took)
	}
	// Every call checks its device against the auth store first: with that store failing
	// too, an authenticated call is refused before its service runs.
	_, err = e.msg.CreateGroup(alice.ctx(t), create)
	wantErr(t, err, codes.Unavailable, authn.ReasonRevocationUnavailable)
	// With the device lookups spared, the group's own transaction meets the fault.
	faults.SetBusyExcept([]byte("auth/device/"))
	_, err = e.msg.CreateGroup(alice.ctx(t), create)
	wantErr(t, err, codes.Unavailable, server.ReasonStoreUnavailable)
	if faults.Injected() == 0 {
		t.Fatal("no request met the fault")
	}

	faults.SetBusy(false)
	carol := e.register(t, "carol")
	if _, err := e.msg.CreateGroup(alice.ctx(t), create); err != nil {
		t.Fatalf("the same group once the store answers: %v (reason %s)", status.Convert(err).Message(), server.Reason(err))
	}
	if carol.UserID == "" {
		t.Fatal("carol registered without a user id")
	}
}
