package auth_test

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/crypto/envelope"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	"github.com/guardyn/guardyn/services/auth"
)

// wantErr fails unless err carries code and reason.
func wantErr(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || server.Reason(err) != reason {
		t.Fatalf("got %v (reason %q), want %v/%s", err, server.Reason(err), code, reason)
	}
}

func TestRegisterAndLogin(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	if alice.id != 1 || alice.userID == "" || alice.tokens.GetAccessToken() == "" {
		t.Fatalf("unexpected registration result %+v", alice)
	}
	devs, err := e.client.ListDevices(alice.ctx(), &authv1.ListDevicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs.GetDevices()) != 1 || !bytes.Equal(devs.GetDevices()[0].GetIdentityKey(), alice.identity.Public().Bytes()) {
		t.Fatalf("devices = %v", devs.GetDevices())
	}

	// The username is taken, also by a different key.
	id, _ := keys.GenerateIdentity()
	ik := id.Public().Bytes()
	_, err = e.client.Register(context.Background(), &authv1.RegisterRequest{
		Username: "alice", IdentityKey: ik, DeviceName: "x",
		Signature: sign(t, id, keys.ContextRegistration, auth.RegistrationStatement("alice", ik)),
	})
	wantErr(t, err, codes.AlreadyExists, "USERNAME_TAKEN")
}

func TestRegisterRejectsBadInput(t *testing.T) {
	e := newEnv(t, nil)
	id, _ := keys.GenerateIdentity()
	other, _ := keys.GenerateIdentity()
	ik := id.Public().Bytes()
	good := sign(t, id, keys.ContextRegistration, auth.RegistrationStatement("carol", ik))
	cases := []struct {
		name   string
		req    *authv1.RegisterRequest
		code   codes.Code
		reason string
	}{
		{"bad username", &authv1.RegisterRequest{Username: "Carol!", IdentityKey: ik, DeviceName: "x", Signature: good}, codes.InvalidArgument, "INVALID_USERNAME"},
		{"short username", &authv1.RegisterRequest{Username: "ab", IdentityKey: ik, DeviceName: "x", Signature: good}, codes.InvalidArgument, "INVALID_USERNAME"},
		{"off-curve key", &authv1.RegisterRequest{Username: "carol", IdentityKey: append([]byte{4}, make([]byte, 64)...), DeviceName: "x", Signature: good}, codes.InvalidArgument, "INVALID_IDENTITY_KEY"},
		{"short key", &authv1.RegisterRequest{Username: "carol", IdentityKey: ik[:33], DeviceName: "x", Signature: good}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"proof by another key", &authv1.RegisterRequest{Username: "carol", IdentityKey: ik, DeviceName: "x", Signature: sign(t, other, keys.ContextRegistration, auth.RegistrationStatement("carol", ik))}, codes.InvalidArgument, "BAD_SIGNATURE"},
		{"proof for another username", &authv1.RegisterRequest{Username: "carol", IdentityKey: ik, DeviceName: "x", Signature: sign(t, id, keys.ContextRegistration, auth.RegistrationStatement("dave", ik))}, codes.InvalidArgument, "BAD_SIGNATURE"},
		{"proof in another context", &authv1.RegisterRequest{Username: "carol", IdentityKey: ik, DeviceName: "x", Signature: sign(t, id, keys.ContextDeviceLink, auth.RegistrationStatement("carol", ik))}, codes.InvalidArgument, "BAD_SIGNATURE"},
		{"empty device name", &authv1.RegisterRequest{Username: "carol", IdentityKey: ik, Signature: good}, codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"oversize device name", &authv1.RegisterRequest{Username: "carol", IdentityKey: ik, DeviceName: string(bytes.Repeat([]byte("x"), 65)), Signature: good}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.client.Register(context.Background(), c.req)
			wantErr(t, err, c.code, c.reason)
		})
	}
	// Nothing was stored by any rejected request.
	assertNoKeys(t, e, "auth/")
}

func assertNoKeys(t *testing.T, e *env, prefix string) {
	t.Helper()
	err := e.store.View(context.Background(), func(tx kv.Tx) error {
		pairs, err := kv.ScanPrefix(tx, []byte(prefix), 0)
		if len(pairs) > 0 {
			t.Errorf("store has %d keys under %q, first %q", len(pairs), prefix, pairs[0].Key)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLoginFailures(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	ctx := context.Background()

	// A signature by the wrong key fails (TestChallengeServesOneSuccessfulLogin shows that
	// it leaves the nonce to its owner, TestLoginsDoNotLoadTheWriter that it writes nothing).
	ch, err := e.client.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: "alice", DeviceId: 1})
	if err != nil {
		t.Fatal(err)
	}
	mallory, _ := keys.GenerateIdentity()
	_, err = e.client.Login(ctx, &authv1.LoginRequest{Username: "alice", DeviceId: 1, Nonce: ch.GetNonce(),
		Signature: sign(t, mallory, keys.ContextLoginChallenge, auth.LoginStatement("alice", 1, ch.GetNonce()))})
	wantErr(t, err, codes.Unauthenticated, "LOGIN_FAILED")

	// An expired nonce fails even with the right signature.
	ch, _ = e.client.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: "alice", DeviceId: 1})
	e.clock.Advance(2 * time.Minute)
	_, err = e.client.Login(ctx, &authv1.LoginRequest{Username: "alice", DeviceId: 1, Nonce: ch.GetNonce(),
		Signature: sign(t, alice.identity, keys.ContextLoginChallenge, auth.LoginStatement("alice", 1, ch.GetNonce()))})
	wantErr(t, err, codes.Unauthenticated, "CHALLENGE_EXPIRED")

	// Unknown accounts get a challenge too, and their login fails like a bad signature.
	ch, err = e.client.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: "nobody", DeviceId: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.client.Login(ctx, &authv1.LoginRequest{Username: "nobody", DeviceId: 1, Nonce: ch.GetNonce(),
		Signature: sign(t, mallory, keys.ContextLoginChallenge, auth.LoginStatement("nobody", 1, ch.GetNonce()))})
	wantErr(t, err, codes.Unauthenticated, "LOGIN_FAILED")
}

func TestRefreshRotationAndReuse(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	ctx := context.Background()
	first := alice.tokens.GetRefreshToken()
	r1, err := e.client.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: first})
	if err != nil {
		t.Fatal(err)
	}
	second := r1.GetTokens().GetRefreshToken()
	if second == first {
		t.Fatal("refresh token was not rotated")
	}
	// Reusing the first token means it leaked: the whole family is revoked.
	_, err = e.client.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: first})
	wantErr(t, err, codes.Unauthenticated, "REFRESH_TOKEN_REUSED")
	_, err = e.client.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: second})
	wantErr(t, err, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
	_, err = e.client.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: "forged"})
	wantErr(t, err, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")

	// A fresh login starts a new family; its token expires after the refresh TTL.
	e.login(t, alice)
	e.clock.Advance(auth.DefaultRefreshTokenTTL + time.Minute)
	_, err = e.client.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: alice.tokens.GetRefreshToken()})
	wantErr(t, err, codes.Unauthenticated, "REFRESH_TOKEN_EXPIRED")
	// So has the access token.
	_, err = e.client.ListDevices(alice.ctx(), &authv1.ListDevicesRequest{})
	wantErr(t, err, codes.Unauthenticated, "TOKEN_EXPIRED")
}

func TestPreKeyUploadAndBundles(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	bob := e.register(t, "bob")
	up := e.uploadPreKeys(t, bob, 3)
	if c := up.GetCounts(); c.GetOneTimeEcPrekeys() != 3 || c.GetOneTimeKemPrekeys() != 3 || !c.GetHasSignedEcPrekey() || !c.GetHasLastResortKemPrekey() {
		t.Fatalf("counts after upload = %v", c)
	}
	seen := map[uint32]bool{}
	for i := range 4 {
		resp, err := e.client.GetKeyBundles(alice.ctx(), &authv1.GetKeyBundlesRequest{UserId: bob.userID})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetBundles()) != 1 {
			t.Fatalf("bundles = %v", resp)
		}
		b := resp.GetBundles()[0]
		// The bundle must parse and verify with the crypto library, as clients do.
		bundle := toBundle(t, b)
		if err := bundle.Verify(); err != nil {
			t.Fatalf("bundle %d does not verify: %v", i, err)
		}
		if i < 3 {
			if b.GetOneTimeEcPrekey() == nil || b.GetKemPrekeyIsLastResort() {
				t.Fatalf("bundle %d should carry one-time keys: %v", i, b)
			}
			if seen[b.GetOneTimeEcPrekey().GetId()] {
				t.Fatalf("one-time EC prekey %d handed out twice", b.GetOneTimeEcPrekey().GetId())
			}
			seen[b.GetOneTimeEcPrekey().GetId()] = true
		} else if b.GetOneTimeEcPrekey() != nil || !b.GetKemPrekeyIsLastResort() {
			t.Fatalf("exhausted pool should give no EC one-time key and the last-resort KEM key: %v", b)
		}
	}
	if len(e.events.low) == 0 {
		t.Fatal("no low-prekey event was published")
	}
	counts, err := e.client.GetPreKeyCounts(bob.ctx(), &authv1.GetPreKeyCountsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if counts.GetCounts().GetOneTimeEcPrekeys() != 0 {
		t.Fatalf("counts = %v", counts)
	}
}

func toBundle(t *testing.T, b *authv1.KeyBundle) *keys.Bundle {
	t.Helper()
	ik, err := keys.ParseIdentityKey(b.GetIdentityKey())
	if err != nil {
		t.Fatal(err)
	}
	spk, err := keys.ParseSignedPreKeyPublic(b.GetSignedEcPrekey().GetId(), time.Unix(b.GetSignedEcPrekey().GetCreatedAt(), 0), b.GetSignedEcPrekey().GetPublicKey(), b.GetSignedEcPrekey().GetSignature())
	if err != nil {
		t.Fatal(err)
	}
	kem, err := keys.ParseKEMPreKeyPublic(b.GetKemPrekey().GetId(), time.Unix(b.GetKemPrekey().GetCreatedAt(), 0), b.GetKemPrekey().GetPublicKey(), b.GetKemPrekeyIsLastResort(), b.GetKemPrekey().GetSignature())
	if err != nil {
		t.Fatal(err)
	}
	out := &keys.Bundle{IdentityKey: ik, SignedPreKey: spk, KEMPreKey: kem}
	if otk := b.GetOneTimeEcPrekey(); otk != nil {
		if out.OneTimePreKey, err = keys.ParseOneTimePreKeyPublic(otk.GetId(), otk.GetPublicKey()); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestConcurrentClaimsNeverShareAKey races many callers over a small pool.
func TestConcurrentClaimsNeverShareAKey(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register(t, "bob")
	e.uploadPreKeys(t, bob, 10)
	var claimers []*device
	for i := range 20 {
		claimers = append(claimers, e.register(t, "claimer"+string(rune('a'+i))))
	}
	var mu sync.Mutex
	ec, kem := map[uint32]int{}, map[uint32]int{}
	lastResort := 0
	var wg sync.WaitGroup
	for _, c := range claimers {
		wg.Go(func() {
			resp, err := e.client.GetKeyBundles(c.ctx(), &authv1.GetKeyBundlesRequest{UserId: bob.userID})
			if err != nil {
				t.Error(err)
				return
			}
			b := resp.GetBundles()[0]
			mu.Lock()
			defer mu.Unlock()
			if otk := b.GetOneTimeEcPrekey(); otk != nil {
				ec[otk.GetId()]++
			}
			if b.GetKemPrekeyIsLastResort() {
				lastResort++
			} else {
				kem[b.GetKemPrekey().GetId()]++
			}
		})
	}
	wg.Wait()
	for id, n := range ec {
		if n != 1 {
			t.Errorf("EC prekey %d claimed %d times", id, n)
		}
	}
	for id, n := range kem {
		if n != 1 {
			t.Errorf("KEM prekey %d claimed %d times", id, n)
		}
	}
	if len(ec) != 10 || len(kem) != 10 || lastResort != 10 {
		t.Fatalf("claimed %d EC, %d KEM one-time keys and %d last-resort keys; want 10, 10, 10", len(ec), len(kem), lastResort)
	}
}

func TestUploadPreKeysRejectsBadKeys(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.register(t, "bob")
	mallory, _ := keys.GenerateIdentity()
	store := keys.NewPreKeyStore()
	spk, _ := store.GenerateSignedPreKey(mallory, time.Now())
	lrk, _ := store.GenerateLastResortKEMPreKey(bob.identity, time.Now())
	okSPK, _ := store.GenerateSignedPreKey(bob.identity, time.Now())
	lrkMsg := &authv1.SignedKemPreKey{Id: lrk.ID, CreatedAt: lrk.Created.Unix(), PublicKey: lrk.Key.Bytes(), Signature: lrk.Signature}
	cases := []struct {
		name   string
		req    *authv1.UploadPreKeysRequest
		code   codes.Code
		reason string
	}{
		{"signed by another key", &authv1.UploadPreKeysRequest{
			SignedEcPrekey:      &authv1.SignedEcPreKey{Id: spk.ID, CreatedAt: spk.Created.Unix(), PublicKey: spk.Key.Bytes(), Signature: spk.Signature},
			LastResortKemPrekey: lrkMsg}, codes.InvalidArgument, "BAD_PREKEY_SIGNATURE"},
		{"off-curve prekey", &authv1.UploadPreKeysRequest{
			SignedEcPrekey:      &authv1.SignedEcPreKey{Id: 9, PublicKey: append([]byte{4}, make([]byte, 64)...), Signature: spk.Signature},
			LastResortKemPrekey: lrkMsg}, codes.InvalidArgument, "INVALID_PREKEY"},
		{"last resort flag forged", &authv1.UploadPreKeysRequest{
			SignedEcPrekey:    &authv1.SignedEcPreKey{Id: okSPK.ID, CreatedAt: okSPK.Created.Unix(), PublicKey: okSPK.Key.Bytes(), Signature: okSPK.Signature},
			OneTimeKemPrekeys: []*authv1.SignedKemPreKey{lrkMsg}}, codes.InvalidArgument, "BAD_PREKEY_SIGNATURE"},
		{"no signed prekeys yet", &authv1.UploadPreKeysRequest{
			OneTimeEcPrekeys: []*authv1.EcPreKey{{Id: 1, PublicKey: okSPK.Key.Bytes()}}}, codes.FailedPrecondition, "NO_SIGNED_PREKEY"},
		{"duplicate ids", &authv1.UploadPreKeysRequest{
			SignedEcPrekey:      &authv1.SignedEcPreKey{Id: okSPK.ID, CreatedAt: okSPK.Created.Unix(), PublicKey: okSPK.Key.Bytes(), Signature: okSPK.Signature},
			LastResortKemPrekey: lrkMsg,
			OneTimeEcPrekeys:    []*authv1.EcPreKey{{Id: 7, PublicKey: okSPK.Key.Bytes()}, {Id: 7, PublicKey: okSPK.Key.Bytes()}}}, codes.InvalidArgument, "DUPLICATE_PREKEY_ID"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.client.UploadPreKeys(bob.ctx(), c.req)
			wantErr(t, err, c.code, c.reason)
		})
	}
	counts, err := e.client.GetPreKeyCounts(bob.ctx(), &authv1.GetPreKeyCountsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := counts.GetCounts(); c.GetHasSignedEcPrekey() || c.GetHasLastResortKemPrekey() || c.GetOneTimeEcPrekeys() != 0 {
		t.Fatalf("a rejected upload changed state: %v", c)
	}
}

func TestDeviceLinkingAndRemoval(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	ctx := context.Background()

	phone, _ := keys.GenerateIdentity()
	ik := phone.Public().Bytes()
	start, err := e.client.StartDeviceLink(ctx, &authv1.StartDeviceLinkRequest{
		Username: "alice", IdentityKey: ik, DeviceName: "phone",
		Signature: sign(t, phone, keys.ContextDeviceLink, auth.DeviceLinkStatement("alice", ik, "phone")),
	})
	if err != nil {
		t.Fatal(err)
	}
	statusSig := sign(t, phone, auth.ContextDeviceLinkStatus, auth.DeviceLinkStatusStatement(start.GetLinkId()))
	st, err := e.client.GetDeviceLinkStatus(ctx, &authv1.GetDeviceLinkStatusRequest{LinkId: start.GetLinkId(), Signature: statusSig})
	if err != nil || st.GetState() != authv1.DeviceLinkState_DEVICE_LINK_STATE_PENDING {
		t.Fatalf("status = %v, %v", st, err)
	}
	// The phone cannot log in before approval.
	phoneDev := &device{username: "alice", id: 2, identity: phone}
	wantErr(t, e.tryLogin(phoneDev), codes.Unauthenticated, "LOGIN_FAILED")

	pending, err := e.client.ListPendingDeviceLinks(alice.ctx(), &authv1.ListPendingDeviceLinksRequest{})
	if err != nil || len(pending.GetLinks()) != 1 || !bytes.Equal(pending.GetLinks()[0].GetIdentityKey(), ik) {
		t.Fatalf("pending = %v, %v", pending, err)
	}
	// Another account cannot approve it.
	mallory := e.register(t, "mallory")
	_, err = e.client.ApproveDeviceLink(mallory.ctx(), &authv1.ApproveDeviceLinkRequest{LinkId: start.GetLinkId()})
	wantErr(t, err, codes.NotFound, "LINK_NOT_FOUND")

	approved, err := e.client.ApproveDeviceLink(alice.ctx(), &authv1.ApproveDeviceLinkRequest{LinkId: start.GetLinkId()})
	if err != nil || approved.GetDeviceId() != 2 {
		t.Fatalf("approve = %v, %v", approved, err)
	}
	_, err = e.client.ApproveDeviceLink(alice.ctx(), &authv1.ApproveDeviceLinkRequest{LinkId: start.GetLinkId()})
	wantErr(t, err, codes.FailedPrecondition, "LINK_ALREADY_DECIDED")
	st, err = e.client.GetDeviceLinkStatus(ctx, &authv1.GetDeviceLinkStatusRequest{LinkId: start.GetLinkId(), Signature: statusSig})
	if err != nil || st.GetState() != authv1.DeviceLinkState_DEVICE_LINK_STATE_APPROVED || st.GetDeviceId() != 2 || st.GetUserId() != alice.userID {
		t.Fatalf("status after approval = %v, %v", st, err)
	}
	e.login(t, phoneDev)

	// Removing the phone revokes its access token at once, before it expires.
	if _, err := e.client.RemoveDevice(alice.ctx(), &authv1.RemoveDeviceRequest{DeviceId: 2}); err != nil {
		t.Fatal(err)
	}
	_, err = e.client.ListDevices(phoneDev.ctx(), &authv1.ListDevicesRequest{})
	wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	_, err = e.client.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: phoneDev.tokens.GetRefreshToken()})
	wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	if len(e.events.removed) != 1 {
		t.Fatalf("device-removed events = %v", e.events.removed)
	}
	_, err = e.client.RemoveDevice(alice.ctx(), &authv1.RemoveDeviceRequest{DeviceId: 1})
	wantErr(t, err, codes.FailedPrecondition, "LAST_DEVICE")
}

func TestDeleteAccountErasesEverything(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	bob := e.register(t, "bob")
	e.uploadPreKeys(t, alice, 5)
	if _, err := e.client.UploadKeyPackages(alice.ctx(), &authv1.UploadKeyPackagesRequest{KeyPackages: [][]byte{[]byte("kp1"), []byte("kp2")}}); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.DeleteAccount(alice.ctx(), &authv1.DeleteAccountRequest{ConfirmUsername: "bob"})
	wantErr(t, err, codes.InvalidArgument, "CONFIRMATION_MISMATCH")

	export, err := e.client.ExportAccountData(alice.ctx(), &authv1.ExportAccountDataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if export.GetAccount().GetUsername() != "alice" || len(export.GetKeyCounts()) != 1 || export.GetKeyCounts()[0].GetKeyPackages() != 2 {
		t.Fatalf("export = %v", export)
	}

	if _, err := e.client.DeleteAccount(alice.ctx(), &authv1.DeleteAccountRequest{ConfirmUsername: "alice"}); err != nil {
		t.Fatal(err)
	}
	// Nothing of alice's is left in the store: no key mentions her user id, and none holds
	// her identity key.
	err = e.store.View(context.Background(), func(tx kv.Tx) error {
		pairs, err := kv.ScanPrefix(tx, []byte("auth/"), 0)
		for _, p := range pairs {
			if bytes.HasPrefix(p.Key, []byte("auth/outbox/")) {
				continue // the AccountDeleted event; TestPublishedEventsLeaveTheOutbox checks it goes
			}
			if bytes.Contains(p.Key, []byte(alice.userID)) || bytes.Contains(p.Value, []byte(alice.userID)) || bytes.Contains(p.Value, alice.identity.Public().Bytes()) {
				t.Errorf("left after deletion: %q = %q", p.Key, p.Value)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.client.ListDevices(alice.ctx(), &authv1.ListDevicesRequest{})
	wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	_, err = e.client.LookupIdentity(bob.ctx(), &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_Username{Username: "alice"}})
	wantErr(t, err, codes.NotFound, "USER_NOT_FOUND")
	// The username is free again.
	e.register(t, "alice")
}

func TestKeyPackagesAndIdentity(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.register(t, "alice")
	bob := e.register(t, "bob")
	if _, err := e.client.UploadKeyPackages(bob.ctx(), &authv1.UploadKeyPackagesRequest{KeyPackages: [][]byte{[]byte("a"), []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for range 3 {
		resp, err := e.client.ClaimKeyPackages(alice.ctx(), &authv1.ClaimKeyPackagesRequest{UserId: bob.userID})
		if err != nil {
			t.Fatal(err)
		}
		for _, kp := range resp.GetKeyPackages() {
			got = append(got, kp.GetKeyPackage())
		}
	}
	if len(got) != 2 || slices.Equal(got[0], got[1]) {
		t.Fatalf("claimed %q", got)
	}
	id, err := e.client.LookupIdentity(alice.ctx(), &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_Username{Username: "bob"}})
	if err != nil || id.GetUserId() != bob.userID || !bytes.Equal(id.GetDevices()[0].GetIdentityKey(), bob.identity.Public().Bytes()) {
		t.Fatalf("lookup = %v, %v", id, err)
	}

	// Sender certificates verify against the trust root and carry the caller's identity.
	root, err := e.client.GetTrustRoot(context.Background(), &authv1.GetTrustRootRequest{})
	if err != nil {
		t.Fatal(err)
	}
	certResp, err := e.client.GetSenderCertificate(alice.ctx(), &authv1.GetSenderCertificateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := envelope.ParseSenderCertificate(certResp.GetCertificate())
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.Verify(root.GetSenderCertificateKey(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if cert.UserID() != alice.userID || cert.DeviceID() != 1 || !bytes.Equal(cert.IdentityKey().Bytes(), alice.identity.Public().Bytes()) {
		t.Fatalf("certificate names %s/%d", cert.UserID(), cert.DeviceID())
	}
}

// TestPublicMethodsMatchTheAPI keeps PublicMethods in step with the methods the proto
// marks (guardyn.common.v1.public).
func TestPublicMethodsMatchTheAPI(t *testing.T) {
	var marked []string
	methods := authv1.File_guardyn_auth_v1_auth_proto.Services().ByName("AuthService").Methods()
	for i := range methods.Len() {
		m := methods.Get(i)
		if proto.GetExtension(m.Options(), commonv1.E_Public).(bool) {
			marked = append(marked, "/guardyn.auth.v1.AuthService/"+string(m.Name()))
		}
	}
	got := auth.PublicMethods()
	slices.Sort(marked)
	slices.Sort(got)
	if !slices.Equal(marked, got) {
		t.Fatalf("PublicMethods() = %v, the API marks %v", got, marked)
	}
}

func TestSweepDeletesAbandonedChallengesAndLinks(t *testing.T) {
	e := newEnv(t, nil)
	e.register(t, "alice") // its login leaves the nonce recorded as used until it expires
	id, _ := keys.GenerateIdentity()
	ik := id.Public().Bytes()
	if _, err := e.client.StartDeviceLink(context.Background(), &authv1.StartDeviceLinkRequest{Username: "alice", IdentityKey: ik, DeviceName: "x",
		Signature: sign(t, id, keys.ContextDeviceLink, auth.DeviceLinkStatement("alice", ik, "x"))}); err != nil {
		t.Fatal(err)
	}
	count := func(prefix string) int {
		n := 0
		e.store.View(context.Background(), func(tx kv.Tx) error {
			pairs, err := kv.ScanPrefix(tx, []byte(prefix), 0)
			n = len(pairs)
			return err
		})
		return n
	}
	if count("auth/challenge/") != 1 || count("auth/link/") != 1 {
		t.Fatalf("before sweep: %d challenges, %d links", count("auth/challenge/"), count("auth/link/"))
	}
	// Nothing is swept while it is still valid.
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if count("auth/challenge/") != 1 || count("auth/link/") != 1 {
		t.Fatal("sweep deleted live entries")
	}
	e.clock.Advance(2 * time.Hour)
	if err := e.svc.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := count("auth/challenge/") + count("auth/link/") + count("auth/linkidx/"); n != 0 {
		t.Fatalf("%d abandoned entries left after sweep", n)
	}
}

// TestPreKeysLowIsPublishedOncePerFall: draining a device's pools publishes a low-prekey
// event when they fall below the threshold and when they empty, not on every bundle fetch
// while they are low (before: one event per fetch, persisted, so any caller could fill the
// event stream by fetching bundles).
func TestPreKeysLowIsPublishedOncePerFall(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	e.uploadPreKeys(t, bob, auth.DefaultLowPreKeyThreshold+5)
	for range 3 * auth.DefaultLowPreKeyThreshold {
		if _, err := e.client.GetKeyBundles(alice.ctx(), &authv1.GetKeyBundlesRequest{UserId: bob.userID}); err != nil {
			t.Fatal(err)
		}
	}
	e.events.mu.Lock()
	low := len(e.events.low)
	e.events.mu.Unlock()
	if low != 2 {
		t.Fatalf("%d bundle fetches draining a pool of %d published %d low-prekey events, want 2 (below %d, empty)",
			3*auth.DefaultLowPreKeyThreshold, auth.DefaultLowPreKeyThreshold+5, low, auth.DefaultLowPreKeyThreshold)
	}
	// Replenished and drained again: told again.
	e.uploadPreKeys(t, bob, auth.DefaultLowPreKeyThreshold)
	if _, err := e.client.GetKeyBundles(alice.ctx(), &authv1.GetKeyBundlesRequest{UserId: bob.userID}); err != nil {
		t.Fatal(err)
	}
	e.events.mu.Lock()
	defer e.events.mu.Unlock()
	if len(e.events.low) != 3 {
		t.Fatalf("after a refill and a fetch: %d events, want 3", len(e.events.low))
	}
}
