package notification_test

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/kv/embedded"
	"github.com/guardyn/guardyn/libs/server"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
	"github.com/guardyn/guardyn/services/notification"
	"github.com/guardyn/guardyn/services/notification/notificationtest"
)

var quiet = slog.New(slog.DiscardHandler)

type notRevoked struct{}

func (notRevoked) IsDeviceRevoked(context.Context, string, uint32) (bool, error) { return false, nil }

// fakeDNS answers fixed addresses, so registration checks run without a network.
type fakeDNS map[string][]netip.Addr

func (f fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &netError{host}
}

type netError struct{ host string }

func (e *netError) Error() string { return "no such host " + e.host }

// env is one notification service over real gRPC on loopback, with embedded NATS
// JetStream and an embedded kv store on disk, pushing to local protocol servers.
type env struct {
	client notificationv1.NotificationServiceClient
	svc    *notification.Server
	bus    *bus.Bus
	issuer *authn.Issuer
	web    *notificationtest.WebPushServer
	apns   *apnsServer
	fcm    *fcmServer
	counts *recordedMetrics
}

// recordedMetrics counts what the service reports, by "provider" and "provider/reason".
type recordedMetrics struct {
	mu     sync.Mutex
	sent   map[string]int
	failed map[string]int
}

func (m *recordedMetrics) Sent(provider string, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent[provider]++
}

func (m *recordedMetrics) Failed(provider, reason string, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failed[provider+"/"+reason]++
}

func (m *recordedMetrics) get(sent bool, key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if sent {
		return m.sent[key]
	}
	return m.failed[key]
}

func start(t testing.TB, tune func(*notification.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.StartEmbedded(ctx, filepath.Join(dir, "nats"), bus.EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	store, err := embedded.Open(filepath.Join(dir, "kv.db"), embedded.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	wp, web := newWebPush(t)
	ap, apnsSrv := newAPNs(t)
	fcmSrv := newFCMServer(t)
	fcm := must(notification.NewFCM(notification.FCMConfig{ServiceAccountJSON: fcmSrv.serviceAccount(), Endpoint: fcmSrv.URL, HTTP: trust(fcmSrv.Server)}))
	presence := must(b.PresenceBucket(ctx, 0))
	counts := &recordedMetrics{sent: map[string]int{}, failed: map[string]int{}}
	cfg := notification.Config{
		Metrics: counts,
		Store:   store, WebPush: wp, APNs: ap, FCM: fcm, Presence: presence,
		AllowPrivateEndpoints: true, Logger: quiet,
		RetryDelay: 20 * time.Millisecond, MaxRetryDelay: 100 * time.Millisecond, MaxAttempts: 3,
		Resolver: fakeDNS{
			"push.example":      {netip.MustParseAddr("93.184.215.14")},
			"rebind.example":    {netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("10.1.2.3")},
			"metadata.example":  {netip.MustParseAddr("169.254.169.254")},
			"v6private.example": {netip.MustParseAddr("fd00::1")},
			"nat64.example":     {netip.MustParseAddr("64:ff9b::a00:1")},
			"mapped.example":    {netip.MustParseAddr("::ffff:127.0.0.1")},
		},
	}
	if tune != nil {
		tune(&cfg)
	}
	svc, err := notification.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := svc.Consume(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(consumer.Stop)

	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	issuer := must(authn.NewIssuer(key, time.Hour, time.Now))
	verifier := must(authn.NewVerifier(authn.VerifierConfig{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, Revocations: notRevoked{}, Now: time.Now}))
	limits := must(protolimits.FromAPI())
	srv, err := server.New(server.Config{
		Register: func(r grpc.ServiceRegistrar) { notificationv1.RegisterNotificationServiceServer(r, svc) },
		Auth:     authn.NewInterceptor(verifier),
		Validate: server.FieldLimits(limits),
		Logger:   quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	conn := must(grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials())))
	t.Cleanup(func() { conn.Close() })
	return &env{client: notificationv1.NewNotificationServiceClient(conn), svc: svc, bus: b, issuer: issuer, web: web, apns: apnsSrv, fcm: fcmSrv, counts: counts}
}

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
