package auth_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
	"github.com/guardyn/guardyn/services/auth"
)

// recordedEvents captures what the service publishes.
type recordedEvents struct {
	mu      sync.Mutex
	removed []string
	low     []uint32
	deleted []string
	changed int
	// down makes DeviceRemoved and AccountDeleted fail, as an unreachable bus would.
	down bool
}

func (r *recordedEvents) DevicesChanged(context.Context, string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changed++
	return nil
}
func (r *recordedEvents) DeviceRemoved(_ context.Context, u string, d uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errors.New("bus unreachable")
	}
	r.removed = append(r.removed, u)
	return nil
}
func (r *recordedEvents) AccountDeleted(_ context.Context, u string, _ []uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errors.New("bus unreachable")
	}
	r.deleted = append(r.deleted, u)
	return nil
}
func (r *recordedEvents) PreKeysLow(_ context.Context, _ string, d uint32, _, _ int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.low = append(r.low, d)
	return nil
}

var quiet = slog.New(slog.DiscardHandler)

// env is one auth service over real gRPC on loopback with an embedded store on disk.
type env struct {
	client authv1.AuthServiceClient
	svc    *auth.Server
	store  kv.Store
	events *recordedEvents
	clock  *clock
	dir    string
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newEnv(t *testing.T, limits auth.Limiter) *env {
	t.Helper()
	return newEnvWrapped(t, limits, nil)
}

// newEnvWrapped is newEnv with the service's store wrapped by wrap (nil: unwrapped).
func newEnvWrapped(t *testing.T, limits auth.Limiter, wrap func(kv.Store) kv.Store) *env {
	t.Helper()
	dir := t.TempDir()
	var store kv.Store
	store, err := embedded.Open(filepath.Join(dir, embedded.FileName), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if wrap != nil {
		store = wrap(store)
	}
	_, tokenKey, _ := ed25519.GenerateKey(nil)
	_, certKey, _ := ed25519.GenerateKey(nil)
	clk := &clock{t: time.Now()}
	events := &recordedEvents{}
	svc, err := auth.New(auth.Config{
		Store: store, TokenKey: tokenKey, CertificateKey: certKey,
		Events: events, Limits: limits, Now: clk.Now, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := authn.NewVerifier(authn.VerifierConfig{
		Keys: []ed25519.PublicKey{svc.TokenPublicKey()}, Now: clk.Now, Revocations: svc, CacheSize: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	limitsCheck, err := protolimits.FromAPI()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Logger: quiet,
		Register: func(r grpc.ServiceRegistrar) { authv1.RegisterAuthServiceServer(r, svc) },
		Auth:     authn.NewInterceptor(verifier, auth.PublicMethods()...),
		Validate: func(m any) error {
			if pm, ok := m.(proto.Message); ok {
				if err := limitsCheck.Check(pm); err != nil {
					var le *protolimits.LimitError
					if errors.As(err, &le) {
						return server.Error(3, "LIMIT_EXCEEDED", "%v", err)
					}
					return err
				}
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{client: authv1.NewAuthServiceClient(conn), svc: svc, store: store, events: events, clock: clk, dir: dir}
}

// device is a client device with its identity and tokens.
type device struct {
	username string
	userID   string
	id       uint32
	identity *keys.Identity
	prekeys  *keys.PreKeyStore
	tokens   *authv1.TokenPair
}

func (d *device) ctx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+d.tokens.GetAccessToken())
}

func sign(t *testing.T, id *keys.Identity, c keys.Context, msg []byte) []byte {
	t.Helper()
	sig, err := id.Sign(c, msg)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func (e *env) register(t *testing.T, username string) *device {
	t.Helper()
	id, err := keys.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ik := id.Public().Bytes()
	resp, err := e.client.Register(context.Background(), &authv1.RegisterRequest{
		Username: username, IdentityKey: ik, DeviceName: "laptop",
		Signature: sign(t, id, keys.ContextRegistration, auth.RegistrationStatement(username, ik)),
	})
	if err != nil {
		t.Fatalf("register %s: %v", username, err)
	}
	d := &device{username: username, userID: resp.GetUserId(), id: resp.GetDeviceId(), identity: id, prekeys: keys.NewPreKeyStore()}
	e.login(t, d)
	return d
}

func (e *env) login(t *testing.T, d *device) {
	t.Helper()
	if err := e.tryLogin(d); err != nil {
		t.Fatalf("login %s/%d: %v", d.username, d.id, err)
	}
}

func (e *env) tryLogin(d *device) error {
	ch, err := e.client.GetLoginChallenge(context.Background(), &authv1.GetLoginChallengeRequest{Username: d.username, DeviceId: d.id})
	if err != nil {
		return err
	}
	sig, err := d.identity.Sign(keys.ContextLoginChallenge, auth.LoginStatement(d.username, d.id, ch.GetNonce()))
	if err != nil {
		return err
	}
	resp, err := e.client.Login(context.Background(), &authv1.LoginRequest{Username: d.username, DeviceId: d.id, Nonce: ch.GetNonce(), Signature: sig})
	if err != nil {
		return err
	}
	d.userID, d.tokens = resp.GetUserId(), resp.GetTokens()
	return nil
}

// uploadPreKeys generates and uploads a signed prekey, a last-resort key and n one-time
// keys of each kind.
func (e *env) uploadPreKeys(t *testing.T, d *device, n int) *authv1.UploadPreKeysResponse {
	t.Helper()
	req := &authv1.UploadPreKeysRequest{}
	spk, err := d.prekeys.GenerateSignedPreKey(d.identity, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req.SignedEcPrekey = &authv1.SignedEcPreKey{Id: spk.ID, CreatedAt: spk.Created.Unix(), PublicKey: spk.Key.Bytes(), Signature: spk.Signature}
	lrk, err := d.prekeys.GenerateLastResortKEMPreKey(d.identity, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req.LastResortKemPrekey = &authv1.SignedKemPreKey{Id: lrk.ID, CreatedAt: lrk.Created.Unix(), PublicKey: lrk.Key.Bytes(), Signature: lrk.Signature}
	otks, err := d.prekeys.GenerateOneTimePreKeys(n)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range otks {
		req.OneTimeEcPrekeys = append(req.OneTimeEcPrekeys, &authv1.EcPreKey{Id: k.ID, PublicKey: k.Key.Bytes()})
	}
	kems, err := d.prekeys.GenerateKEMPreKeys(d.identity, n, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kems {
		req.OneTimeKemPrekeys = append(req.OneTimeKemPrekeys, &authv1.SignedKemPreKey{Id: k.ID, CreatedAt: k.Created.Unix(), PublicKey: k.Key.Bytes(), Signature: k.Signature})
	}
	resp, err := e.client.UploadPreKeys(d.ctx(), req)
	if err != nil {
		t.Fatalf("upload prekeys: %v", err)
	}
	return resp
}
