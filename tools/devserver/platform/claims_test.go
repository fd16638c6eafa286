package platform_test

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	"github.com/guardyn/guardyn/tools/devserver/platform"
)

// TestDrainingCallerLeavesOneTimePreKeysForOthers: with the default limits, one caller
// fetching a victim's bundles as fast as it is allowed gets only a small share of the
// victim's one-time prekeys, and an honest caller afterwards still gets one-time keys.
// Before, the drainer used up the victim's whole per-target budget, and every other
// sender got bundles without one-time keys for as long as the drain went on.
func TestDrainingCallerLeavesOneTimePreKeysForOthers(t *testing.T) {
	e := start(t)
	alice, mallory, bob := e.register(t, "alice"), e.register(t, "mallory"), e.register(t, "bob")
	must(e.auth.UploadPreKeys(alice.ctx(t), preKeyUpload(t, alice, keys.NewPreKeyStore(), true, 100)))
	policy := platform.DefaultPolicy()
	drained := 0
	for range policy["bundles"].Burst {
		resp, err := e.auth.GetKeyBundles(mallory.ctx(t), &authv1.GetKeyBundlesRequest{UserId: alice.UserID})
		if err != nil {
			wantErr(t, err, codes.ResourceExhausted, "RATE_LIMITED")
			break
		}
		if resp.GetBundles()[0].GetOneTimeEcPrekey() != nil {
			drained++
		}
	}
	resp := must(e.auth.GetKeyBundles(bob.ctx(t), &authv1.GetKeyBundlesRequest{UserId: alice.UserID}))
	if b := resp.GetBundles()[0]; b.GetOneTimeEcPrekey() == nil || b.GetKemPrekeyIsLastResort() {
		t.Fatalf("after mallory's drain, bob got a bundle without one-time keys (%d claimed by mallory)", drained)
	}
	if share := policy["bundles-pair"].Burst; drained > share {
		t.Fatalf("one caller claimed %d of alice's one-time prekeys; its share is %d", drained, share)
	}
}

// TestDrainingCallerLeavesKeyPackagesForOthers: one caller claiming a victim's MLS key
// packages in a loop is stopped after its share, and an honest caller then still gets a
// key package. Before, one caller drained all 100 within its per-caller burst.
func TestDrainingCallerLeavesKeyPackagesForOthers(t *testing.T) {
	e := start(t)
	alice, mallory, bob := e.register(t, "alice"), e.register(t, "mallory"), e.register(t, "bob")
	kps := make([][]byte, 100)
	for i := range kps {
		kps[i] = fmt.Appendf(nil, "key package %d", i)
	}
	must(e.auth.UploadKeyPackages(alice.ctx(t), &authv1.UploadKeyPackagesRequest{KeyPackages: kps}))
	drained := 0
	var err error
	for range 200 {
		var resp *authv1.ClaimKeyPackagesResponse
		if resp, err = e.auth.ClaimKeyPackages(mallory.ctx(t), &authv1.ClaimKeyPackagesRequest{UserId: alice.UserID}); err != nil {
			break
		}
		drained += len(resp.GetKeyPackages())
	}
	resp, claimErr := e.auth.ClaimKeyPackages(bob.ctx(t), &authv1.ClaimKeyPackagesRequest{UserId: alice.UserID})
	if claimErr != nil {
		t.Fatalf("bob after mallory's drain: %v (reason %s)", claimErr, server.Reason(claimErr))
	}
	if len(resp.GetKeyPackages()) != 1 {
		t.Fatalf("after mallory claimed %d, bob got no key package (devices without: %v)", drained, resp.GetDevicesWithoutKeyPackages())
	}
	wantErr(t, err, codes.ResourceExhausted, "RATE_LIMITED")
	if share := platform.DefaultPolicy()["claim-key-packages-pair"].Burst; drained > share {
		t.Fatalf("one caller claimed %d of alice's key packages; its share is %d", drained, share)
	}
}
