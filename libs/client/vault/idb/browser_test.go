//go:build !js

package idb_test

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/client/vault"
	"github.com/guardyn/guardyn/libs/client/vault/vaulttest"
	"github.com/guardyn/guardyn/tools/browsertest"
)

// TestInBrowser runs this package's tests (idb_test.go) in headless chromium: the
// vault.Storage suite over IndexedDB and Web Locks, two tabs of one profile, the wrong
// passphrase, nothing readable at rest. It also times unlocking a vault of
// vault.DefaultParams in the browser against natively, in the same run.
func TestInBrowser(t *testing.T) {
	chromium := browsertest.Chromium(t)
	wasm := browsertest.BuildTest(t, ".")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res := browsertest.RunTests(ctx, t, chromium, wasm, "-test.v")
	m := regexp.MustCompile(`UNLOCK_DEFAULT_PARAMS_NS=(\d+)`).FindStringSubmatch(res.Output)
	if m == nil {
		t.Fatal("the browser printed no unlock time")
	}
	ns, _ := strconv.ParseInt(m[1], 10, 64)
	browser := time.Duration(ns)
	native := nativeUnlock(t)
	t.Logf("unlock with vault.DefaultParams (scrypt N=2^%d r=%d p=%d), best of 3: browser (wasm) %v, native %v, ratio %.1f",
		vault.DefaultParams.LogN, vault.DefaultParams.R, vault.DefaultParams.P, browser.Round(time.Millisecond), native.Round(time.Millisecond), float64(browser)/float64(native))
}

func nativeUnlock(t *testing.T) time.Duration {
	s := vaulttest.NewMemory()
	v, err := vault.Create(s, []byte("passphrase"), vault.DefaultParams, []byte("state"))
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	var best time.Duration
	for i := range 3 {
		start := time.Now()
		w, err := vault.Open(s, []byte("passphrase"))
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		if i == 0 || took < best {
			best = took
		}
	}
	return best
}
