package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/bus"
	"github.com/guardyn/guardyn/libs/config"
	"github.com/guardyn/guardyn/libs/directory"
	kvbackend "github.com/guardyn/guardyn/libs/kv/backend"
	msgbackend "github.com/guardyn/guardyn/libs/msgstore/backend"
	"github.com/guardyn/guardyn/libs/observe"
	"github.com/guardyn/guardyn/libs/ratelimit"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
	"github.com/guardyn/guardyn/services/messaging"
)

type options struct {
	config.Common
	authAddr   string
	rateLimits bool
}

func run(ctx context.Context, opts options) error {
	obs, err := observe.New(ctx, opts.Observe("messaging", os.Stderr))
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: the spans of the shutdown go out too.
	defer obs.Close(context.Background())
	log := obs.Logger()
	tokenKey, err := fetchTokenKey(ctx, opts.authAddr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return err
	}
	groupsFile, err := kvbackend.Open(ctx, opts.KV, opts.DataDir)
	if err != nil {
		return err
	}
	defer groupsFile.Close()
	groups := obs.KV("groups", groupsFile)
	inboxFiles, err := msgbackend.Open(ctx, opts.Messages, opts.DataDir, log, messaging.DefaultInboxLimit)
	if err != nil {
		return err
	}
	defer inboxFiles.Close()
	inboxes := obs.Messages(inboxFiles.Store)
	b, err := bus.Dial(ctx, opts.NATS(log))
	if err != nil {
		return err
	}
	defer b.Close()
	b.Observe(obs)
	source := directory.NewBusSource(b.Conn())
	devices := directory.New(source, directory.Options{})
	changes, err := directory.Subscribe(b.Conn(), devices)
	if err != nil {
		return err
	}
	defer changes.Unsubscribe()
	policy := messaging.DefaultRateLimits()
	if !opts.rateLimits {
		policy = ratelimit.Policy{}
	}
	limits, err := ratelimit.NewActions(policy)
	if err != nil {
		return err
	}
	svc, err := messaging.New(messaging.Config{Inboxes: inboxes, Groups: groups, Directory: devices, Conn: b.Conn(), Limits: limits, Logger: log})
	if err != nil {
		return err
	}
	defer svc.Close()
	consumer, err := svc.ConsumeAuthEvents(context.WithoutCancel(ctx), b)
	if err != nil {
		return err
	}
	defer consumer.Stop()
	notices, err := svc.ConsumePreKeyNotices(context.WithoutCancel(ctx), b)
	if err != nil {
		return err
	}
	defer notices.Stop()
	verifier, err := authn.NewVerifier(authn.VerifierConfig{Keys: []ed25519.PublicKey{tokenKey}, Revocations: devices, Now: time.Now})
	if err != nil {
		return err
	}
	fieldLimits, err := protolimits.FromAPI()
	if err != nil {
		return err
	}
	// Ready only while the stores, the bus and the auth service's directory work: the
	// msgstore refuses writes after a failed write, the kv store when its writer cannot
	// commit, and no send passes without the recipient's device list.
	ready := server.ReadyAll(
		server.Check{Name: "kv", Ready: groupsFile.Ready},
		server.Check{Name: "msgstore", Ready: inboxFiles.Ready},
		server.Check{Name: "bus", Ready: b.Ready},
		server.Check{Name: "directory", Ready: source.Ready},
	)
	srv, err := server.New(server.Config{
		GRPCAddr: opts.GRPCAddr, AdminAddr: opts.AdminAddr,
		Register:        func(r grpc.ServiceRegistrar) { messagingv1.RegisterMessagingServiceServer(r, svc) },
		Auth:            authn.NewInterceptor(verifier),
		Validate:        server.FieldLimits(fieldLimits),
		Ready:           ready,
		Reflection:      opts.Reflection,
		Observer:        obs,
		DrainTimeout:    opts.DrainTimeout,
		MaxMessageBytes: 5 << 20,
	})
	if err != nil {
		return err
	}
	fmt.Printf("messaging: gRPC on %s, admin on %s\n", srv.GRPCAddr(), srv.AdminAddr())
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
