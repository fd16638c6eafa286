package platform_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/mls/mlsframe"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/services/auth"
	"github.com/guardyn/guardyn/tools/devserver/platform"
	"github.com/guardyn/guardyn/tools/internal/rawdevice"
)

// The tests in this file are the abuse suite of issue 6: every client-triggerable error
// of every RPC, the field limits at and one past their maximum, and the attacks the
// services must resist (prekey draining, nonce replay, refresh after removal, foreign
// acks, commit races). Token errors of every RPC are in authz_test.go.

// unlimited starts a platform without rate limits, so that setups creating many accounts,
// devices or links do not trip them.
func unlimited(t *testing.T) *env {
	return startWith(t, func(c *platform.Config) { c.Limits = ratelimit.Policy{} })
}

// errCase is one call expected to fail with code and reason.
type errCase struct {
	name   string
	call   func() error
	code   codes.Code
	reason string
}

func runErrCases(t *testing.T, cases []errCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantErr(t, c.call(), c.code, c.reason) })
	}
}

func addrOf(d *device) *commonv1.DeviceAddress {
	return &commonv1.DeviceAddress{UserId: d.UserID, DeviceId: d.ID}
}

func addrs(ds ...*device) []*commonv1.DeviceAddress {
	out := make([]*commonv1.DeviceAddress, len(ds))
	for i, d := range ds {
		out[i] = addrOf(d)
	}
	return out
}

func signWith(t *testing.T, id *keys.Identity, c keys.Context, msg []byte) []byte {
	t.Helper()
	return must(id.Sign(c, msg))
}

// preKeyUpload builds a signed upload for d with n one-time keys of each kind.
func preKeyUpload(t *testing.T, d *device, store *keys.PreKeyStore, first bool, n int) *authv1.UploadPreKeysRequest {
	t.Helper()
	req := &authv1.UploadPreKeysRequest{}
	if first {
		spk := must(store.GenerateSignedPreKey(d.Identity, time.Now()))
		req.SignedEcPrekey = &authv1.SignedEcPreKey{Id: spk.ID, CreatedAt: spk.Created.Unix(), PublicKey: spk.Key.Bytes(), Signature: spk.Signature}
		lrk := must(store.GenerateLastResortKEMPreKey(d.Identity, time.Now()))
		req.LastResortKemPrekey = &authv1.SignedKemPreKey{Id: lrk.ID, CreatedAt: lrk.Created.Unix(), PublicKey: lrk.Key.Bytes(), Signature: lrk.Signature}
	}
	for _, k := range must(store.GenerateOneTimePreKeys(n)) {
		req.OneTimeEcPrekeys = append(req.OneTimeEcPrekeys, &authv1.EcPreKey{Id: k.ID, PublicKey: k.Key.Bytes()})
	}
	for _, k := range must(store.GenerateKEMPreKeys(d.Identity, n, time.Now())) {
		req.OneTimeKemPrekeys = append(req.OneTimeKemPrekeys, &authv1.SignedKemPreKey{Id: k.ID, CreatedAt: k.Created.Unix(), PublicKey: k.Key.Bytes(), Signature: k.Signature})
	}
	return req
}

// oneTimeECUpload is an upload of n one-time EC prekeys only (no signatures needed).
func oneTimeECUpload(store *keys.PreKeyStore, n int) *authv1.UploadPreKeysRequest {
	req := &authv1.UploadPreKeysRequest{}
	for _, k := range must(store.GenerateOneTimePreKeys(n)) {
		req.OneTimeEcPrekeys = append(req.OneTimeEcPrekeys, &authv1.EcPreKey{Id: k.ID, PublicKey: k.Key.Bytes()})
	}
	return req
}

func times[T any](n int, v T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// TestAuthDocumentedErrors triggers every documented, client-triggerable error of the auth
// service once (except token errors, see TestAuthorizationTable, and RATE_LIMITED, see
// TestEveryLimitedRPCIsRateLimited) and checks its code and reason.
func TestAuthDocumentedErrors(t *testing.T) {
	e := unlimited(t)
	ctx := context.Background()
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	alice2 := e.link(t, alice)
	aliceKeys := keys.NewPreKeyStore()
	must(e.auth.UploadPreKeys(alice.ctx(t), preKeyUpload(t, alice, aliceKeys, true, 2)))

	newID := must(keys.GenerateIdentity())
	otherID := must(keys.GenerateIdentity())
	ik := newID.Public().Bytes()
	offCurve := append([]byte{4}, make([]byte, 64)...)
	regSig := func(username string) []byte {
		return signWith(t, newID, keys.ContextRegistration, auth.RegistrationStatement(username, ik))
	}
	linkSig := func(username, name string) []byte {
		return signWith(t, newID, keys.ContextDeviceLink, auth.DeviceLinkStatement(username, ik, name))
	}
	nonce := func(username string, device uint32) []byte {
		return must(e.auth.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: username, DeviceId: device})).GetNonce()
	}

	// Refresh tokens: one rotated (for reuse), one of a device removed since.
	rotated := alice.Tokens.GetRefreshToken()
	must(e.auth.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: rotated}))
	doomed := e.link(t, alice)
	doomedRefresh := doomed.Tokens.GetRefreshToken()
	must(e.auth.RemoveDevice(alice.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: doomed.ID}))

	// Links: one pending, one decided, one of a new device for status polling.
	decided := startLink(t, e, alice)
	must(e.auth.RejectDeviceLink(alice.ctx(t), &authv1.RejectDeviceLinkRequest{LinkId: decided}))
	pending := must(e.auth.StartDeviceLink(ctx, &authv1.StartDeviceLinkRequest{Username: "alice", IdentityKey: ik, DeviceName: "poller", Signature: linkSig("alice", "poller")})).GetLinkId()

	// An account at the device limit.
	full := e.register(t, "full")
	for range auth.MaxDevices - 1 {
		e.link(t, full)
	}
	overLimit := startLink(t, e, full)

	// A key package pool at its maximum.
	for range auth.MaxPoolSize / 100 {
		must(e.auth.UploadKeyPackages(bob.ctx(t), &authv1.UploadKeyPackagesRequest{KeyPackages: times(100, []byte("kp"))}))
	}
	// A one-time prekey pool at its maximum.
	bobKeys := keys.NewPreKeyStore()
	must(e.auth.UploadPreKeys(bob.ctx(t), preKeyUpload(t, bob, bobKeys, true, 0)))
	for range auth.MaxPoolSize / 100 {
		must(e.auth.UploadPreKeys(bob.ctx(t), oneTimeECUpload(bobKeys, 100)))
	}
	carol := e.register(t, "carol")

	spk := must(aliceKeys.GenerateSignedPreKey(alice.Identity, time.Now()))
	otk := must(aliceKeys.GenerateOneTimePreKeys(1))[0]
	kemByOther := must(aliceKeys.GenerateKEMPreKeys(otherID, 1, time.Now()))[0]

	a := e.auth
	runErrCases(t, []errCase{
		{"Register/INVALID_USERNAME", func() error {
			_, err := a.Register(ctx, &authv1.RegisterRequest{Username: "No!", IdentityKey: ik, DeviceName: "d", Signature: regSig("No!")})
			return err
		}, codes.InvalidArgument, "INVALID_USERNAME"},
		{"Register/INVALID_IDENTITY_KEY", func() error {
			_, err := a.Register(ctx, &authv1.RegisterRequest{Username: "dave", IdentityKey: offCurve, DeviceName: "d", Signature: regSig("dave")})
			return err
		}, codes.InvalidArgument, "INVALID_IDENTITY_KEY"},
		{"Register/BAD_SIGNATURE", func() error {
			_, err := a.Register(ctx, &authv1.RegisterRequest{Username: "dave", IdentityKey: ik, DeviceName: "d", Signature: regSig("erin")})
			return err
		}, codes.InvalidArgument, "BAD_SIGNATURE"},
		{"Register/MALFORMED_REQUEST", func() error {
			_, err := a.Register(ctx, &authv1.RegisterRequest{Username: "dave", IdentityKey: ik, DeviceName: "tab\there", Signature: regSig("dave")})
			return err
		}, codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"Register/LIMIT_EXCEEDED", func() error {
			_, err := a.Register(ctx, &authv1.RegisterRequest{Username: "dave", IdentityKey: ik, DeviceName: strings.Repeat("d", 61), Signature: regSig("dave")})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"Register/USERNAME_TAKEN", func() error {
			_, err := a.Register(ctx, &authv1.RegisterRequest{Username: "alice", IdentityKey: ik, DeviceName: "d", Signature: regSig("alice")})
			return err
		}, codes.AlreadyExists, "USERNAME_TAKEN"},

		{"GetLoginChallenge/INVALID_USERNAME", func() error {
			_, err := a.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: "ab", DeviceId: 1})
			return err
		}, codes.InvalidArgument, "INVALID_USERNAME"},
		{"GetLoginChallenge/MALFORMED_REQUEST", func() error {
			_, err := a.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: "alice"})
			return err
		}, codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"GetLoginChallenge/LIMIT_EXCEEDED", func() error {
			_, err := a.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: strings.Repeat("a", 33), DeviceId: 1})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},

		{"Login/MALFORMED_REQUEST", func() error {
			_, err := a.Login(ctx, &authv1.LoginRequest{Username: "alice", DeviceId: 1, Nonce: nonce("alice", 1)})
			return err
		}, codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"Login/LIMIT_EXCEEDED", func() error {
			_, err := a.Login(ctx, &authv1.LoginRequest{Username: "alice", DeviceId: 1, Nonce: make([]byte, 33), Signature: []byte{1}})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"Login/LOGIN_FAILED", func() error {
			n := nonce("alice", 1)
			sig := signWith(t, otherID, keys.ContextLoginChallenge, auth.LoginStatement("alice", 1, n))
			_, err := a.Login(ctx, &authv1.LoginRequest{Username: "alice", DeviceId: 1, Nonce: n, Signature: sig})
			return err
		}, codes.Unauthenticated, "LOGIN_FAILED"},
		{"Login/CHALLENGE_EXPIRED", func() error {
			_, err := a.Login(ctx, &authv1.LoginRequest{Username: "alice", DeviceId: 1, Nonce: bytes.Repeat([]byte{9}, 32), Signature: []byte{1}})
			return err
		}, codes.Unauthenticated, "CHALLENGE_EXPIRED"},

		{"RefreshToken/LIMIT_EXCEEDED", func() error {
			_, err := a.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: strings.Repeat("r", 1025)})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"RefreshToken/REFRESH_TOKEN_INVALID", func() error {
			_, err := a.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: "forged"})
			return err
		}, codes.Unauthenticated, "REFRESH_TOKEN_INVALID"},
		{"RefreshToken/REFRESH_TOKEN_REUSED", func() error {
			_, err := a.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: rotated})
			return err
		}, codes.Unauthenticated, "REFRESH_TOKEN_REUSED"},
		{"RefreshToken/DEVICE_REMOVED", func() error {
			_, err := a.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: doomedRefresh})
			return err
		}, codes.Unauthenticated, "DEVICE_REMOVED"},

		{"StartDeviceLink/INVALID_USERNAME", func() error {
			_, err := a.StartDeviceLink(ctx, &authv1.StartDeviceLinkRequest{Username: "A", IdentityKey: ik, DeviceName: "n", Signature: linkSig("A", "n")})
			return err
		}, codes.InvalidArgument, "INVALID_USERNAME"},
		{"StartDeviceLink/INVALID_IDENTITY_KEY", func() error {
			_, err := a.StartDeviceLink(ctx, &authv1.StartDeviceLinkRequest{Username: "alice", IdentityKey: offCurve, DeviceName: "n", Signature: linkSig("alice", "n")})
			return err
		}, codes.InvalidArgument, "INVALID_IDENTITY_KEY"},
		{"StartDeviceLink/BAD_SIGNATURE", func() error {
			_, err := a.StartDeviceLink(ctx, &authv1.StartDeviceLinkRequest{Username: "alice", IdentityKey: ik, DeviceName: "n", Signature: linkSig("alice", "other name")})
			return err
		}, codes.InvalidArgument, "BAD_SIGNATURE"},
		{"StartDeviceLink/MALFORMED_REQUEST", func() error {
			_, err := a.StartDeviceLink(ctx, &authv1.StartDeviceLinkRequest{Username: "alice", IdentityKey: ik, Signature: linkSig("alice", "")})
			return err
		}, codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"StartDeviceLink/LIMIT_EXCEEDED", func() error {
			name := strings.Repeat("n", 61)
			_, err := a.StartDeviceLink(ctx, &authv1.StartDeviceLinkRequest{Username: "alice", IdentityKey: ik, DeviceName: name, Signature: linkSig("alice", name)})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},

		{"ApproveDeviceLink/LIMIT_EXCEEDED", func() error {
			_, err := a.ApproveDeviceLink(alice.ctx(t), &authv1.ApproveDeviceLinkRequest{LinkId: strings.Repeat("l", 65)})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"ApproveDeviceLink/LINK_NOT_FOUND", func() error {
			_, err := a.ApproveDeviceLink(alice.ctx(t), &authv1.ApproveDeviceLinkRequest{LinkId: "nope"})
			return err
		}, codes.NotFound, "LINK_NOT_FOUND"},
		{"ApproveDeviceLink/LINK_ALREADY_DECIDED", func() error {
			_, err := a.ApproveDeviceLink(alice.ctx(t), &authv1.ApproveDeviceLinkRequest{LinkId: decided})
			return err
		}, codes.FailedPrecondition, "LINK_ALREADY_DECIDED"},
		{"ApproveDeviceLink/DEVICE_LIMIT_REACHED", func() error {
			_, err := a.ApproveDeviceLink(full.ctx(t), &authv1.ApproveDeviceLinkRequest{LinkId: overLimit})
			return err
		}, codes.FailedPrecondition, "DEVICE_LIMIT_REACHED"},

		{"RejectDeviceLink/LIMIT_EXCEEDED", func() error {
			_, err := a.RejectDeviceLink(alice.ctx(t), &authv1.RejectDeviceLinkRequest{LinkId: strings.Repeat("l", 65)})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"RejectDeviceLink/LINK_NOT_FOUND", func() error {
			_, err := a.RejectDeviceLink(bob.ctx(t), &authv1.RejectDeviceLinkRequest{LinkId: pending})
			return err
		}, codes.NotFound, "LINK_NOT_FOUND"},
		{"RejectDeviceLink/LINK_ALREADY_DECIDED", func() error {
			_, err := a.RejectDeviceLink(alice.ctx(t), &authv1.RejectDeviceLinkRequest{LinkId: decided})
			return err
		}, codes.FailedPrecondition, "LINK_ALREADY_DECIDED"},

		{"GetDeviceLinkStatus/LIMIT_EXCEEDED", func() error {
			_, err := a.GetDeviceLinkStatus(ctx, &authv1.GetDeviceLinkStatusRequest{LinkId: strings.Repeat("l", 65)})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"GetDeviceLinkStatus/BAD_SIGNATURE", func() error {
			sig := signWith(t, otherID, auth.ContextDeviceLinkStatus, auth.DeviceLinkStatusStatement(pending))
			_, err := a.GetDeviceLinkStatus(ctx, &authv1.GetDeviceLinkStatusRequest{LinkId: pending, Signature: sig})
			return err
		}, codes.InvalidArgument, "BAD_SIGNATURE"},
		{"GetDeviceLinkStatus/LINK_NOT_FOUND", func() error {
			sig := signWith(t, newID, auth.ContextDeviceLinkStatus, auth.DeviceLinkStatusStatement("nope"))
			_, err := a.GetDeviceLinkStatus(ctx, &authv1.GetDeviceLinkStatusRequest{LinkId: "nope", Signature: sig})
			return err
		}, codes.NotFound, "LINK_NOT_FOUND"},

		{"RemoveDevice/DEVICE_NOT_FOUND", func() error {
			_, err := a.RemoveDevice(alice.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: 99})
			return err
		}, codes.NotFound, "DEVICE_NOT_FOUND"},
		{"RemoveDevice/LAST_DEVICE", func() error {
			_, err := a.RemoveDevice(carol.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: carol.ID})
			return err
		}, codes.FailedPrecondition, "LAST_DEVICE"},

		{"DeleteAccount/LIMIT_EXCEEDED", func() error {
			_, err := a.DeleteAccount(alice.ctx(t), &authv1.DeleteAccountRequest{ConfirmUsername: strings.Repeat("a", 33)})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"DeleteAccount/CONFIRMATION_MISMATCH", func() error {
			_, err := a.DeleteAccount(alice.ctx(t), &authv1.DeleteAccountRequest{ConfirmUsername: "bob"})
			return err
		}, codes.InvalidArgument, "CONFIRMATION_MISMATCH"},

		{"UploadPreKeys/LIMIT_EXCEEDED", func() error {
			_, err := a.UploadPreKeys(alice.ctx(t), oneTimeECUpload(aliceKeys, 101))
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"UploadPreKeys/INVALID_PREKEY", func() error {
			_, err := a.UploadPreKeys(alice.ctx(t), &authv1.UploadPreKeysRequest{OneTimeEcPrekeys: []*authv1.EcPreKey{{Id: 77, PublicKey: offCurve}}})
			return err
		}, codes.InvalidArgument, "INVALID_PREKEY"},
		{"UploadPreKeys/BAD_PREKEY_SIGNATURE", func() error {
			_, err := a.UploadPreKeys(alice.ctx(t), &authv1.UploadPreKeysRequest{OneTimeKemPrekeys: []*authv1.SignedKemPreKey{{Id: kemByOther.ID, CreatedAt: kemByOther.Created.Unix(), PublicKey: kemByOther.Key.Bytes(), Signature: kemByOther.Signature}}})
			return err
		}, codes.InvalidArgument, "BAD_PREKEY_SIGNATURE"},
		{"UploadPreKeys/DUPLICATE_PREKEY_ID", func() error {
			k := &authv1.EcPreKey{Id: otk.ID, PublicKey: otk.Key.Bytes()}
			_, err := a.UploadPreKeys(alice.ctx(t), &authv1.UploadPreKeysRequest{OneTimeEcPrekeys: []*authv1.EcPreKey{k, k}})
			return err
		}, codes.InvalidArgument, "DUPLICATE_PREKEY_ID"},
		{"UploadPreKeys/NO_SIGNED_PREKEY", func() error {
			_, err := a.UploadPreKeys(alice2.ctx(t), oneTimeECUpload(keys.NewPreKeyStore(), 1))
			return err
		}, codes.FailedPrecondition, "NO_SIGNED_PREKEY"},
		{"UploadPreKeys/PREKEY_LIMIT_REACHED", func() error {
			_, err := a.UploadPreKeys(bob.ctx(t), oneTimeECUpload(bobKeys, 1))
			return err
		}, codes.ResourceExhausted, "PREKEY_LIMIT_REACHED"},
		{"UploadPreKeys/BAD_PREKEY_SIGNATURE on the signed prekey", func() error {
			_, err := a.UploadPreKeys(alice.ctx(t), &authv1.UploadPreKeysRequest{SignedEcPrekey: &authv1.SignedEcPreKey{Id: spk.ID, CreatedAt: spk.Created.Unix(), PublicKey: spk.Key.Bytes(), Signature: signWith(t, otherID, keys.ContextSignedPreKey, []byte("x"))}})
			return err
		}, codes.InvalidArgument, "BAD_PREKEY_SIGNATURE"},

		{"GetKeyBundles/LIMIT_EXCEEDED", func() error {
			_, err := a.GetKeyBundles(bob.ctx(t), &authv1.GetKeyBundlesRequest{UserId: alice.UserID, DeviceIds: times[uint32](17, 1)})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"GetKeyBundles/USER_NOT_FOUND", func() error {
			_, err := a.GetKeyBundles(bob.ctx(t), &authv1.GetKeyBundlesRequest{UserId: "nobody"})
			return err
		}, codes.NotFound, "USER_NOT_FOUND"},
		{"GetKeyBundles/DEVICE_NOT_FOUND", func() error {
			_, err := a.GetKeyBundles(bob.ctx(t), &authv1.GetKeyBundlesRequest{UserId: alice.UserID, DeviceIds: []uint32{99}})
			return err
		}, codes.NotFound, "DEVICE_NOT_FOUND"},

		{"UploadKeyPackages/LIMIT_EXCEEDED count", func() error {
			_, err := a.UploadKeyPackages(alice.ctx(t), &authv1.UploadKeyPackagesRequest{KeyPackages: times(101, []byte("kp"))})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"UploadKeyPackages/LIMIT_EXCEEDED size", func() error {
			_, err := a.UploadKeyPackages(alice.ctx(t), &authv1.UploadKeyPackagesRequest{KeyPackages: [][]byte{make([]byte, 16<<10+1)}})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"UploadKeyPackages/MALFORMED_REQUEST", func() error {
			_, err := a.UploadKeyPackages(alice.ctx(t), &authv1.UploadKeyPackagesRequest{KeyPackages: [][]byte{[]byte("kp"), {}}})
			return err
		}, codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"UploadKeyPackages/KEY_PACKAGE_LIMIT_REACHED", func() error {
			_, err := a.UploadKeyPackages(bob.ctx(t), &authv1.UploadKeyPackagesRequest{KeyPackages: [][]byte{[]byte("kp")}})
			return err
		}, codes.ResourceExhausted, "KEY_PACKAGE_LIMIT_REACHED"},

		{"ClaimKeyPackages/LIMIT_EXCEEDED", func() error {
			_, err := a.ClaimKeyPackages(alice.ctx(t), &authv1.ClaimKeyPackagesRequest{UserId: strings.Repeat("u", 65)})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"ClaimKeyPackages/USER_NOT_FOUND", func() error {
			_, err := a.ClaimKeyPackages(alice.ctx(t), &authv1.ClaimKeyPackagesRequest{UserId: "nobody"})
			return err
		}, codes.NotFound, "USER_NOT_FOUND"},

		{"LookupIdentity/LIMIT_EXCEEDED", func() error {
			_, err := a.LookupIdentity(alice.ctx(t), &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_Username{Username: strings.Repeat("a", 33)}})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"LookupIdentity/MALFORMED_REQUEST", func() error {
			_, err := a.LookupIdentity(alice.ctx(t), &authv1.LookupIdentityRequest{})
			return err
		}, codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"LookupIdentity/USER_NOT_FOUND", func() error {
			_, err := a.LookupIdentity(alice.ctx(t), &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_UserId{UserId: "nobody"}})
			return err
		}, codes.NotFound, "USER_NOT_FOUND"},
	})
}

// TestMessagingDocumentedErrors triggers every documented, client-triggerable error of the
// messaging service once (token errors are in TestAuthorizationTable, RATE_LIMITED in
// TestEveryLimitedRPCIsRateLimited).
func TestMessagingDocumentedErrors(t *testing.T) {
	e := startWith(t, func(c *platform.Config) { c.Limits = ratelimit.Policy{}; c.InboxLimit = 3 })
	alice, bob, carol := e.register(t, "alice"), e.register(t, "bob"), e.register(t, "carol")
	alice2 := e.link(t, alice)
	full := e.register(t, "full")
	for range 3 {
		must(e.send(t, alice, full, []byte("fill")))
	}
	gid, fullGroup := clientID(), clientID()
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(alice, bob), GroupInfo: []byte("gi")}))
	must(e.msg.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: fullGroup, Members: addrs(alice, full), GroupInfo: []byte("gi")}))
	env := func(d uint32, body string) *messagingv1.DeviceEnvelope {
		return &messagingv1.DeviceEnvelope{DeviceId: d, SealedEnvelope: []byte(body)}
	}
	m := e.msg
	send := func(req *messagingv1.SendMessageRequest) func() error {
		return func() error { _, err := m.SendMessage(alice.ctx(t), req); return err }
	}
	ephemeral := func(req *messagingv1.SendEphemeralRequest) func() error {
		return func() error { _, err := m.SendEphemeral(alice.ctx(t), req); return err }
	}
	commit := func(d *device, req *messagingv1.SubmitCommitRequest) func() error {
		return func() error { _, err := m.SubmitCommit(d.ctx(t), req); return err }
	}
	proposal := func(d *device, req *messagingv1.SubmitProposalRequest) func() error {
		return func() error { _, err := m.SubmitProposal(d.ctx(t), req); return err }
	}
	groupMsg := func(d *device, req *messagingv1.SendGroupMessageRequest) func() error {
		return func() error { _, err := m.SendGroupMessage(d.ctx(t), req); return err }
	}
	create := func(req *messagingv1.CreateGroupRequest) func() error {
		return func() error { _, err := m.CreateGroup(alice.ctx(t), req); return err }
	}
	runErrCases(t, []errCase{
		{"SendMessage/LIMIT_EXCEEDED", send(&messagingv1.SendMessageRequest{RecipientUserId: bob.UserID, ClientMessageId: make([]byte, 15), Envelopes: []*messagingv1.DeviceEnvelope{env(1, "x")}}), codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"SendMessage/MALFORMED_REQUEST no envelope", send(&messagingv1.SendMessageRequest{RecipientUserId: bob.UserID, ClientMessageId: clientID()}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SendMessage/MALFORMED_REQUEST empty envelope", send(&messagingv1.SendMessageRequest{RecipientUserId: bob.UserID, ClientMessageId: clientID(), Envelopes: []*messagingv1.DeviceEnvelope{env(1, "")}}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SendMessage/MALFORMED_REQUEST device twice", send(&messagingv1.SendMessageRequest{RecipientUserId: bob.UserID, ClientMessageId: clientID(), Envelopes: []*messagingv1.DeviceEnvelope{env(1, "x"), env(1, "y")}}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SendMessage/MALFORMED_REQUEST to the sending device", send(&messagingv1.SendMessageRequest{RecipientUserId: alice.UserID, ClientMessageId: clientID(), Envelopes: []*messagingv1.DeviceEnvelope{env(alice.ID, "x"), env(alice2.ID, "x")}}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SendMessage/USER_NOT_FOUND", send(&messagingv1.SendMessageRequest{RecipientUserId: "nobody", ClientMessageId: clientID(), Envelopes: []*messagingv1.DeviceEnvelope{env(1, "x")}}), codes.NotFound, "USER_NOT_FOUND"},
		{"SendMessage/STALE_DEVICE_LIST", send(&messagingv1.SendMessageRequest{RecipientUserId: bob.UserID, ClientMessageId: clientID(), Envelopes: []*messagingv1.DeviceEnvelope{env(1, "x"), env(2, "x")}}), codes.FailedPrecondition, "STALE_DEVICE_LIST"},
		{"SendMessage/INBOX_FULL", send(&messagingv1.SendMessageRequest{RecipientUserId: full.UserID, ClientMessageId: clientID(), Envelopes: []*messagingv1.DeviceEnvelope{env(1, "x")}}), codes.ResourceExhausted, "INBOX_FULL"},

		{"SendEphemeral/LIMIT_EXCEEDED", ephemeral(&messagingv1.SendEphemeralRequest{RecipientUserId: strings.Repeat("u", 65), Envelopes: []*messagingv1.DeviceEnvelope{env(1, "x")}}), codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"SendEphemeral/MALFORMED_REQUEST", ephemeral(&messagingv1.SendEphemeralRequest{RecipientUserId: bob.UserID}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SendEphemeral/USER_NOT_FOUND", ephemeral(&messagingv1.SendEphemeralRequest{RecipientUserId: "nobody", Envelopes: []*messagingv1.DeviceEnvelope{env(1, "x")}}), codes.NotFound, "USER_NOT_FOUND"},
		{"SendEphemeral/STALE_DEVICE_LIST", ephemeral(&messagingv1.SendEphemeralRequest{RecipientUserId: alice.UserID, Envelopes: []*messagingv1.DeviceEnvelope{env(7, "x")}}), codes.FailedPrecondition, "STALE_DEVICE_LIST"},

		{"AckMessages/LIMIT_EXCEEDED", func() error {
			_, err := m.AckMessages(alice.ctx(t), &messagingv1.AckMessagesRequest{MessageIds: [][]byte{make([]byte, 17)}})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},

		{"CreateGroup/LIMIT_EXCEEDED", create(&messagingv1.CreateGroupRequest{GroupId: make([]byte, 65), Members: addrs(alice)}), codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"CreateGroup/MALFORMED_REQUEST empty id", create(&messagingv1.CreateGroupRequest{Members: addrs(alice)}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"CreateGroup/MALFORMED_REQUEST member twice", create(&messagingv1.CreateGroupRequest{GroupId: clientID(), Members: addrs(alice, bob, bob)}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"CreateGroup/MALFORMED_REQUEST caller missing", create(&messagingv1.CreateGroupRequest{GroupId: clientID(), Members: addrs(bob)}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"CreateGroup/GROUP_EXISTS", create(&messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(alice)}), codes.AlreadyExists, "GROUP_EXISTS"},

		{"SubmitCommit/LIMIT_EXCEEDED", commit(alice, &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: make([]byte, 256<<10+1), GroupInfo: []byte("g")}), codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"SubmitCommit/MALFORMED_REQUEST empty commit", commit(alice, &messagingv1.SubmitCommitRequest{GroupId: gid, GroupInfo: []byte("g")}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SubmitCommit/MALFORMED_REQUEST welcome without recipients", commit(alice, &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("c"), GroupInfo: []byte("g"), Welcome: []byte("w")}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SubmitCommit/MALFORMED_REQUEST recipients without welcome", commit(alice, &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("c"), GroupInfo: []byte("g"), WelcomeRecipients: addrs(carol)}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SubmitCommit/MALFORMED_REQUEST removing a non-member", commit(alice, &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("c"), GroupInfo: []byte("g"), Removed: addrs(carol)}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SubmitCommit/GROUP_NOT_FOUND", commit(alice, &messagingv1.SubmitCommitRequest{GroupId: clientID(), Commit: []byte("c"), GroupInfo: []byte("g")}), codes.NotFound, "GROUP_NOT_FOUND"},
		{"SubmitCommit/NOT_GROUP_MEMBER", commit(carol, &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("c"), GroupInfo: []byte("g")}), codes.PermissionDenied, "NOT_GROUP_MEMBER"},
		{"SubmitCommit/EPOCH_CONFLICT", commit(alice, &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: 3, Commit: []byte("c"), GroupInfo: []byte("g")}), codes.Aborted, "EPOCH_CONFLICT"},
		{"SubmitCommit/MALFORMED_REQUEST recipients are not the added devices", commit(alice, &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("c"), GroupInfo: []byte("g"), Welcome: []byte("w"), WelcomeRecipients: addrs(carol)}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SubmitCommit/MALFORMED_REQUEST adding a member", commit(alice, &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: []byte("c"), GroupInfo: []byte("g"), Welcome: []byte("w"), WelcomeRecipients: addrs(bob), Added: addrs(bob)}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SubmitCommit/INBOX_FULL", commit(alice, &messagingv1.SubmitCommitRequest{GroupId: fullGroup, Commit: mlsframe.PrivateMessage(fullGroup, 0, mlsframe.Commit, 0), GroupInfo: []byte("g")}), codes.ResourceExhausted, "INBOX_FULL"},
		{"SubmitCommit/MALFORMED_REQUEST not an MLS PrivateMessage commit", commit(alice, &messagingv1.SubmitCommitRequest{GroupId: gid, Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Proposal, 0), GroupInfo: []byte("g")}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SubmitProposal/MALFORMED_REQUEST not an MLS PrivateMessage proposal", proposal(alice, &messagingv1.SubmitProposalRequest{GroupId: gid, Proposal: []byte("p")}), codes.InvalidArgument, "MALFORMED_REQUEST"},

		{"SubmitProposal/LIMIT_EXCEEDED", proposal(alice, &messagingv1.SubmitProposalRequest{GroupId: gid, Proposal: make([]byte, 64<<10+1)}), codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"SubmitProposal/MALFORMED_REQUEST", proposal(alice, &messagingv1.SubmitProposalRequest{GroupId: gid}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SubmitProposal/GROUP_NOT_FOUND", proposal(alice, &messagingv1.SubmitProposalRequest{GroupId: clientID(), Proposal: []byte("p")}), codes.NotFound, "GROUP_NOT_FOUND"},
		{"SubmitProposal/NOT_GROUP_MEMBER", proposal(carol, &messagingv1.SubmitProposalRequest{GroupId: gid, Proposal: []byte("p")}), codes.PermissionDenied, "NOT_GROUP_MEMBER"},
		{"SubmitProposal/EPOCH_CONFLICT", proposal(alice, &messagingv1.SubmitProposalRequest{GroupId: gid, Epoch: 1, Proposal: []byte("p")}), codes.Aborted, "EPOCH_CONFLICT"},

		{"SendGroupMessage/LIMIT_EXCEEDED", groupMsg(alice, &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: []byte("m"), ClientMessageId: make([]byte, 17)}), codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"SendGroupMessage/MALFORMED_REQUEST", groupMsg(alice, &messagingv1.SendGroupMessageRequest{GroupId: gid, ClientMessageId: clientID()}), codes.InvalidArgument, "MALFORMED_REQUEST"},
		{"SendGroupMessage/GROUP_NOT_FOUND", groupMsg(alice, &messagingv1.SendGroupMessageRequest{GroupId: clientID(), PrivateMessage: []byte("m"), ClientMessageId: clientID()}), codes.NotFound, "GROUP_NOT_FOUND"},
		{"SendGroupMessage/NOT_GROUP_MEMBER", groupMsg(carol, &messagingv1.SendGroupMessageRequest{GroupId: gid, PrivateMessage: []byte("m"), ClientMessageId: clientID()}), codes.PermissionDenied, "NOT_GROUP_MEMBER"},
		{"SendGroupMessage/EPOCH_MISMATCH", groupMsg(alice, &messagingv1.SendGroupMessageRequest{GroupId: gid, Epoch: 2, PrivateMessage: []byte("m"), ClientMessageId: clientID()}), codes.FailedPrecondition, "EPOCH_MISMATCH"},
		{"SendGroupMessage/INBOX_FULL", groupMsg(alice, &messagingv1.SendGroupMessageRequest{GroupId: fullGroup, PrivateMessage: mlsframe.PrivateMessage(fullGroup, 0, mlsframe.Application, 0), ClientMessageId: clientID()}), codes.ResourceExhausted, "INBOX_FULL"},

		{"FetchWelcome/LIMIT_EXCEEDED", func() error {
			_, err := m.FetchWelcome(alice.ctx(t), &messagingv1.FetchWelcomeRequest{GroupId: make([]byte, 65)})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"FetchWelcome/WELCOME_NOT_FOUND", func() error {
			_, err := m.FetchWelcome(bob.ctx(t), &messagingv1.FetchWelcomeRequest{GroupId: gid})
			return err
		}, codes.NotFound, "WELCOME_NOT_FOUND"},

		{"GetGroupInfo/LIMIT_EXCEEDED", func() error {
			_, err := m.GetGroupInfo(alice.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: make([]byte, 65)})
			return err
		}, codes.InvalidArgument, "LIMIT_EXCEEDED"},
		{"GetGroupInfo/GROUP_NOT_FOUND", func() error {
			_, err := m.GetGroupInfo(carol.ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: gid})
			return err
		}, codes.NotFound, "GROUP_NOT_FOUND"},

		{"Receive/STREAM_SUPERSEDED", func() error {
			first := e.receive(t, carol)
			<-first.backlog
			second := e.receive(t, carol)
			<-second.backlog
			select {
			case err := <-first.errs:
				return err
			case <-time.After(10 * time.Second):
				return errors.New("first stream still open")
			}
		}, codes.Aborted, "STREAM_SUPERSEDED"},
	})

	// SendStream: a failed send is reported in its response and the stream goes on; a
	// field over its limit ends the stream with LIMIT_EXCEEDED.
	t.Run("SendStream", func(t *testing.T) {
		s := must(m.SendStream(alice.ctx(t)))
		if err := s.Send(&messagingv1.SendStreamRequest{RequestId: 1, Message: &messagingv1.SendMessageRequest{RecipientUserId: "nobody", ClientMessageId: clientID(), Envelopes: []*messagingv1.DeviceEnvelope{env(1, "x")}}}); err != nil {
			t.Fatal(err)
		}
		resp := must(s.Recv())
		if resp.GetRequestId() != 1 || resp.GetError().GetReason() != "USER_NOT_FOUND" || codes.Code(resp.GetError().GetCode()) != codes.NotFound {
			t.Fatalf("response = %v, want request 1 failed with NOT_FOUND/USER_NOT_FOUND", resp)
		}
		if err := s.Send(&messagingv1.SendStreamRequest{RequestId: 2, Message: &messagingv1.SendMessageRequest{RecipientUserId: bob.UserID, ClientMessageId: clientID(), Envelopes: []*messagingv1.DeviceEnvelope{env(1, "ok")}}}); err != nil {
			t.Fatal(err)
		}
		if resp := must(s.Recv()); resp.GetRequestId() != 2 || resp.GetSent() == nil {
			t.Fatalf("response = %v, want request 2 sent", resp)
		}
		if err := s.Send(&messagingv1.SendStreamRequest{RequestId: 3, Message: &messagingv1.SendMessageRequest{RecipientUserId: bob.UserID, ClientMessageId: make([]byte, 17), Envelopes: []*messagingv1.DeviceEnvelope{env(1, "x")}}}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		_, err := s.Recv()
		wantErr(t, err, codes.InvalidArgument, "LIMIT_EXCEEDED")
	})
}

// TestEveryLimitedRPCIsRateLimited gives every action a budget of one call and checks that
// the second call of each rate-limited RPC fails with RESOURCE_EXHAUSTED/RATE_LIMITED.
func TestEveryLimitedRPCIsRateLimited(t *testing.T) {
	policy := platform.DefaultPolicy()
	for action := range policy {
		policy[action] = ratelimit.Config{Rate: 0.0001, Burst: 1, MaxKeys: 1000}
	}
	// The setup registers and logs in two accounts from this peer; leave one call each.
	policy["register"] = ratelimit.Config{Rate: 0.0001, Burst: 3, MaxKeys: 1000}
	policy["challenge-peer"] = ratelimit.Config{Rate: 0.0001, Burst: 3, MaxKeys: 1000}
	policy["login-peer"] = ratelimit.Config{Rate: 0.0001, Burst: 3, MaxKeys: 1000}
	// Byte budgets limit amounts that several RPCs share (SendMessage and SendEphemeral
	// both spend send-bytes and deliver-bytes): leave them room, sendbytes_test.go and
	// deliverybytes_test.go cover them.
	for _, amounts := range []string{"send-bytes", "deliver-bytes", "redeliver"} {
		policy[amounts] = ratelimit.Config{Rate: 1 << 20, Burst: 1 << 20, MaxKeys: 1000}
	}
	e := startWith(t, func(c *platform.Config) { c.Limits = policy })
	ctx := context.Background()
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	gid := clientID()
	a, m := e.auth, e.msg
	newID := must(keys.GenerateIdentity())
	ik := newID.Public().Bytes()
	linkReq := &authv1.StartDeviceLinkRequest{Username: "bob", IdentityKey: ik, DeviceName: "n",
		Signature: signWith(t, newID, keys.ContextDeviceLink, auth.DeviceLinkStatement("bob", ik, "n"))}
	cases := []struct {
		name string
		call func() error
	}{
		{"Register", func() error {
			id := must(keys.GenerateIdentity())
			pk := id.Public().Bytes()
			_, err := a.Register(ctx, &authv1.RegisterRequest{Username: "carol", IdentityKey: pk, DeviceName: "d",
				Signature: signWith(t, id, keys.ContextRegistration, auth.RegistrationStatement("carol", pk))})
			return err
		}},
		{"GetLoginChallenge", func() error {
			_, err := a.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: "carol", DeviceId: 1})
			return err
		}},
		{"Login", func() error {
			_, err := a.Login(ctx, &authv1.LoginRequest{Username: "carol", DeviceId: 1, Nonce: make([]byte, 32), Signature: []byte{1}})
			return err
		}},
		{"RefreshToken", func() error {
			_, err := a.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: "x"})
			return err
		}},
		{"StartDeviceLink", func() error { _, err := a.StartDeviceLink(ctx, linkReq); return err }},
		{"GetDeviceLinkStatus", func() error {
			_, err := a.GetDeviceLinkStatus(ctx, &authv1.GetDeviceLinkStatusRequest{LinkId: "x"})
			return err
		}},
		{"ExportAccountData", func() error {
			_, err := a.ExportAccountData(alice.ctx(t), &authv1.ExportAccountDataRequest{})
			return err
		}},
		{"UploadPreKeys", func() error {
			_, err := a.UploadPreKeys(alice.ctx(t), &authv1.UploadPreKeysRequest{})
			return err
		}},
		{"GetKeyBundles", func() error {
			_, err := a.GetKeyBundles(alice.ctx(t), &authv1.GetKeyBundlesRequest{UserId: bob.UserID})
			return err
		}},
		{"UploadKeyPackages", func() error {
			_, err := a.UploadKeyPackages(alice.ctx(t), &authv1.UploadKeyPackagesRequest{KeyPackages: [][]byte{[]byte("kp")}})
			return err
		}},
		{"ClaimKeyPackages", func() error {
			_, err := a.ClaimKeyPackages(alice.ctx(t), &authv1.ClaimKeyPackagesRequest{UserId: bob.UserID})
			return err
		}},
		{"LookupIdentity", func() error {
			_, err := a.LookupIdentity(alice.ctx(t), &authv1.LookupIdentityRequest{Account: &authv1.LookupIdentityRequest_Username{Username: "bob"}})
			return err
		}},
		{"GetSenderCertificate", func() error {
			_, err := a.GetSenderCertificate(alice.ctx(t), &authv1.GetSenderCertificateRequest{})
			return err
		}},
		{"SendMessage", func() error {
			_, err := e.send(t, alice, bob, []byte("x"))
			return err
		}},
		{"SendEphemeral", func() error {
			_, err := m.SendEphemeral(alice.ctx(t), &messagingv1.SendEphemeralRequest{RecipientUserId: bob.UserID, Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1, SealedEnvelope: []byte("x")}}})
			return err
		}},
		{"Receive", func() error {
			ctx, cancel := context.WithTimeout(alice.ctx(t), 5*time.Second)
			defer cancel()
			s, err := m.Receive(ctx)
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"CreateGroup", func() error {
			_, err := m.CreateGroup(bob.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(bob)})
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			first := c.call()
			if server.Reason(first) == "RATE_LIMITED" {
				t.Fatalf("first call already rate-limited: %v", first)
			}
			wantErr(t, c.call(), codes.ResourceExhausted, "RATE_LIMITED")
		})
	}
}

// TestLimitsAtTheMaximumPassAndOneOverFails sends each limited field at exactly its
// documented maximum (accepted) and one unit over (INVALID_ARGUMENT/LIMIT_EXCEEDED).
func TestLimitsAtTheMaximumPassAndOneOverFails(t *testing.T) {
	e := unlimited(t)
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	// An account with the maximum of 16 devices.
	big := e.register(t, "big")
	for range auth.MaxDevices - 1 {
		e.link(t, big)
	}
	bigDevices := make([]uint32, 0, auth.MaxDevices)
	for _, d := range must(e.auth.ListDevices(big.ctx(t), &authv1.ListDevicesRequest{})).GetDevices() {
		bigDevices = append(bigDevices, d.GetDeviceId())
	}
	a, m := e.auth, e.msg
	gid := clientID()
	must(m.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(alice, bob), GroupInfo: []byte("gi")}))
	members := func(n int) []*commonv1.DeviceAddress {
		out := addrs(alice)
		for i := 1; len(out) < n; i++ {
			out = append(out, &commonv1.DeviceAddress{UserId: bob.UserID, DeviceId: uint32(i + 100)})
		}
		return out
	}
	ids := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = clientID()
		}
		return out
	}
	cases := []struct {
		name     string
		at, over func() error
	}{
		{"SendMessage.envelopes[].sealed_envelope 256 KiB", func() error {
			_, err := e.send(t, alice, bob, make([]byte, 256<<10))
			return err
		}, func() error {
			_, err := e.send(t, alice, bob, make([]byte, 256<<10+1))
			return err
		}},
		{"SendMessage.envelopes 16 items", func() error {
			_, err := e.send(t, alice, big, []byte("x"), bigDevices...)
			return err
		}, func() error {
			_, err := e.send(t, alice, big, []byte("x"), append(bigDevices, 1000)...)
			return err
		}},
		{"SendMessage.recipient_user_id 64 characters", func() error {
			_, err := m.SendMessage(alice.ctx(t), rawSend(strings.Repeat("u", 64)))
			if server.Reason(err) == "USER_NOT_FOUND" {
				return nil // past the limit check
			}
			return err
		}, func() error {
			_, err := m.SendMessage(alice.ctx(t), rawSend(strings.Repeat("u", 65)))
			return err
		}},
		{"AckMessages.message_ids 1000 items", func() error {
			_, err := m.AckMessages(alice.ctx(t), &messagingv1.AckMessagesRequest{MessageIds: ids(1000)})
			return err
		}, func() error {
			_, err := m.AckMessages(alice.ctx(t), &messagingv1.AckMessagesRequest{MessageIds: ids(1001)})
			return err
		}},
		{"CreateGroup.group_id 64 bytes", func() error {
			_, err := m.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: bytes.Repeat([]byte{1}, 64), Members: addrs(alice)})
			return err
		}, func() error {
			_, err := m.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: bytes.Repeat([]byte{2}, 65), Members: addrs(alice)})
			return err
		}},
		{"CreateGroup.members 1000 items and group_info 512 KiB", func() error {
			_, err := m.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: clientID(), Members: members(1000), GroupInfo: make([]byte, 512<<10)})
			if server.Reason(err) == "DEVICE_NOT_FOUND" {
				return nil // past the limit check: the members beyond alice do not exist
			}
			return err
		}, func() error {
			_, err := m.CreateGroup(alice.ctx(t), &messagingv1.CreateGroupRequest{GroupId: clientID(), Members: members(1001)})
			return err
		}},
		{"SubmitProposal.proposal 64 KiB", func() error {
			_, err := m.SubmitProposal(alice.ctx(t), &messagingv1.SubmitProposalRequest{GroupId: gid, Proposal: mlsframe.PrivateMessage(gid, 0, mlsframe.Proposal, 64<<10)})
			return err
		}, func() error {
			_, err := m.SubmitProposal(alice.ctx(t), &messagingv1.SubmitProposalRequest{GroupId: gid, Proposal: make([]byte, 64<<10+1)})
			return err
		}},
		{"UploadKeyPackages 100 items of 16 KiB", func() error {
			_, err := a.UploadKeyPackages(alice.ctx(t), &authv1.UploadKeyPackagesRequest{KeyPackages: times(100, make([]byte, 16<<10))})
			return err
		}, func() error {
			_, err := a.UploadKeyPackages(alice.ctx(t), &authv1.UploadKeyPackagesRequest{KeyPackages: [][]byte{make([]byte, 16<<10+1)}})
			return err
		}},
		{"UploadPreKeys.one_time_ec_prekeys 100 items", func() error {
			_, err := a.UploadPreKeys(alice.ctx(t), preKeyUpload(t, alice, keys.NewPreKeyStore(), true, 100))
			return err
		}, func() error {
			_, err := a.UploadPreKeys(alice.ctx(t), oneTimeECUpload(keys.NewPreKeyStore(), 101))
			return err
		}},
		{"GetKeyBundles.device_ids 16 items", func() error {
			_, err := a.GetKeyBundles(alice.ctx(t), &authv1.GetKeyBundlesRequest{UserId: big.UserID, DeviceIds: bigDevices})
			return err
		}, func() error {
			_, err := a.GetKeyBundles(alice.ctx(t), &authv1.GetKeyBundlesRequest{UserId: big.UserID, DeviceIds: append(bigDevices, 1)})
			return err
		}},
		{"Register.username 32 and device_name 60 characters", func() error {
			_, err := registerNamed(t, e, strings.Repeat("u", 32), strings.Repeat("d", 60))
			return err
		}, func() error {
			_, err := registerNamed(t, e, strings.Repeat("v", 32), strings.Repeat("d", 61))
			return err
		}},
		{"RefreshToken.refresh_token 1024 characters", func() error {
			_, err := a.RefreshToken(context.Background(), &authv1.RefreshTokenRequest{RefreshToken: strings.Repeat("r", 1024)})
			if server.Reason(err) == "REFRESH_TOKEN_INVALID" {
				return nil // past the limit check
			}
			return err
		}, func() error {
			_, err := a.RefreshToken(context.Background(), &authv1.RefreshTokenRequest{RefreshToken: strings.Repeat("r", 1025)})
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.at(); err != nil {
				t.Fatalf("at the maximum: %v", err)
			}
			wantErr(t, c.over(), codes.InvalidArgument, "LIMIT_EXCEEDED")
		})
	}
}

func rawSend(recipient string) *messagingv1.SendMessageRequest {
	return &messagingv1.SendMessageRequest{RecipientUserId: recipient, ClientMessageId: clientID(),
		Envelopes: []*messagingv1.DeviceEnvelope{{DeviceId: 1, SealedEnvelope: []byte("x")}}}
}

func registerNamed(t *testing.T, e *env, username, deviceName string) (*authv1.RegisterResponse, error) {
	t.Helper()
	id := must(keys.GenerateIdentity())
	ik := id.Public().Bytes()
	return e.auth.Register(context.Background(), &authv1.RegisterRequest{Username: username, IdentityKey: ik, DeviceName: deviceName,
		Signature: signWith(t, id, keys.ContextRegistration, auth.RegistrationStatement(username, ik))})
}

// TestPreKeyDrainIsRateLimited: one caller fetching a device's bundles in a loop gets
// RATE_LIMITED after the per-target burst, so it claims at most that many one-time
// prekeys; the pool keeps the rest.
func TestPreKeyDrainIsRateLimited(t *testing.T) {
	e := start(t) // the default policy
	alice, mallory := e.register(t, "alice"), e.register(t, "mallory")
	must(e.auth.UploadPreKeys(alice.ctx(t), preKeyUpload(t, alice, keys.NewPreKeyStore(), true, 100)))
	burst := platform.DefaultPolicy()["bundles-target"].Burst
	claimed := 0
	var err error
	for range 200 {
		var resp *authv1.GetKeyBundlesResponse
		resp, err = e.auth.GetKeyBundles(mallory.ctx(t), &authv1.GetKeyBundlesRequest{UserId: alice.UserID})
		if err != nil {
			break
		}
		for _, b := range resp.GetBundles() {
			if b.GetOneTimeEcPrekey() != nil {
				claimed++
			}
		}
	}
	wantErr(t, err, codes.ResourceExhausted, "RATE_LIMITED")
	if claimed > burst {
		t.Fatalf("mallory claimed %d one-time prekeys, more than the per-target burst of %d", claimed, burst)
	}
	counts := must(e.auth.GetPreKeyCounts(alice.ctx(t), &authv1.GetPreKeyCountsRequest{})).GetCounts()
	if got := int(counts.GetOneTimeEcPrekeys()); got != 100-claimed {
		t.Fatalf("alice has %d one-time EC prekeys left, want %d", got, 100-claimed)
	}
}

// TestReplayedLoginNonceFails: a nonce works once; replaying the same signed request, or
// a fresh signature over the same nonce, fails with CHALLENGE_EXPIRED.
func TestReplayedLoginNonceFails(t *testing.T) {
	e := start(t)
	alice := e.register(t, "alice")
	ctx := context.Background()
	ch := must(e.auth.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: "alice", DeviceId: alice.ID}))
	req := &authv1.LoginRequest{Username: "alice", DeviceId: alice.ID, Nonce: ch.GetNonce(),
		Signature: signWith(t, alice.Identity, keys.ContextLoginChallenge, auth.LoginStatement("alice", alice.ID, ch.GetNonce()))}
	must(e.auth.Login(ctx, req))
	_, err := e.auth.Login(ctx, req)
	wantErr(t, err, codes.Unauthenticated, "CHALLENGE_EXPIRED")
	req.Signature = signWith(t, alice.Identity, keys.ContextLoginChallenge, auth.LoginStatement("alice", alice.ID, ch.GetNonce()))
	_, err = e.auth.Login(ctx, req)
	wantErr(t, err, codes.Unauthenticated, "CHALLENGE_EXPIRED")

	// A failed attempt writes nothing and so leaves the nonce to the key's holder (a
	// guesser gains nothing from more tries: see docs/threat-model.md, login replay); the
	// holder's login then uses it up like any other.
	ch = must(e.auth.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: "alice", DeviceId: alice.ID}))
	_, err = e.auth.Login(ctx, &authv1.LoginRequest{Username: "alice", DeviceId: alice.ID, Nonce: ch.GetNonce(), Signature: []byte{0x30, 0}})
	wantErr(t, err, codes.Unauthenticated, "LOGIN_FAILED")
	req.Nonce = ch.GetNonce()
	req.Signature = signWith(t, alice.Identity, keys.ContextLoginChallenge, auth.LoginStatement("alice", alice.ID, ch.GetNonce()))
	must(e.auth.Login(ctx, req))
	_, err = e.auth.Login(ctx, req)
	wantErr(t, err, codes.Unauthenticated, "CHALLENGE_EXPIRED")
}

// TestRefreshAfterDeviceRemovalFails: a removed device's refresh token (never used, and
// one already rotated) no longer yields tokens.
func TestRefreshAfterDeviceRemovalFails(t *testing.T) {
	e := start(t)
	alice := e.register(t, "alice")
	phone := e.link(t, alice)
	ctx := context.Background()
	rotated := must(e.auth.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: phone.Tokens.GetRefreshToken()})).GetTokens()
	must(e.auth.RemoveDevice(alice.ctx(t), &authv1.RemoveDeviceRequest{DeviceId: phone.ID}))
	_, err := e.auth.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: rotated.GetRefreshToken()})
	wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
	// The removal also stopped the family: the old token is a reuse, not a way back in.
	_, err = e.auth.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: phone.Tokens.GetRefreshToken()})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("old refresh token of a removed device: %v", err)
	}
	// The access token from the rotation is dead too.
	_, err = e.auth.ListDevices(withAccessToken(t, rotated.GetAccessToken()), &authv1.ListDevicesRequest{})
	wantErr(t, err, codes.Unauthenticated, "DEVICE_REMOVED")
}

// withAccessToken is a context carrying a bare access token.
func withAccessToken(t *testing.T, access string) context.Context {
	d := &device{&rawdevice.Device{Tokens: &authv1.TokenPair{AccessToken: access}}}
	return d.ctx(t)
}

// TestAckOfAnotherDevicesIDsDoesNothing: acking message ids that belong to another
// device's inbox (another account's, or a sibling device's) deletes nothing there.
func TestAckOfAnotherDevicesIDsDoesNothing(t *testing.T) {
	e := start(t)
	alice, bob, mallory := e.register(t, "alice"), e.register(t, "bob"), e.register(t, "mallory")
	alice2 := e.link(t, alice)
	sent := must(e.send(t, bob, alice, []byte("for both"), alice.ID, alice2.ID))
	var ids [][]byte
	for _, s := range sent.GetStored() {
		ids = append(ids, s.GetMessageId())
	}
	must(e.msg.AckMessages(mallory.ctx(t), &messagingv1.AckMessagesRequest{MessageIds: ids}))
	must(e.msg.AckMessages(alice2.ctx(t), &messagingv1.AckMessagesRequest{MessageIds: ids[:1]})) // alice's copy, from alice2
	r := e.receive(t, alice)
	if d := r.next(t); string(d.GetPayload()) != "for both" || !bytes.Equal(d.GetMessageId(), ids[0]) {
		t.Fatalf("alice got %v", d)
	}
	r2 := e.receive(t, alice2)
	if d := r2.next(t); string(d.GetPayload()) != "for both" || !bytes.Equal(d.GetMessageId(), ids[1]) {
		t.Fatalf("alice2 got %v", d)
	}
}

// TestConcurrentCommitsHaveOneWinner: ten members submit a commit for the same epoch at
// once; exactly one is accepted and nine get ABORTED/EPOCH_CONFLICT naming epoch 1.
func TestConcurrentCommitsHaveOneWinner(t *testing.T) {
	e := unlimited(t)
	const n = 10
	members := make([]*device, n)
	for i := range members {
		members[i] = e.register(t, fmt.Sprintf("member%d", i))
	}
	gid := clientID()
	must(e.msg.CreateGroup(members[0].ctx(t), &messagingv1.CreateGroupRequest{GroupId: gid, Members: addrs(members...), GroupInfo: []byte("gi0")}))
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, d := range members {
		ctx := d.ctx(t)
		wg.Go(func() {
			<-start
			_, errs[i] = e.msg.SubmitCommit(ctx, &messagingv1.SubmitCommitRequest{GroupId: gid, Epoch: 0,
				Commit: mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 100+i), GroupInfo: fmt.Appendf(nil, "gi1 by %d", i)})
		})
	}
	close(start)
	wg.Wait()
	winners := 0
	winner := -1
	for i, err := range errs {
		if err == nil {
			winners++
			winner = i
			continue
		}
		wantErr(t, err, codes.Aborted, "EPOCH_CONFLICT")
		var conflict *messagingv1.EpochConflict
		for _, d := range status.Convert(err).Details() {
			if c, ok := d.(*messagingv1.EpochConflict); ok {
				conflict = c
			}
		}
		if conflict.GetCurrentEpoch() != 1 {
			t.Fatalf("conflict detail names epoch %d, want 1", conflict.GetCurrentEpoch())
		}
	}
	if winners != 1 {
		t.Fatalf("%d commits won epoch 0, want exactly 1 (errors %v)", winners, errs)
	}
	info := must(e.msg.GetGroupInfo(members[0].ctx(t), &messagingv1.GetGroupInfoRequest{GroupId: gid}))
	if info.GetEpoch() != 1 || string(info.GetGroupInfo()) != fmt.Sprintf("gi1 by %d", winner) {
		t.Fatalf("group at epoch %d with %q, want epoch 1 with the winner's GroupInfo", info.GetEpoch(), info.GetGroupInfo())
	}
	// Every other member got exactly the winning commit.
	for i, d := range members {
		if i == winner {
			continue
		}
		r := e.receive(t, d)
		got := r.next(t)
		if got.GetKind() != messagingv1.DeliveryKind_DELIVERY_KIND_GROUP_COMMIT || !bytes.Equal(got.GetPayload(), mlsframe.PrivateMessage(gid, 0, mlsframe.Commit, 100+winner)) {
			t.Fatalf("member %d got %v, want the winning commit", i, got)
		}
		<-r.backlog
		r.none(t, 50*time.Millisecond)
		r.cancel()
	}
}
