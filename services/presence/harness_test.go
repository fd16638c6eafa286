package presence_test

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/server"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
	"github.com/guardyn/guardyn/services/presence"
)

var quiet = slog.New(slog.DiscardHandler)

// notRevoked is the revocation check of tests that remove no device.
type notRevoked struct{}

func (notRevoked) IsDeviceRevoked(context.Context, string, uint32) (bool, error) { return false, nil }

// env is one presence service over real gRPC on loopback, with embedded NATS JetStream and
// an embedded kv store on disk.
type env struct {
	client presencev1.PresenceServiceClient
	svc    *presence.Server
	bus    *bus.Bus
	issuer *authn.Issuer
	dir    string
	addr   string // the gRPC address
}

type presenceConfig = presence.Config

type options struct {
	ttl     time.Duration
	tune    func(*presenceConfig)
	busOnly *bus.Bus // share another env's bus (a second instance)
}

func start(t testing.TB, o options) *env {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := o.busOnly
	if b == nil {
		var err error
		b, err = bus.StartEmbedded(ctx, filepath.Join(dir, "nats"), bus.EmbeddedOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
	}
	store, err := embedded.Open(filepath.Join(dir, "kv.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	bucket, err := b.PresenceBucket(ctx, o.ttl)
	if err != nil {
		t.Fatal(err)
	}
	cfg := presence.Config{Store: store, Bucket: bucket, Conn: b.Conn(), Logger: quiet}
	if o.tune != nil {
		o.tune(&cfg)
	}
	svc, err := presence.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })

	seed := make([]byte, ed25519.SeedSize)
	key := ed25519.NewKeyFromSeed(seed)
	issuer, err := authn.NewIssuer(key, time.Hour, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := authn.NewVerifier(authn.VerifierConfig{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, Revocations: notRevoked{}, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	limits, err := protolimits.FromAPI()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Register: func(r grpc.ServiceRegistrar) { presencev1.RegisterPresenceServiceServer(r, svc) },
		Auth:     authn.NewInterceptor(verifier),
		Validate: server.FieldLimits(limits),
		Ready:    svc.Ready,
		Logger:   quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	waitReady(t, svc)
	return &env{client: presencev1.NewPresenceServiceClient(conn), svc: svc, bus: b, issuer: issuer, dir: dir, addr: srv.GRPCAddr().String()}
}

func waitReady(t testing.TB, svc *presence.Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for svc.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("presence service never read its bucket")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// as returns a context carrying an access token of user's device.
func (e *env) as(t testing.TB, user string, device uint32) context.Context {
	t.Helper()
	tok, _, err := e.issuer.Issue(user, device, [16]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// everyone lets every account see user's presence.
func (e *env) everyone(t testing.TB, user string) {
	t.Helper()
	must(e.client.SetPresencePrivacy(e.as(t, user, 1), &presencev1.SetPresencePrivacyRequest{Visibility: presencev1.PresenceVisibility_PRESENCE_VISIBILITY_EVERYONE}))
}

// watcher reads a WatchPresence stream in the background.
type watcher struct {
	updates chan *presencev1.Presence
	errs    chan error
}

func (e *env) watch(t testing.TB, viewer string, users ...string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(e.as(t, viewer, 1))
	t.Cleanup(cancel)
	s, err := e.client.WatchPresence(ctx, &presencev1.WatchPresenceRequest{UserIds: users})
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{updates: make(chan *presencev1.Presence, 1024), errs: make(chan error, 1)}
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				w.errs <- err
				return
			}
			w.updates <- r.GetPresence()
		}
	}()
	return w
}

// next returns the next update whose status is want, failing after within.
func (w *watcher) next(t testing.TB, want presencev1.PresenceStatus, within time.Duration) *presencev1.Presence {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case p := <-w.updates:
			if p.GetStatus() == want {
				return p
			}
		case err := <-w.errs:
			t.Fatalf("watch ended waiting for %v: %v", want, err)
		case <-timeout:
			t.Fatalf("no %v within %v", want, within)
		}
	}
}
