package authn

import (
	"context"
	"crypto/ed25519"
	"testing"
)

// BenchmarkEd25519Verify is the raw primitive baseline for BenchmarkVerify.
func BenchmarkEd25519Verify(b *testing.B) {
	key := testKey(1)
	pub := key.Public().(ed25519.PublicKey)
	msg := make([]byte, len(signingContext)+100)
	sig := ed25519.Sign(key, msg)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkVerify is a full uncached verification: decode, signature, times,
// revocation lookup.
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b, -1)
	tok := f.issue(b, "user-0123456789", 3)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.verifier.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateCached is the per-call cost the interceptor adds once
// a token has been seen: metadata lookup, cache hit, expiry and revocation
// checks, principal in context.
func BenchmarkAuthenticateCached(b *testing.B) {
	f := newFixture(b, 0)
	icpt := NewInterceptor(f.verifier)
	ctx := incoming("Bearer " + f.issue(b, "user-0123456789", 3))
	const method = "/guardyn.messaging.v1.MessagingService/SendMessage"
	if _, err := icpt.Authenticate(ctx, method); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := icpt.Authenticate(ctx, method); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkIssue(b *testing.B) {
	f := newFixture(b, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := f.issuer.Issue("user-0123456789", 3, [16]byte{}); err != nil {
			b.Fatal(err)
		}
	}
}
