// Package platform assembles every Guardyn service into one process on the embedded
// default: one gRPC server, the embedded kv store and message store, and an embedded NATS
// JetStream server, all under one data directory. The all-in-one binary (tools/devserver),
// the end-to-end tests and the load generator start the platform through Start.
package platform

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/blobstore"
	blobbackend "github.com/guardyn/guardyn/libs/blobstore/backend"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/config"
	"github.com/guardyn/guardyn/libs/directory"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	kvembedded "github.com/guardyn/guardyn/libs/kv/embedded"
	msgbackend "github.com/guardyn/guardyn/libs/msgstore/backend"
	msgembedded "github.com/guardyn/guardyn/libs/msgstore/embedded"
	"github.com/guardyn/guardyn/libs/observe"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
	"github.com/guardyn/guardyn/services/auth"
	"github.com/guardyn/guardyn/services/media"
	"github.com/guardyn/guardyn/services/messaging"
	"github.com/guardyn/guardyn/services/notification"
)

// Config chooses where the platform keeps its data and listens.
type Config struct {
	// DataDir holds every durable byte: kv.db, msgstore/, blobs/, nats/ and keys/.
	DataDir string
	// GRPCAddr and AdminAddr are listen addresses; ":0" picks a free port.
	GRPCAddr, AdminAddr string
	// KV is the kv store's address (libs/kv/backend): empty keeps it embedded in
	// DataDir, tikv://pd1:2379,... puts it on a TiKV cluster.
	KV string
	// KVStore, when set, is the kv store instead of the one KV names, and the platform
	// closes it when it stops: tests pass a store on client-go's mock TiKV cluster.
	KVStore *kvbackend.Store
	// NATSURL connects to a NATS cluster instead of running NATS embedded in DataDir.
	NATSURL string
	// NATS holds the cluster's credentials, TLS and stream replicas (its URLs, when
	// set, take the place of NATSURL).
	NATS bus.ClusterOptions
	// Messages is the message store's address: empty keeps it embedded in DataDir (see
	// libs/msgstore/backend).
	Messages string
	// NATSListen exposes the embedded NATS server on loopback for separate service
	// processes; off, only this process can reach it.
	NATSListen bool
	// DrainTimeout bounds how long shutdown waits for calls to end (0: the default).
	DrainTimeout time.Duration
	// Limits rate-limits actions per caller; nil means DefaultPolicy, an empty Policy
	// disables rate limiting.
	Limits ratelimit.Policy
	Logger *slog.Logger
	// Observer gives the process its metrics registry and tracer (libs/observe); nil
	// makes one that exports no traces. Logger, when set, wins over the Observer's.
	Observer *observe.Observer
	// InboxLimit caps each device's undelivered messages (0: the messaging default).
	InboxLimit int
	// StreamRecheck is how often open Receive streams are checked for a removed device
	// (0: the messaging default).
	StreamRecheck time.Duration
	// Media adjusts the media service's quotas and limits (zero fields: its defaults).
	Media media.Config
	// Reflection enables gRPC server reflection (development only).
	Reflection bool
	// GRPCOptions are passed to the gRPC server.
	GRPCOptions []grpc.ServerOption

	// PresenceTTL is how long a device stays online after its last heartbeat (0:
	// bus.PresenceTTL).
	PresenceTTL time.Duration
	// VAPIDSubject is the contact Web Push services see in VAPID JWTs (empty:
	// mailto:postmaster@localhost); the VAPID key lives in DataDir/keys/vapid.key.
	VAPIDSubject string
	// WebPush, APNs and FCM replace the push providers (tests); nil keeps the default Web
	// Push provider and no APNs or FCM, which need credentials.
	WebPush, APNs, FCM notification.Provider
	// AllowPrivatePushEndpoints accepts Web Push endpoints on loopback and private
	// addresses: for tests against a local push service only.
	AllowPrivatePushEndpoints bool
	// PushCoalesceWindow: see notification.Config.CoalesceWindow.
	PushCoalesceWindow time.Duration
}

// Platform is a running all-in-one server.
type Platform struct {
	srv  *server.Server
	auth *auth.Server
	stop []func()
	log  *slog.Logger

	// media sweeps expired uploads and blobs while Run serves.
	media *media.Server
	// The stores, for tests that break them (kv is nil on a cluster).
	kv      *kvembedded.Store
	inboxes *msgembedded.Store
	blobs   blobstore.Store

	// What keeps the process's view of devices current, kept for tests that cut it.
	dirSub   *auth.DirectoryResponder
	changes  *nats.Subscription
	consumer jetstream.ConsumeContext
}

// Start opens the stores and the bus under cfg.DataDir and binds the listeners. Call Run to
// serve; Run closes everything when its context ends.
func Start(ctx context.Context, cfg Config) (_ *Platform, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("platform: data dir is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("platform: data dir: %w", err)
	}
	p := &Platform{}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	obs := cfg.Observer
	if obs == nil {
		if obs, err = observe.New(ctx, observe.Config{Service: "guardyn"}); err != nil {
			return nil, err
		}
		// Closed last: it flushes the spans of everything closed before it.
		p.stop = append(p.stop, func() { obs.Close(context.Background()) })
	}
	if cfg.Logger == nil {
		cfg.Logger = obs.Logger()
	}
	p.log = cfg.Logger

	tokenKey, err := config.LoadOrCreateEd25519Key(filepath.Join(cfg.DataDir, "keys", "token.key"))
	if err != nil {
		return nil, err
	}
	certKey, err := config.LoadOrCreateEd25519Key(filepath.Join(cfg.DataDir, "keys", "sender-certificate.key"))
	if err != nil {
		return nil, err
	}

	kvFile := cfg.KVStore
	if kvFile == nil {
		if kvFile, err = kvbackend.Open(ctx, cfg.KV, cfg.DataDir); err != nil {
			return nil, fmt.Errorf("platform: %w", err)
		}
	}
	p.stop = append(p.stop, func() { kvFile.Close() })
	kvStore := obs.KV("kv", kvFile)

	inboxCap := cfg.InboxLimit
	if inboxCap == 0 {
		inboxCap = messaging.DefaultInboxLimit
	}
	inboxFiles, err := msgbackend.Open(ctx, cfg.Messages, cfg.DataDir, cfg.Logger, inboxCap)
	if err != nil {
		return nil, fmt.Errorf("platform: %w", err)
	}
	p.stop = append(p.stop, func() { inboxFiles.Close() })
	inboxes := obs.Messages(inboxFiles.Store)

	// The media chunks live where the inboxes do (libs/blobstore/backend).
	blobs, err := blobbackend.Open(ctx, cfg.Messages, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("platform: %w", err)
	}
	p.stop = append(p.stop, func() { blobs.Close() })
	p.blobs = blobs.Store
	capKey, err := config.LoadOrCreateSecret(filepath.Join(cfg.DataDir, "keys", "media-capability.key"), media.CapabilityKeySize)
	if err != nil {
		return nil, err
	}

	var b *bus.Bus
	if cfg.NATS.URLs == "" {
		cfg.NATS.URLs = cfg.NATSURL
	}
	if cfg.NATS.URLs != "" {
		if cfg.NATS.Logger == nil {
			cfg.NATS.Logger = cfg.Logger
		}
		b, err = bus.Dial(ctx, cfg.NATS)
	} else {
		b, err = bus.StartEmbedded(ctx, filepath.Join(cfg.DataDir, "nats"), bus.EmbeddedOptions{Listen: cfg.NATSListen, Logger: cfg.Logger})
	}
	if err != nil {
		return nil, fmt.Errorf("platform: nats: %w", err)
	}
	p.stop = append(p.stop, func() { b.Close() })
	b.Observe(obs)

	if cfg.Limits == nil {
		cfg.Limits = DefaultPolicy()
	}
	limits, err := ratelimit.NewActions(cfg.Limits)
	if err != nil {
		return nil, err
	}
	events, err := auth.NewBusEvents(ctx, b)
	if err != nil {
		return nil, err
	}
	authSvc, err := auth.New(auth.Config{
		Store: kvStore, TokenKey: tokenKey, CertificateKey: certKey,
		Events: events, Limits: limits, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	dirSub, err := authSvc.ServeDirectory(b.Conn())
	if err != nil {
		return nil, err
	}
	p.stop = append(p.stop, func() { dirSub.Unsubscribe() })
	p.dirSub = dirSub

	devices := directory.New(directory.NewBusSource(b.Conn()), directory.Options{})
	changes, err := directory.Subscribe(b.Conn(), devices)
	if err != nil {
		return nil, err
	}
	p.stop = append(p.stop, func() { changes.Unsubscribe() })
	p.changes = changes
	msgSvc, err := messaging.New(messaging.Config{
		Inboxes: inboxes, Groups: kvStore, Directory: devices, Revocations: authSvc, Conn: b.Conn(),
		Limits: limits, Logger: cfg.Logger, InboxLimit: cfg.InboxLimit, StreamRecheck: cfg.StreamRecheck,
	})
	if err != nil {
		return nil, err
	}
	p.stop = append(p.stop, func() { msgSvc.Close() })
	consumer, err := msgSvc.ConsumeAuthEvents(context.WithoutCancel(ctx), b)
	if err != nil {
		return nil, err
	}
	p.stop = append(p.stop, consumer.Stop)
	p.consumer = consumer
	notices, err := msgSvc.ConsumePreKeyNotices(context.WithoutCancel(ctx), b)
	if err != nil {
		return nil, err
	}
	p.stop = append(p.stop, notices.Stop)

	presSvc, pushSvc, err := p.startPresenceAndPush(ctx, cfg, kvStore, b, limits, obs.Pushes())
	if err != nil {
		return nil, err
	}
	mediaCfg := cfg.Media
	mediaCfg.Records, mediaCfg.Blobs, mediaCfg.CapabilityKey = kvStore, blobs.Store, capKey
	mediaCfg.Limits, mediaCfg.Logger = limits, cfg.Logger
	mediaSvc, err := media.New(mediaCfg)
	if err != nil {
		return nil, err
	}
	p.media = mediaSvc

	// Every call is checked against the auth store itself, in this process: a device is
	// refused from the moment its removal commits, by every service. (The directory's
	// cache serves device lists for sends, and revocation in a messaging process of its
	// own, where change events keep it current.)
	verifier, err := authn.NewVerifier(authn.VerifierConfig{
		Keys: []ed25519.PublicKey{authSvc.TokenPublicKey()}, Revocations: authSvc, Now: time.Now,
	})
	if err != nil {
		return nil, err
	}
	fieldLimits, err := protolimits.FromAPI()
	if err != nil {
		return nil, err
	}
	p.auth, p.kv, p.inboxes = authSvc, kvFile.Embedded, inboxFiles.Embedded
	// Ready only while every store and the bus work: the msgstore refuses writes after a
	// failed write, the kv store when its writer cannot commit.
	ready := server.ReadyAll(
		server.Check{Name: "kv", Ready: kvFile.Ready},
		server.Check{Name: "msgstore", Ready: inboxFiles.Ready},
		server.Check{Name: "blobstore", Ready: blobs.Ready},
		server.Check{Name: "bus", Ready: b.Ready},
		server.Check{Name: "presence", Ready: presSvc.Ready},
	)
	p.srv, err = server.New(server.Config{
		GRPCAddr: cfg.GRPCAddr, AdminAddr: cfg.AdminAddr,
		Register: func(r grpc.ServiceRegistrar) {
			authv1.RegisterAuthServiceServer(r, authSvc)
			messagingv1.RegisterMessagingServiceServer(r, msgSvc)
			presencev1.RegisterPresenceServiceServer(r, presSvc)
			notificationv1.RegisterNotificationServiceServer(r, pushSvc)
			mediav1.RegisterMediaServiceServer(r, mediaSvc)
		},
		Auth:         authn.NewInterceptor(verifier, auth.PublicMethods()...),
		Validate:     server.FieldLimits(fieldLimits),
		Ready:        ready,
		Reflection:   cfg.Reflection,
		Observer:     obs,
		Logger:       cfg.Logger,
		GRPCOptions:  cfg.GRPCOptions,
		DrainTimeout: cfg.DrainTimeout,
		// The largest request the API limits allow is a SendMessage of 16 envelopes of
		// 256 KiB each, just over 4 MiB.
		MaxMessageBytes: 5 << 20,
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// GRPCAddr is the bound gRPC address.
func (p *Platform) GRPCAddr() net.Addr { return p.srv.GRPCAddr() }

// AdminAddr is the bound admin HTTP address (/healthz, /readyz, /metrics).
func (p *Platform) AdminAddr() net.Addr { return p.srv.AdminAddr() }

// sweepInterval is how often abandoned login challenges and device links are deleted.
const sweepInterval = time.Minute

// Run serves until ctx ends, drains calls, then closes the stores and the bus.
func (p *Platform) Run(ctx context.Context) error {
	defer p.close()
	sweepCtx, stopSweeping := context.WithCancel(ctx)
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		tick := time.NewTicker(sweepInterval)
		defer tick.Stop()
		for {
			select {
			case <-sweepCtx.Done():
				return
			case <-tick.C:
				if err := p.auth.Sweep(sweepCtx); err != nil && sweepCtx.Err() == nil {
					p.log.Warn("auth sweep failed", "err", err)
				}
			}
		}
	}()
	defer func() { stopSweeping(); <-swept }()
	// Auth events a crash or a bus outage left in the outbox are published until acked.
	replayed := make(chan struct{})
	go func() {
		defer close(replayed)
		_ = p.auth.ReplayEvents(sweepCtx)
	}()
	defer func() { stopSweeping(); <-replayed }()
	// Expired uploads, leases and capabilities end, and unowned blobs are deleted.
	mediaSwept := make(chan struct{})
	go func() {
		defer close(mediaSwept)
		_ = p.media.Run(sweepCtx, 0)
	}()
	defer func() { stopSweeping(); <-mediaSwept }()
	return p.srv.Run(ctx)
}

func (p *Platform) close() {
	for i := len(p.stop) - 1; i >= 0; i-- {
		p.stop[i]()
	}
	p.stop = nil
}
