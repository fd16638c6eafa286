package client_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/client"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	"github.com/guardyn/guardyn/tools/clienttest"
)

// TestPreKeysRotate moves the device's clock: before PreKeyRotation nothing is replaced; after
// it the signed and last-resort prekeys are new and the server hands out the new signed one;
// the replaced keys are forgotten once keys.MaxPreKeyAge has passed.
func TestPreKeysRotate(t *testing.T) {
	p := clienttest.Start(t)
	p.Register(t, "alice")
	bob := p.Register(t, "bob")
	ctx := clienttest.Context(t)
	var offset atomic.Int64
	cfg := p.Config("alice")
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	alice, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	spk0, lr0, _, err := alice.PreKeyTimesForTest()
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(spk0) > time.Minute || time.Since(lr0) > time.Minute {
		t.Fatalf("registration prekeys created %v, %v: want now", spk0, lr0)
	}
	serverSPK := func() time.Time {
		t.Helper()
		who, err := alice.Whoami()
		if err != nil {
			t.Fatal(err)
		}
		bctx, err := bob.BearerForTest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := authv1.NewAuthServiceClient(p.Conn).GetKeyBundles(bctx, &authv1.GetKeyBundlesRequest{UserId: who.UserID})
		if err != nil || len(resp.GetBundles()) != 1 {
			t.Fatalf("bundles: %v", err)
		}
		return time.Unix(resp.GetBundles()[0].GetSignedEcPrekey().GetCreatedAt(), 0)
	}
	if got := serverSPK(); !got.Equal(spk0.Truncate(time.Second)) {
		t.Fatalf("server's signed prekey created %v, want %v", got, spk0)
	}

	offset.Store(int64(client.PreKeyRotation - time.Hour))
	if _, _, err := alice.ReplenishPreKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if spk, lr, _, _ := alice.PreKeyTimesForTest(); !spk.Equal(spk0) || !lr.Equal(lr0) {
		t.Fatal("prekeys rotated before PreKeyRotation")
	}

	offset.Store(int64(client.PreKeyRotation + time.Hour))
	if _, _, err := alice.ReplenishPreKeys(ctx); err != nil {
		t.Fatal(err)
	}
	spk1, lr1, signed, err := alice.PreKeyTimesForTest()
	if err != nil {
		t.Fatal(err)
	}
	if !spk1.After(spk0) || !lr1.After(lr0) || signed != 2 {
		t.Fatalf("after %v: signed prekey %v (was %v), last resort %v (was %v), %d signed kept; want both new, the old one kept",
			client.PreKeyRotation, spk1, spk0, lr1, lr0, signed)
	}
	if got := serverSPK(); !got.Equal(spk1) {
		t.Fatalf("server's signed prekey created %v, want the rotated one %v", got, spk1)
	}

	offset.Store(int64(keys.MaxPreKeyAge + time.Hour))
	if _, _, err := alice.ReplenishPreKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, signed, _ := alice.PreKeyTimesForTest(); signed != 2 {
		// Rotated again (the previous one is over a week old); the first one, past the
		// maximum age, is gone.
		t.Fatalf("%d signed prekeys kept after %v, want 2 (current and previous)", signed, keys.MaxPreKeyAge)
	}
}
