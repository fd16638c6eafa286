package authn

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
)

// FetchTokenKey asks the auth service at addr (plaintext gRPC, a cluster-internal address)
// for the key its access tokens are signed with, retrying for up to a minute while it
// starts. Services running as their own processes call it once at start-up.
func FetchTokenKey(ctx context.Context, addr string) (ed25519.PublicKey, error) {
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
