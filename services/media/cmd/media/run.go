package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guardyn/guardyn/libs/authn"
	blobbackend "github.com/guardyn/guardyn/libs/blobstore/backend"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/config"
	"github.com/guardyn/guardyn/libs/directory"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
	"github.com/guardyn/guardyn/services/media"
)

type options struct {
	config.Common
	authAddr   string
	rateLimits bool
}

func run(ctx context.Context, opts options) error {
	log := opts.Logger(os.Stderr)
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return err
	}
	// The media chunks live where -messages puts the cluster data (libs/blobstore/backend);
	// a store that cannot be reached ends the start before the service waits for auth.
	blobs, err := blobbackend.Open(ctx, opts.Messages, opts.DataDir)
	if err != nil {
		return err
	}
	defer blobs.Close()
	tokenKey, err := fetchTokenKey(ctx, opts.authAddr)
	if err != nil {
		return err
	}
	capKey, err := config.LoadOrCreateSecret(filepath.Join(opts.DataDir, "keys", "media-capability.key"), media.CapabilityKeySize)
	if err != nil {
		return err
	}
	records, err := kvbackend.Open(ctx, opts.KV, opts.DataDir)
	if err != nil {
		return err
	}
	defer records.Close()
	b, err := bus.Dial(ctx, opts.NATS(log))
	if err != nil {
		return err
	}
	defer b.Close()
	devices := directory.New(directory.NewBusSource(b.Conn()), directory.Options{})
	changes, err := directory.Subscribe(b.Conn(), devices)
	if err != nil {
		return err
	}
	defer changes.Unsubscribe()
	policy := media.DefaultRateLimits()
	if !opts.rateLimits {
		policy = ratelimit.Policy{}
	}
	limits, err := ratelimit.NewActions(policy)
	if err != nil {
		return err
	}
	svc, err := media.New(media.Config{Records: records, Blobs: blobs.Store, CapabilityKey: capKey, Limits: limits, Logger: log})
	if err != nil {
		return err
	}
	verifier, err := authn.NewVerifier(authn.VerifierConfig{Keys: []ed25519.PublicKey{tokenKey}, Revocations: devices, Now: time.Now})
	if err != nil {
		return err
	}
	fieldLimits, err := protolimits.FromAPI()
	if err != nil {
		return err
	}
	ready := server.ReadyAll(
		server.Check{Name: "kv", Ready: records.Ready},
		server.Check{Name: "blobstore", Ready: blobs.Ready},
		server.Check{Name: "bus", Ready: b.Ready},
	)
	srv, err := server.New(server.Config{
		GRPCAddr: opts.GRPCAddr, AdminAddr: opts.AdminAddr,
		Register:        func(r grpc.ServiceRegistrar) { mediav1.RegisterMediaServiceServer(r, svc) },
		Auth:            authn.NewInterceptor(verifier),
		Validate:        server.FieldLimits(fieldLimits),
		Ready:           ready,
		Reflection:      opts.Reflection,
		Logger:          log,
		DrainTimeout:    opts.DrainTimeout,
		MaxMessageBytes: 2 << 20,
	})
	if err != nil {
		return err
	}
	sweepCtx, stopSweep := context.WithCancel(ctx)
	swept := make(chan error, 1)
	go func() { swept <- svc.Run(sweepCtx, 0) }()
	defer func() { stopSweep(); <-swept }()
	fmt.Printf("media: gRPC on %s, admin on %s\n", srv.GRPCAddr(), srv.AdminAddr())
	return srv.Run(ctx)
}

// fetchTokenKey asks the auth service for the key its access tokens are signed with,
// retrying while it starts.
func fetchTokenKey(ctx context.Context, addr string) (ed25519.PublicKey, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("auth service at %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		resp, err := authv1.NewAuthServiceClient(conn).GetTrustRoot(ctx, &authv1.GetTrustRootRequest{}, grpc.WaitForReady(true))
		if err == nil {
			if len(resp.GetTokenKey()) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("auth service at %s returned a %d-byte token key", addr, len(resp.GetTokenKey()))
			}
			return resp.GetTokenKey(), nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("fetching the token key from the auth service at %s: %w", addr, err)
		case <-time.After(time.Second):
		}
	}
}
