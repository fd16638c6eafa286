package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/config"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	"github.com/guardyn/guardyn/libs/observe"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
	"github.com/guardyn/guardyn/services/auth"
)

type options struct {
	config.Common
	natsListen string
	rateLimits bool
}

func run(ctx context.Context, opts options) error {
	obs, err := observe.New(ctx, opts.Observe("auth", os.Stderr))
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: the spans of the shutdown go out too.
	defer obs.Close(context.Background())
	log := obs.Logger()
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return err
	}
	tokenKey, err := config.LoadOrCreateEd25519Key(filepath.Join(opts.DataDir, "keys", "token.key"))
	if err != nil {
		return err
	}
	certKey, err := config.LoadOrCreateEd25519Key(filepath.Join(opts.DataDir, "keys", "sender-certificate.key"))
	if err != nil {
		return err
	}
	kvFile, err := kvbackend.Open(ctx, opts.KV, opts.DataDir)
	if err != nil {
		return err
	}
	defer kvFile.Close()
	store := obs.KV("auth", kvFile)
	b, err := connect(ctx, opts)
	if err != nil {
		return err
	}
	defer b.Close()
	b.Observe(obs)
	events, err := auth.NewBusEvents(ctx, b)
	if err != nil {
		return err
	}
	policy := auth.DefaultRateLimits()
	if !opts.rateLimits {
		policy = ratelimit.Policy{}
	}
	limits, err := ratelimit.NewActions(policy)
	if err != nil {
		return err
	}
	svc, err := auth.New(auth.Config{Store: store, TokenKey: tokenKey, CertificateKey: certKey, Events: events, Limits: limits, Logger: log})
	if err != nil {
		return err
	}
	directory, err := svc.ServeDirectory(b.Conn())
	if err != nil {
		return err
	}
	defer directory.Unsubscribe()
	verifier, err := authn.NewVerifier(authn.VerifierConfig{Keys: []ed25519.PublicKey{svc.TokenPublicKey()}, Revocations: svc, Now: time.Now})
	if err != nil {
		return err
	}
	fieldLimits, err := protolimits.FromAPI()
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{
		GRPCAddr: opts.GRPCAddr, AdminAddr: opts.AdminAddr,
		Register:     func(r grpc.ServiceRegistrar) { authv1.RegisterAuthServiceServer(r, svc) },
		Auth:         authn.NewInterceptor(verifier, auth.PublicMethods()...),
		Validate:     server.FieldLimits(fieldLimits),
		Ready:        server.ReadyAll(server.Check{Name: "kv", Ready: kvFile.Ready}, server.Check{Name: "bus", Ready: b.Ready}),
		Reflection:   opts.Reflection,
		Observer:     obs,
		DrainTimeout: opts.DrainTimeout,
	})
	if err != nil {
		return err
	}
	fmt.Printf("auth: gRPC on %s, admin on %s, NATS %s\n", srv.GRPCAddr(), srv.AdminAddr(), b.ClientURL())
	go sweep(ctx, svc)
	// Publishes the auth events a crash or a bus outage left in the outbox.
	replayCtx, stopReplay := context.WithCancel(ctx)
	replayed := make(chan struct{})
	go func() {
		defer close(replayed)
		_ = svc.ReplayEvents(replayCtx)
	}()
	defer func() { stopReplay(); <-replayed }()
	return srv.Run(ctx)
}

// connect joins the NATS cluster, or embeds a NATS server the other services can reach.
func connect(ctx context.Context, opts options) (*bus.Bus, error) {
	if opts.NATSURL != "" {
		return bus.Dial(ctx, opts.NATS(opts.Logger(os.Stderr)))
	}
	host, port, err := net.SplitHostPort(opts.natsListen)
	if err != nil {
		return nil, fmt.Errorf("-nats-listen: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("-nats-listen port: %w", err)
	}
	return bus.StartEmbedded(ctx, filepath.Join(opts.DataDir, "nats"), bus.EmbeddedOptions{Listen: true, Host: host, Port: p, Logger: opts.Logger(os.Stderr)})
}

// sweep deletes abandoned login challenges and device links every minute.
func sweep(ctx context.Context, svc *auth.Server) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			svc.Sweep(ctx)
		}
	}
}
