package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/config"
	"github.com/guardyn/guardyn/libs/directory"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	"github.com/guardyn/guardyn/libs/observe"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/libs/server"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
	"github.com/guardyn/guardyn/services/presence"
)

type options struct {
	config.Common
	authAddr   string
	rateLimits bool
}

func run(ctx context.Context, opts options) error {
	obs, err := observe.New(ctx, opts.Observe("presence", os.Stderr))
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: the spans of the shutdown go out too.
	defer obs.Close(context.Background())
	log := obs.Logger()
	tokenKey, err := authn.FetchTokenKey(ctx, opts.authAddr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return err
	}
	storeFile, err := kvbackend.Open(ctx, opts.KV, opts.DataDir)
	if err != nil {
		return err
	}
	defer storeFile.Close()
	store := obs.KV("presence", storeFile)
	b, err := bus.Dial(ctx, opts.NATS(log))
	if err != nil {
		return err
	}
	defer b.Close()
	b.Observe(obs)
	bucket, err := b.PresenceBucket(ctx, 0)
	if err != nil {
		return err
	}
	devices := directory.New(directory.NewBusSource(b.Conn()), directory.Options{})
	changes, err := directory.Subscribe(b.Conn(), devices)
	if err != nil {
		return err
	}
	defer changes.Unsubscribe()
	policy := presence.DefaultRateLimits()
	if !opts.rateLimits {
		policy = ratelimit.Policy{}
	}
	limits, err := ratelimit.NewActions(policy)
	if err != nil {
		return err
	}
	svc, err := presence.New(presence.Config{Store: store, Bucket: bucket, Conn: b.Conn(), Limits: limits, Logger: log})
	if err != nil {
		return err
	}
	defer svc.Close()
	verifier, err := authn.NewVerifier(authn.VerifierConfig{Keys: []ed25519.PublicKey{tokenKey}, Revocations: devices, Now: time.Now})
	if err != nil {
		return err
	}
	fieldLimits, err := protolimits.FromAPI()
	if err != nil {
		return err
	}
	ready := server.ReadyAll(
		server.Check{Name: "kv", Ready: storeFile.Ready},
		server.Check{Name: "bus", Ready: b.Ready},
		server.Check{Name: "presence", Ready: svc.Ready},
	)
	srv, err := server.New(server.Config{
		GRPCAddr: opts.GRPCAddr, AdminAddr: opts.AdminAddr,
		Register:     func(r grpc.ServiceRegistrar) { presencev1.RegisterPresenceServiceServer(r, svc) },
		Auth:         authn.NewInterceptor(verifier),
		Validate:     server.FieldLimits(fieldLimits),
		Ready:        ready,
		Reflection:   opts.Reflection,
		Observer:     obs,
		DrainTimeout: opts.DrainTimeout,
	})
	if err != nil {
		return err
	}
	fmt.Printf("presence: gRPC on %s, admin on %s\n", srv.GRPCAddr(), srv.AdminAddr())
	return srv.Run(ctx)
}
