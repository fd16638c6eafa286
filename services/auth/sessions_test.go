package auth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/ratelimit"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	"github.com/guardyn/guardyn/services/auth"
)

// countingStore records, per read-write transaction, how many keys it wrote and whether
// it failed, so tests can see what a call cost the single kv writer.
type countingStore struct {
	kv.Store
	mu     sync.Mutex
	writes []int // per committed or failed Update, the writes of its last run
	failed int
	views  int
	// scanned counts the pairs Scan returned to Updates' last runs.
	scanned int
}

func (c *countingStore) View(ctx context.Context, fn func(kv.Tx) error) error {
	c.mu.Lock()
	c.views++
	c.mu.Unlock()
	return c.Store.View(ctx, fn)
}

func (c *countingStore) Update(ctx context.Context, fn func(kv.Tx) error) error {
	var n, scanned int
	err := c.Store.Update(ctx, func(tx kv.Tx) error {
		n, scanned = 0, 0
		return fn(&countingTx{Tx: tx, n: &n, scanned: &scanned})
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, n)
	c.scanned += scanned
	if err != nil {
		c.failed++
	}
	return err
}

// reset forgets what was recorded so far.
func (c *countingStore) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes, c.failed, c.views, c.scanned = nil, 0, 0, 0
}

// scannedPairs is the number of pairs Updates scanned since the last reset.
func (c *countingStore) scannedPairs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scanned
}

// accesses is the number of transactions, read-only or not, since the last reset.
func (c *countingStore) accesses() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writes) + c.views
}

func (c *countingStore) stats() (updates, failed, maxWrites, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.writes {
		maxWrites = max(maxWrites, w)
		total += w
	}
	return len(c.writes), c.failed, maxWrites, total
}

type countingTx struct {
	kv.Tx
	n       *int
	scanned *int
}

func (t *countingTx) Scan(start, end []byte, limit int) ([]kv.Pair, error) {
	pairs, err := t.Tx.Scan(start, end, limit)
	*t.scanned += len(pairs)
	return pairs, err
}

func (t *countingTx) Put(k, v []byte) error { *t.n++; return t.Tx.Put(k, v) }
func (t *countingTx) Delete(k []byte) error { *t.n++; return t.Tx.Delete(k) }

func newCountingEnv(t *testing.T, limits auth.Limiter) (*env, *countingStore) {
	var c *countingStore
	e := newEnvWrapped(t, limits, func(s kv.Store) kv.Store { c = &countingStore{Store: s}; return c })
	return e, c
}

// storeDump returns every auth/ pair of the store.
func (e *env) storeDump(t *testing.T) []kv.Pair {
	t.Helper()
	var pairs []kv.Pair
	if err := e.store.View(context.Background(), func(tx kv.Tx) error {
		var err error
		pairs, err = kv.ScanPrefix(tx, []byte("auth/"), 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return pairs
}

// mentions reports the stored keys whose key or value contains b.
func (e *env) mentions(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	for _, p := range e.storeDump(t) {
		if bytes.Contains(p.Key, b) || bytes.Contains(p.Value, b) {
			out = append(out, string(p.Key))
		}
	}
	return out
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// TestRotatedRefreshTokensAreDeleted: rotating a refresh token leaves no trace of the old
// one in the store, so a session's records do not grow with its refreshes; and the old
// token is still recognised as a reuse.
func TestRotatedRefreshTokensAreDeleted(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	before := len(e.storeDump(t))
	tokens := []string{alice.tokens.GetRefreshToken()}
	for range 20 {
		r, err := e.client.RefreshToken(context.Background(), &authv1.RefreshTokenRequest{RefreshToken: tokens[len(tokens)-1]})
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, r.GetTokens().GetRefreshToken())
	}
	if after := len(e.storeDump(t)); after != before {
		t.Fatalf("20 rotations grew the store from %d to %d keys", before, after)
	}
	for _, old := range tokens[:len(tokens)-1] {
		if m := e.mentions(t, tokenHash(old)); len(m) > 0 {
			t.Fatalf("a rotated token's hash is still stored under %q", m)
		}
	}
	_, err := e.client.RefreshToken(context.Background(), &authv1.RefreshTokenRequest{RefreshToken: tokens[3]})
	wantErr(t, err, codes.Unauthenticated, "REFRESH_TOKEN_REUSED")
	_, err = e.client.RefreshToken(context.Background(), &authv1.RefreshTokenRequest{RefreshToken: tokens[len(tokens)-1]})
	wantErr(t, err, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
}

// TestExpiredSessionsAreSwept: Sweep deletes sessions that expired, and nothing live.
func TestExpiredSessionsAreSwept(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	baseline := len(e.storeDump(t))
	for range 3 {
		e.login(t, alice)
	}
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(e.storeDump(t)); n <= baseline {
		t.Fatalf("sweep deleted live sessions: %d keys, %d before the logins", n, baseline)
	}
	if _, err := e.client.RefreshToken(context.Background(), &authv1.RefreshTokenRequest{RefreshToken: alice.tokens.GetRefreshToken()}); err != nil {
		t.Fatalf("a live session after the sweep: %v", err)
	}
	e.clock.Advance(auth.DefaultRefreshTokenTTL + 2*time.Hour)
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Everything of the four sessions (registration and three logins) is gone: only the
	// account, its device and username remain.
	if left := e.storeDump(t); len(left) != 3 {
		var keys []string
		for _, p := range left {
			keys = append(keys, string(p.Key))
		}
		t.Fatalf("after the sessions expired and a sweep, the store holds %q", keys)
	}
}

// TestRemovedDeviceTokensAreDeleted: removing a device erases the hashes of its refresh
// tokens at once (a refresh still learns DEVICE_REMOVED), and a sweep after expiry
// leaves no record of the device at all.
func TestRemovedDeviceTokensAreDeleted(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	phone := e.linkDevice(t, alice)
	e.uploadPreKeys(t, phone, 3)
	first := phone.tokens.GetRefreshToken()
	r, err := e.client.RefreshToken(context.Background(), &authv1.RefreshTokenRequest{RefreshToken: first})
	if err != nil {
		t.Fatal(err)
	}
	live := r.GetTokens().GetRefreshToken()
	e.login(t, phone)
	second := phone.tokens.GetRefreshToken()
	if _, err := e.client.RemoveDevice(alice.ctx(), &authv1.RemoveDeviceRequest{DeviceId: phone.id}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{first, live, second} {
		if m := e.mentions(t, tokenHash(tok)); len(m) > 0 {
			t.Fatalf("a removed device's refresh token is still stored under %q", m)
		}
	}
	_, err = e.client.RefreshToken(context.Background(), &authv1.RefreshTokenRequest{RefreshToken: live})
	wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	e.clock.Advance(auth.DefaultRefreshTokenTTL + 2*time.Hour)
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	phoneKey := fmt.Appendf(nil, "%s/\x00\x00\x00%c", alice.userID, byte(phone.id))
	if m := e.mentions(t, phoneKey); len(m) > 0 {
		t.Fatalf("records of the removed device left: %q", m)
	}
}

// TestSessionsPerDeviceAreBounded: logging in again and again keeps at most a few
// sessions per device, ending the oldest; the newest keeps working.
func TestSessionsPerDeviceAreBounded(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	baseline := len(e.storeDump(t))
	var tokens []string
	for range 30 {
		e.clock.Advance(time.Second)
		e.login(t, alice)
		tokens = append(tokens, alice.tokens.GetRefreshToken())
	}
	// The used-nonce records of the logins live until their challenges expire; then the
	// sweep takes them and leaves the sessions.
	e.clock.Advance(2 * auth.DefaultChallengeTTL)
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Each session is two keys (its record and the device's index entry).
	if grown := len(e.storeDump(t)) - baseline; grown > 2*8 {
		t.Fatalf("30 logins of one device left %d session keys", grown)
	}
	_, err := e.client.RefreshToken(context.Background(), &authv1.RefreshTokenRequest{RefreshToken: tokens[0]})
	wantErr(t, err, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
	if _, err := e.client.RefreshToken(context.Background(), &authv1.RefreshTokenRequest{RefreshToken: tokens[len(tokens)-1]}); err != nil {
		t.Fatalf("newest session: %v", err)
	}
}

// TestDeleteAccountInBoundedTransactions: erasing an account with thousands of keys never
// writes more than a bounded number of keys in one transaction, and still erases it all.
func TestDeleteAccountInBoundedTransactions(t *testing.T) {
	e, counts := newCountingEnv(t, nil)
	alice := e.register(t, "alice")
	phone := e.linkDevice(t, alice)
	for _, d := range []*device{alice, phone} {
		for i := range 10 {
			kps := make([][]byte, 100)
			for j := range kps {
				kps[j] = fmt.Appendf(nil, "kp %d %d", i, j)
			}
			if _, err := e.client.UploadKeyPackages(d.ctx(), &authv1.UploadKeyPackagesRequest{KeyPackages: kps}); err != nil {
				t.Fatal(err)
			}
		}
	}
	counts.reset()
	if _, err := e.client.DeleteAccount(alice.ctx(), &authv1.DeleteAccountRequest{ConfirmUsername: "alice"}); err != nil {
		t.Fatal(err)
	}
	updates, _, maxWrites, total := counts.stats()
	if total < 2000 {
		t.Fatalf("deletion wrote %d keys in %d transactions, want at least the 2000 key packages", total, updates)
	}
	if maxWrites > 512 {
		t.Fatalf("deletion wrote %d keys in one transaction (%d in %d transactions)", maxWrites, total, updates)
	}
	// The AccountDeleted event waits in the outbox until JetStream has it (and a few
	// minutes more, until JetStream has synced it); nothing else may remain.
	var left []string
	for _, k := range e.mentions(t, []byte(alice.userID)) {
		if !strings.HasPrefix(k, "auth/outbox/") {
			left = append(left, k)
		}
	}
	if len(left) > 0 {
		t.Fatalf("left after deletion: %q", left)
	}
}

// TestInterruptedErasureIsFinishedBySweep: an erasure recorded but not run (a crash
// right after the deletion committed) is completed by the next Sweep.
func TestInterruptedErasureIsFinishedBySweep(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	if _, err := e.client.UploadKeyPackages(alice.ctx(), &authv1.UploadKeyPackagesRequest{KeyPackages: [][]byte{[]byte("kp")}}); err != nil {
		t.Fatal(err)
	}
	// Plant the state a crash between the two steps leaves: the account gone, its
	// erasure recorded, its keys still there.
	if err := e.store.Update(context.Background(), func(tx kv.Tx) error {
		for _, k := range []string{"auth/username/alice", "auth/account/" + alice.userID, "auth/device/" + alice.userID + "/\x00\x00\x00\x01"} {
			if err := tx.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return tx.Put([]byte("auth/purge/x"), fmt.Appendf(nil, `{"user_id":%q,"device_ids":[1],"account":true}`, alice.userID))
	}); err != nil {
		t.Fatal(err)
	}
	if len(e.mentions(t, []byte(alice.userID))) == 0 {
		t.Fatal("test setup: nothing of alice left to erase")
	}
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m := e.mentions(t, []byte(alice.userID)); len(m) > 0 {
		t.Fatalf("left after the sweep: %q", m)
	}
}

// TestLoginsDoNotLoadTheWriter: asking for a challenge writes nothing, a login with a
// forged nonce touches the store not at all, and a login with a bad signature (for a
// known account or an unknown one) runs no write transaction: a flood of failing logins
// costs the single kv writer nothing. A good login is one transaction that commits.
func TestLoginsDoNotLoadTheWriter(t *testing.T) {
	e, counts := newCountingEnv(t, nil)
	alice := e.register(t, "alice")
	ctx := context.Background()
	counts.reset()
	_, err := e.client.Login(ctx, &authv1.LoginRequest{Username: "alice", DeviceId: 1, Nonce: bytes.Repeat([]byte{7}, 32), Signature: []byte{1}})
	wantErr(t, err, codes.Unauthenticated, "CHALLENGE_EXPIRED")
	if n := counts.accesses(); n != 0 {
		t.Fatalf("a login with a forged nonce ran %d transactions", n)
	}
	mallory, _ := keys.GenerateIdentity()
	for _, username := range []string{"alice", "nobody"} {
		counts.reset()
		ch, err := e.client.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: username, DeviceId: 1})
		if err != nil {
			t.Fatal(err)
		}
		if updates, _, _, _ := counts.stats(); updates != 0 {
			t.Fatalf("a challenge for %s ran %d write transactions", username, updates)
		}
		_, err = e.client.Login(ctx, &authv1.LoginRequest{Username: username, DeviceId: 1, Nonce: ch.GetNonce(),
			Signature: sign(t, mallory, keys.ContextLoginChallenge, auth.LoginStatement(username, 1, ch.GetNonce()))})
		wantErr(t, err, codes.Unauthenticated, "LOGIN_FAILED")
		if updates, _, _, _ := counts.stats(); updates != 0 {
			t.Fatalf("a failed login of %s ran %d write transactions, want none", username, updates)
		}
	}
	counts.reset()
	e.login(t, alice)
	if updates, failed, _, _ := counts.stats(); updates != 1 || failed != 0 {
		t.Fatalf("a good login ran %d write transactions, %d failing; want one that commits", updates, failed)
	}
}

// TestChallengeServesOneSuccessfulLogin: a failed login does not use up its nonce (it
// wrote nothing), the key's holder can still log in with it, and after that success the
// same nonce is refused, also to a fresh signature by the right key.
func TestChallengeServesOneSuccessfulLogin(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	ctx := context.Background()
	ch, err := e.client.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: "alice", DeviceId: 1})
	if err != nil {
		t.Fatal(err)
	}
	mallory, _ := keys.GenerateIdentity()
	_, err = e.client.Login(ctx, &authv1.LoginRequest{Username: "alice", DeviceId: 1, Nonce: ch.GetNonce(),
		Signature: sign(t, mallory, keys.ContextLoginChallenge, auth.LoginStatement("alice", 1, ch.GetNonce()))})
	wantErr(t, err, codes.Unauthenticated, "LOGIN_FAILED")
	req := &authv1.LoginRequest{Username: "alice", DeviceId: 1, Nonce: ch.GetNonce(),
		Signature: sign(t, alice.identity, keys.ContextLoginChallenge, auth.LoginStatement("alice", 1, ch.GetNonce()))}
	if _, err := e.client.Login(ctx, req); err != nil {
		t.Fatalf("login after a failed attempt with the same nonce: %v", err)
	}
	_, err = e.client.Login(ctx, req)
	wantErr(t, err, codes.Unauthenticated, "CHALLENGE_EXPIRED")
	req.Signature = sign(t, alice.identity, keys.ContextLoginChallenge, auth.LoginStatement("alice", 1, ch.GetNonce()))
	_, err = e.client.Login(ctx, req)
	wantErr(t, err, codes.Unauthenticated, "CHALLENGE_EXPIRED")
	// Still refused just before it expires, when only the used record remembers it.
	e.clock.Advance(auth.DefaultChallengeTTL - time.Second)
	_, err = e.client.Login(ctx, req)
	wantErr(t, err, codes.Unauthenticated, "CHALLENGE_EXPIRED")
}

// TestForgedOrMisdirectedChallengeIsRefused: a nonce with any byte changed, or issued
// for another username or device, or expired, is refused with CHALLENGE_EXPIRED before
// any kv access, even under a valid signature by the right key.
func TestForgedOrMisdirectedChallengeIsRefused(t *testing.T) {
	e, counts := newCountingEnv(t, nil)
	alice := e.register(t, "alice")
	second := e.linkDevice(t, alice)
	ctx := context.Background()
	challenge := func(username string, device uint32) []byte {
		ch, err := e.client.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: username, DeviceId: device})
		if err != nil {
			t.Fatal(err)
		}
		return ch.GetNonce()
	}
	refused := func(what string, d *device, nonce []byte) {
		t.Helper()
		counts.reset()
		_, err := e.client.Login(ctx, &authv1.LoginRequest{Username: d.username, DeviceId: d.id, Nonce: nonce,
			Signature: sign(t, d.identity, keys.ContextLoginChallenge, auth.LoginStatement(d.username, d.id, nonce))})
		wantErr(t, err, codes.Unauthenticated, "CHALLENGE_EXPIRED")
		if n := counts.accesses(); n != 0 {
			t.Fatalf("%s: the refused login ran %d transactions", what, n)
		}
	}
	good := challenge("alice", 1)
	for i := range good {
		forged := bytes.Clone(good)
		forged[i] ^= 0x01
		refused(fmt.Sprintf("byte %d flipped", i), alice, forged)
	}
	refused("nonce of another device", second, challenge("alice", 1))
	refused("nonce of another username", alice, challenge("alicf", 1))
	expiring := challenge("alice", 1)
	e.clock.Advance(auth.DefaultChallengeTTL + 2*time.Second)
	refused("expired nonce", alice, expiring)
	// The untouched nonce of the same period still works: the refusals were not luck.
	e.clock.Advance(-auth.DefaultChallengeTTL - 2*time.Second)
	if _, err := e.client.Login(ctx, &authv1.LoginRequest{Username: "alice", DeviceId: 1, Nonce: good,
		Signature: sign(t, alice.identity, keys.ContextLoginChallenge, auth.LoginStatement("alice", 1, good))}); err != nil {
		t.Fatalf("login with the untouched nonce: %v", err)
	}
}

// TestLoginIsLimitedPerAddress: logins are limited per client address too, so one address
// cannot spread guesses over many usernames.
func TestLoginIsLimitedPerAddress(t *testing.T) {
	policy := auth.DefaultRateLimits()
	policy["login-peer"] = ratelimit.Config{Rate: 0.0001, Burst: 3, MaxKeys: 100}
	limits, err := ratelimit.NewActions(policy)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, limits)
	for i := range 4 {
		_, err := e.client.Login(context.Background(), &authv1.LoginRequest{Username: fmt.Sprintf("user%d", i), DeviceId: 1, Nonce: make([]byte, 32), Signature: []byte{1}})
		if i < 3 {
			wantErr(t, err, codes.Unauthenticated, "CHALLENGE_EXPIRED")
			continue
		}
		wantErr(t, err, codes.ResourceExhausted, "RATE_LIMITED")
	}
}

// TestCancelledLoginConsumesItsNonce: a login whose caller is gone by the time it runs
// still uses up its nonce, so the signed request cannot be replayed afterwards.
func TestCancelledLoginConsumesItsNonce(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	ch, err := e.client.GetLoginChallenge(context.Background(), &authv1.GetLoginChallengeRequest{Username: "alice", DeviceId: 1})
	if err != nil {
		t.Fatal(err)
	}
	req := &authv1.LoginRequest{Username: "alice", DeviceId: 1, Nonce: ch.GetNonce(),
		Signature: sign(t, alice.identity, keys.ContextLoginChallenge, auth.LoginStatement("alice", 1, ch.GetNonce()))}
	// The handler is called directly: over gRPC a cancelled call never reaches it.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	e.svc.Login(cancelled, req)
	_, err = e.client.Login(context.Background(), req)
	wantErr(t, err, codes.Unauthenticated, "CHALLENGE_EXPIRED")
}

// linkDevice adds a second device to d's account, approved by d, and logs it in.
func (e *env) linkDevice(t *testing.T, d *device) *device {
	t.Helper()
	id, err := keys.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ik := id.Public().Bytes()
	start, err := e.client.StartDeviceLink(context.Background(), &authv1.StartDeviceLinkRequest{
		Username: d.username, IdentityKey: ik, DeviceName: "phone",
		Signature: sign(t, id, keys.ContextDeviceLink, auth.DeviceLinkStatement(d.username, ik, "phone")),
	})
	if err != nil {
		t.Fatal(err)
	}
	approved, err := e.client.ApproveDeviceLink(d.ctx(), &authv1.ApproveDeviceLinkRequest{LinkId: start.GetLinkId()})
	if err != nil {
		t.Fatal(err)
	}
	linked := &device{username: d.username, id: approved.GetDeviceId(), identity: id, prekeys: keys.NewPreKeyStore()}
	e.login(t, linked)
	return linked
}

// TestPendingLinkCapDoesNotRevealUsernames: the cap on pending device links answers the
// same for a username with an account and one without, so a stranger cannot tell which
// names exist by starting links until the cap trips.
func TestPendingLinkCapDoesNotRevealUsernames(t *testing.T) {
	e := newEnv(t, nil)
	e.register(t, "alice")
	outcomes := func(username string) []codes.Code {
		var out []codes.Code
		for i := range 7 {
			id, _ := keys.GenerateIdentity()
			ik := id.Public().Bytes()
			name := fmt.Sprintf("device %d", i)
			_, err := e.client.StartDeviceLink(context.Background(), &authv1.StartDeviceLinkRequest{Username: username, IdentityKey: ik, DeviceName: name,
				Signature: sign(t, id, keys.ContextDeviceLink, auth.DeviceLinkStatement(username, ik, name))})
			out = append(out, status.Code(err))
		}
		return out
	}
	known, unknown := outcomes("alice"), outcomes("nobody")
	if !slices.Equal(known, unknown) {
		t.Fatalf("link requests for an existing name end %v, for a free name %v", known, unknown)
	}
	if known[6] != codes.ResourceExhausted {
		t.Fatalf("7 pending links were accepted: %v", known)
	}
	// The cap of the free name frees up as its links expire and are swept.
	e.clock.Advance(2 * time.Hour)
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := outcomes("nobody"); got[0] != codes.OK {
		t.Fatalf("after expiry, a link for a free name: %v", got[0])
	}
	// The sweep deleted the expired links' index entries: only the 5 new ones are left.
	n := 0
	for _, p := range e.storeDump(t) {
		if bytes.HasPrefix(p.Key, []byte("auth/linkname/")) {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("%d index entries of links for a free name, want the 5 live ones", n)
	}
}

// TestBundleFetchReadsOnlyThePoolHeads: a key-bundle fetch reads the heads of a device's
// one-time prekey pools (the low threshold plus one key each), not the pools whole, and a
// fetch past the caller's share of one-time keys reads none of them (only the device
// list); the owner is still told when a pool falls below the threshold, the pools then
// counted whole (TestPreKeysLowIsPublishedOncePerFall). Before, every fetch, also one that claimed
// nothing, read both pools whole: 200 keys here, up to 2000 (about 2 MB of ML-KEM keys)
// for a full pool, on the single kv writer.
func TestBundleFetchReadsOnlyThePoolHeads(t *testing.T) {
	policy := auth.DefaultRateLimits()
	policy["bundles-pair"] = ratelimit.Config{Rate: 0.0001, Burst: 1, MaxKeys: 100}
	limits, err := ratelimit.NewActions(policy)
	if err != nil {
		t.Fatal(err)
	}
	e, counts := newCountingEnv(t, limits)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	e.uploadPreKeys(t, bob, 100)
	fetch := func() *authv1.KeyBundle {
		t.Helper()
		counts.reset()
		resp, err := e.client.GetKeyBundles(alice.ctx(), &authv1.GetKeyBundlesRequest{UserId: bob.userID})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetBundles()[0]
	}
	head := 2*(auth.DefaultLowPreKeyThreshold+1) + 1 // and bob's one device record
	if b := fetch(); b.GetOneTimeEcPrekey() == nil || b.GetKemPrekeyIsLastResort() {
		t.Fatalf("first fetch: %v, want one-time keys", b)
	}
	if n := counts.scannedPairs(); n > head {
		t.Fatalf("a fetch that claimed one-time keys scanned %d pairs of 200, want at most %d", n, head)
	}
	if b := fetch(); b.GetOneTimeEcPrekey() != nil || !b.GetKemPrekeyIsLastResort() {
		t.Fatalf("fetch past the caller's share: %v, want the last-resort key only", b)
	}
	if n := counts.scannedPairs(); n > 1 {
		t.Fatalf("a fetch past the caller's share scanned %d pairs, want only bob's device record", n)
	}
}
