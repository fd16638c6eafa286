package auth_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
	"github.com/guardyn/guardyn/services/auth"
)

// fuzzIdentity derives a fixed identity from a label, so every fuzz worker process signs
// with the same keys and seeds stay valid across processes.
func fuzzIdentity(tb testing.TB, label string) *keys.Identity {
	tb.Helper()
	for i := byte(0); ; i++ {
		scalar := sha256.Sum256(append([]byte("guardyn fuzz identity "+label), i))
		if id, err := keys.NewIdentity(scalar[:]); err == nil {
			return id
		}
	}
}

// fuzzPreKeys returns deterministic public prekeys: a P-256 point and an ML-KEM-768
// encapsulation key per index.
func fuzzECKey(tb testing.TB, i byte) []byte {
	tb.Helper()
	for j := byte(0); ; j++ {
		seed := sha256.Sum256([]byte{'e', 'c', i, j})
		if k, err := ecdh.P256().NewPrivateKey(seed[:]); err == nil {
			return k.PublicKey().Bytes()
		}
	}
}

func fuzzKEMKey(tb testing.TB, i byte) []byte {
	tb.Helper()
	seed := bytes.Repeat([]byte{i}, mlkem.SeedSize)
	dk, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil {
		tb.Fatal(err)
	}
	return dk.EncapsulationKey().Bytes()
}

func signedECStatement(id uint32, created int64, pub []byte) []byte {
	b := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, id), uint64(created))
	return append(b, pub...)
}

func kemStatement(id uint32, lastResort bool, created int64, pub []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, id)
	flag := byte(0)
	if lastResort {
		flag = 1
	}
	b = binary.BigEndian.AppendUint64(append(b, flag, 1), uint64(created))
	return append(b, pub...)
}

// fuzzCreated is the creation time of the seed prekeys (2027-01-15).
const fuzzCreated = 1_800_000_000

// handlerEnv is one auth Server called in process: the embedded kv store in a temp dir
// and a real embedded NATS (libs/bus) carrying its events. Authenticated calls carry an
// authn.Principal put in the context with authn.NewContext, standing in for the
// interceptor; the field-limit validator runs first, as the gRPC server does.
type handlerEnv struct {
	svc      *auth.Server
	store    kv.Store
	limits   server.Validator
	alice    *keys.Identity // device 1 of "alice", the authenticated caller
	newcomer *keys.Identity // signs registrations and device links
	users    map[string]string
}

func newHandlerEnv(tb testing.TB) *handlerEnv {
	tb.Helper()
	dir := tb.TempDir()
	ctx := context.Background()
	store, err := embedded.Open(filepath.Join(dir, embedded.FileName), embedded.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	b, err := bus.StartEmbedded(ctx, filepath.Join(dir, "nats"), bus.EmbeddedOptions{Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	events, err := auth.NewBusEvents(ctx, b)
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := auth.New(auth.Config{
		Store: store, Events: events, Logger: quiet,
		TokenKey:       ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)),
		CertificateKey: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	fieldLimits, err := protolimits.FromAPI()
	if err != nil {
		tb.Fatal(err)
	}
	e := &handlerEnv{
		svc: svc, store: store, limits: server.FieldLimits(fieldLimits),
		alice: fuzzIdentity(tb, "alice"), newcomer: fuzzIdentity(tb, "newcomer"), users: map[string]string{},
	}
	for name, id := range map[string]*keys.Identity{"alice": e.alice, "bob": fuzzIdentity(tb, "bob")} {
		ik := id.Public().Bytes()
		resp, err := svc.Register(ctx, &authv1.RegisterRequest{
			Username: name, IdentityKey: ik, DeviceName: "fuzz",
			Signature: mustSign(tb, id, keys.ContextRegistration, auth.RegistrationStatement(name, ik)),
		})
		if err != nil {
			tb.Fatalf("register %s: %v", name, err)
		}
		e.users["@"+name] = resp.GetUserId()
		p := authn.Principal{UserID: resp.GetUserId(), DeviceID: resp.GetDeviceId()}
		if _, err := svc.UploadPreKeys(authn.NewContext(ctx, p), e.resignPreKeys(tb, id, validPreKeys(tb, 0))); err != nil {
			tb.Fatalf("upload %s's prekeys: %v", name, err)
		}
	}
	return e
}

func mustSign(tb testing.TB, id *keys.Identity, c keys.Context, msg []byte) []byte {
	tb.Helper()
	sig, err := id.Sign(c, msg)
	if err != nil {
		tb.Fatal(err)
	}
	return sig
}

// validPreKeys is an upload whose signatures resignPreKeys fills in; ids start at base.
func validPreKeys(tb testing.TB, base uint32) *authv1.UploadPreKeysRequest {
	tb.Helper()
	req := &authv1.UploadPreKeysRequest{
		SignedEcPrekey:      &authv1.SignedEcPreKey{Id: base, PublicKey: fuzzECKey(tb, 0), CreatedAt: fuzzCreated},
		LastResortKemPrekey: &authv1.SignedKemPreKey{Id: base, PublicKey: fuzzKEMKey(tb, 0), CreatedAt: fuzzCreated},
	}
	for i := range uint32(3) {
		req.OneTimeEcPrekeys = append(req.OneTimeEcPrekeys, &authv1.EcPreKey{Id: base + 1 + i, PublicKey: fuzzECKey(tb, byte(i+1))})
		req.OneTimeKemPrekeys = append(req.OneTimeKemPrekeys, &authv1.SignedKemPreKey{Id: base + 1 + i, PublicKey: fuzzKEMKey(tb, byte(i+1)), CreatedAt: fuzzCreated})
	}
	return req
}

// resignPreKeys signs every prekey of req with id, whatever its bytes, so the fuzzer gets
// past signature checks to the checks behind them.
func (e *handlerEnv) resignPreKeys(tb testing.TB, id *keys.Identity, req *authv1.UploadPreKeysRequest) *authv1.UploadPreKeysRequest {
	tb.Helper()
	if k := req.GetSignedEcPrekey(); k != nil {
		k.Signature = mustSign(tb, id, keys.ContextSignedPreKey, signedECStatement(k.GetId(), k.GetCreatedAt(), k.GetPublicKey()))
	}
	if k := req.GetLastResortKemPrekey(); k != nil {
		k.Signature = mustSign(tb, id, keys.ContextKEMPreKey, kemStatement(k.GetId(), true, k.GetCreatedAt(), k.GetPublicKey()))
	}
	for _, k := range req.GetOneTimeKemPrekeys() {
		k.Signature = mustSign(tb, id, keys.ContextKEMPreKey, kemStatement(k.GetId(), false, k.GetCreatedAt(), k.GetPublicKey()))
	}
	return req
}

// asAlice is the context of a call authenticated as alice's device 1.
func (e *handlerEnv) asAlice() context.Context {
	return authn.NewContext(context.Background(), authn.Principal{UserID: e.users["@alice"], DeviceID: 1})
}

// snapshot copies every key of the service.
func (e *handlerEnv) snapshot(tb testing.TB) map[string]string {
	tb.Helper()
	out := map[string]string{}
	err := e.store.View(context.Background(), func(tx kv.Tx) error {
		pairs, err := kv.ScanPrefix(tx, []byte("auth/"), 0)
		for _, p := range pairs {
			out[string(p.Key)] = string(p.Value)
		}
		return err
	})
	if err != nil {
		tb.Fatalf("snapshot: %v", err)
	}
	return out
}

var tokenReasons = []string{"TOKEN_MISSING", "TOKEN_INVALID", "TOKEN_EXPIRED", "DEVICE_REMOVED"}

// authRPCs are the fuzzed methods with the reasons their proto documents.
var authRPCs = []struct {
	name    string
	newReq  func() proto.Message
	reasons []string
}{
	{"Register", func() proto.Message { return &authv1.RegisterRequest{} },
		[]string{"INVALID_USERNAME", "INVALID_IDENTITY_KEY", "BAD_SIGNATURE", "MALFORMED_REQUEST", "LIMIT_EXCEEDED", "USERNAME_TAKEN", "RATE_LIMITED"}},
	{"Login", func() proto.Message { return &authv1.LoginRequest{} },
		[]string{"MALFORMED_REQUEST", "LIMIT_EXCEEDED", "LOGIN_FAILED", "CHALLENGE_EXPIRED", "RATE_LIMITED"}},
	{"StartDeviceLink", func() proto.Message { return &authv1.StartDeviceLinkRequest{} },
		[]string{"INVALID_USERNAME", "INVALID_IDENTITY_KEY", "BAD_SIGNATURE", "MALFORMED_REQUEST", "LIMIT_EXCEEDED", "RATE_LIMITED"}},
	{"UploadPreKeys", func() proto.Message { return &authv1.UploadPreKeysRequest{} },
		append([]string{"LIMIT_EXCEEDED", "INVALID_PREKEY", "BAD_PREKEY_SIGNATURE", "DUPLICATE_PREKEY_ID", "NO_SIGNED_PREKEY", "PREKEY_LIMIT_REACHED", "RATE_LIMITED"}, tokenReasons...)},
	{"GetKeyBundles", func() proto.Message { return &authv1.GetKeyBundlesRequest{} },
		append([]string{"LIMIT_EXCEEDED", "USER_NOT_FOUND", "DEVICE_NOT_FOUND", "RATE_LIMITED"}, tokenReasons...)},
	{"UploadKeyPackages", func() proto.Message { return &authv1.UploadKeyPackagesRequest{} },
		append([]string{"LIMIT_EXCEEDED", "MALFORMED_REQUEST", "KEY_PACKAGE_LIMIT_REACHED", "RATE_LIMITED"}, tokenReasons...)},
	{"RefreshToken", func() proto.Message { return &authv1.RefreshTokenRequest{} },
		[]string{"LIMIT_EXCEEDED", "REFRESH_TOKEN_INVALID", "REFRESH_TOKEN_EXPIRED", "REFRESH_TOKEN_REUSED", "DEVICE_REMOVED", "RATE_LIMITED"}},
	{"ClaimKeyPackages", func() proto.Message { return &authv1.ClaimKeyPackagesRequest{} },
		append([]string{"LIMIT_EXCEEDED", "USER_NOT_FOUND", "RATE_LIMITED"}, tokenReasons...)},
}

// reasonCodes is the one gRPC code of each reason (common.proto, docs/api.md).
var reasonCodes = map[string]codes.Code{
	"LIMIT_EXCEEDED": codes.InvalidArgument, "MALFORMED_REQUEST": codes.InvalidArgument,
	"RATE_LIMITED": codes.ResourceExhausted, "INVALID_USERNAME": codes.InvalidArgument,
	"INVALID_IDENTITY_KEY": codes.InvalidArgument, "BAD_SIGNATURE": codes.InvalidArgument,
	"USERNAME_TAKEN": codes.AlreadyExists, "LOGIN_FAILED": codes.Unauthenticated,
	"CHALLENGE_EXPIRED": codes.Unauthenticated, "INVALID_PREKEY": codes.InvalidArgument,
	"BAD_PREKEY_SIGNATURE": codes.InvalidArgument, "DUPLICATE_PREKEY_ID": codes.InvalidArgument,
	"NO_SIGNED_PREKEY": codes.FailedPrecondition, "PREKEY_LIMIT_REACHED": codes.ResourceExhausted,
	"USER_NOT_FOUND": codes.NotFound, "DEVICE_NOT_FOUND": codes.NotFound,
	"KEY_PACKAGE_LIMIT_REACHED": codes.ResourceExhausted,
	"TOKEN_MISSING":             codes.Unauthenticated, "TOKEN_INVALID": codes.Unauthenticated,
	"TOKEN_EXPIRED": codes.Unauthenticated, "DEVICE_REMOVED": codes.Unauthenticated,
	"REFRESH_TOKEN_INVALID": codes.Unauthenticated, "REFRESH_TOKEN_EXPIRED": codes.Unauthenticated,
	"REFRESH_TOKEN_REUSED": codes.Unauthenticated,
}

// prepare makes a fuzzed request usable: "@alice" and "@bob" user ids become the real
// (per-process, random) ids, and with resign set every proof is recomputed with the
// harness keys (Login first fetches a fresh challenge), so mutations of the signed fields
// reach the checks behind the signatures.
func (e *handlerEnv) prepare(t *testing.T, req proto.Message, resign bool) {
	switch r := req.(type) {
	case *authv1.GetKeyBundlesRequest:
		if id, ok := e.users[r.GetUserId()]; ok {
			r.UserId = id
		}
	case *authv1.ClaimKeyPackagesRequest:
		if id, ok := e.users[r.GetUserId()]; ok {
			r.UserId = id
		}
	case *authv1.RegisterRequest:
		if resign {
			r.IdentityKey = e.newcomer.Public().Bytes()
			r.Signature = mustSign(t, e.newcomer, keys.ContextRegistration, auth.RegistrationStatement(r.GetUsername(), r.GetIdentityKey()))
		}
	case *authv1.StartDeviceLinkRequest:
		if resign {
			r.IdentityKey = e.newcomer.Public().Bytes()
			r.Signature = mustSign(t, e.newcomer, keys.ContextDeviceLink, auth.DeviceLinkStatement(r.GetUsername(), r.GetIdentityKey(), r.GetDeviceName()))
		}
	case *authv1.LoginRequest:
		if resign {
			ch, err := e.svc.GetLoginChallenge(context.Background(), &authv1.GetLoginChallengeRequest{Username: r.GetUsername(), DeviceId: r.GetDeviceId()})
			if err == nil {
				r.Nonce = ch.GetNonce()
				r.Signature = mustSign(t, e.alice, keys.ContextLoginChallenge, auth.LoginStatement(r.GetUsername(), r.GetDeviceId(), r.GetNonce()))
			}
		}
	case *authv1.UploadPreKeysRequest:
		if resign {
			e.resignPreKeys(t, e.alice, r)
		}
	}
}

// call runs one request through the field-limit validator and the handler.
func (e *handlerEnv) call(req proto.Message) error {
	if err := e.limits(req); err != nil {
		return err
	}
	var err error
	switch r := req.(type) {
	case *authv1.RegisterRequest:
		_, err = e.svc.Register(context.Background(), r)
	case *authv1.LoginRequest:
		_, err = e.svc.Login(context.Background(), r)
	case *authv1.StartDeviceLinkRequest:
		_, err = e.svc.StartDeviceLink(context.Background(), r)
	case *authv1.UploadPreKeysRequest:
		_, err = e.svc.UploadPreKeys(e.asAlice(), r)
	case *authv1.GetKeyBundlesRequest:
		_, err = e.svc.GetKeyBundles(e.asAlice(), r)
	case *authv1.UploadKeyPackagesRequest:
		_, err = e.svc.UploadKeyPackages(e.asAlice(), r)
	case *authv1.RefreshTokenRequest:
		_, err = e.svc.RefreshToken(context.Background(), r)
	case *authv1.ClaimKeyPackagesRequest:
		_, err = e.svc.ClaimKeyPackages(e.asAlice(), r)
	}
	return err
}

// authSeeds are valid and near-valid requests, by index into authRPCs. Signatures are
// filled in by the harness when the resign flag is set.
func authSeeds(tb testing.TB) map[int][]proto.Message {
	ik := bytes.Repeat([]byte{4}, 65)
	return map[int][]proto.Message{
		0: {
			&authv1.RegisterRequest{Username: "carol", IdentityKey: ik, DeviceName: "phone", Signature: []byte{0x30, 0x06}},
			&authv1.RegisterRequest{Username: "alice", IdentityKey: ik, DeviceName: "phone"},
			&authv1.RegisterRequest{Username: "Bad!", DeviceName: "\x01"},
		},
		1: {
			&authv1.LoginRequest{Username: "alice", DeviceId: 1, Nonce: make([]byte, 32), Signature: []byte{1}},
			&authv1.LoginRequest{Username: "bob", DeviceId: 1, Nonce: make([]byte, 32), Signature: []byte{1}},
			&authv1.LoginRequest{Username: "alice", DeviceId: 9, Nonce: make([]byte, 31)},
		},
		2: {
			&authv1.StartDeviceLinkRequest{Username: "alice", IdentityKey: ik, DeviceName: "tablet", Signature: []byte{1}},
			&authv1.StartDeviceLinkRequest{Username: "nobody", IdentityKey: ik, DeviceName: "tablet"},
		},
		3: {
			validPreKeys(tb, 100),
			&authv1.UploadPreKeysRequest{OneTimeEcPrekeys: []*authv1.EcPreKey{{Id: 500, PublicKey: fuzzECKey(tb, 9)}, {Id: 500, PublicKey: fuzzECKey(tb, 9)}}},
			&authv1.UploadPreKeysRequest{SignedEcPrekey: &authv1.SignedEcPreKey{Id: 1, PublicKey: ik}},
		},
		4: {
			&authv1.GetKeyBundlesRequest{UserId: "@bob"},
			&authv1.GetKeyBundlesRequest{UserId: "@bob", DeviceIds: []uint32{1}},
			&authv1.GetKeyBundlesRequest{UserId: "@alice", DeviceIds: []uint32{1, 2}},
			&authv1.GetKeyBundlesRequest{UserId: "nobody"},
		},
		5: {
			&authv1.UploadKeyPackagesRequest{KeyPackages: [][]byte{[]byte("kp1"), []byte("kp2")}},
			&authv1.UploadKeyPackagesRequest{KeyPackages: [][]byte{{}}},
		},
		6: {
			&authv1.RefreshTokenRequest{RefreshToken: "forged"},
			&authv1.RefreshTokenRequest{RefreshToken: base64.RawURLEncoding.EncodeToString(make([]byte, 48))},
			&authv1.RefreshTokenRequest{RefreshToken: base64.RawURLEncoding.EncodeToString(make([]byte, 47)) + "="},
		},
		7: {
			&authv1.ClaimKeyPackagesRequest{UserId: "@bob"},
			&authv1.ClaimKeyPackagesRequest{UserId: "nobody"},
		},
	}
}

// FuzzAuthHandlers unmarshals fuzz bytes into a request of one of six RPCs and calls the
// real handler in process (authenticated RPCs as alice/1 through authn.NewContext, in
// place of the interceptor). It asserts that nothing panics, that every error is a gRPC
// status with a documented reason and that reason's code, and that a rejected request
// changes no stored key (a failed Login included: only a successful one records its nonce).
func FuzzAuthHandlers(f *testing.F) {
	for i, reqs := range authSeeds(f) {
		for _, r := range reqs {
			b, err := proto.Marshal(r)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint8(i), true, b)
			f.Add(uint8(i), false, b)
		}
	}
	e := newHandlerEnv(f)
	f.Fuzz(func(t *testing.T, which uint8, resign bool, data []byte) {
		rpc := authRPCs[int(which)%len(authRPCs)]
		req := rpc.newReq()
		if proto.Unmarshal(data, req) != nil {
			return // the gRPC codec rejects it before any handler runs
		}
		e.prepare(t, req, resign)
		before := e.snapshot(t)
		err := e.call(req)
		if err == nil {
			return
		}
		st, ok := status.FromError(err)
		if !ok {
			t.Fatalf("%s returned a non-status error %T: %v", rpc.name, err, err)
		}
		reason := server.Reason(err)
		if !slices.Contains(rpc.reasons, reason) {
			t.Fatalf("%s returned %v/%q (%s), not a documented reason %v", rpc.name, st.Code(), reason, st.Message(), rpc.reasons)
		}
		if want := reasonCodes[reason]; st.Code() != want {
			t.Fatalf("%s returned reason %s with code %v, want %v", rpc.name, reason, st.Code(), want)
		}
		after := e.snapshot(t)
		if reason == "REFRESH_TOKEN_REUSED" {
			return // a reused token deletes its session, as documented
		}
		if !maps.Equal(before, after) {
			t.Fatalf("%s rejected with %v but changed the store: %d keys before, %d after", rpc.name, err, len(before), len(after))
		}
	})
}
