package authn

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/guardyn/guardyn/libs/server"
)

// fakeClock is a settable clock shared by issuer and verifier.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// revokedSet revokes the devices it holds.
type revokedSet struct {
	mu  sync.Mutex
	set map[Principal]bool
	err error
}

func (r *revokedSet) IsDeviceRevoked(_ context.Context, user string, device uint32) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set[Principal{user, device}], r.err
}

// Fail makes every later answer an error, as a directory outage does.
func (r *revokedSet) Fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *revokedSet) Revoke(user string, device uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.set[Principal{user, device}] = true
}

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

type fixture struct {
	clock    *fakeClock
	revoked  *revokedSet
	issuer   *Issuer
	verifier *Verifier
}

func newFixture(t testing.TB, cacheSize int) *fixture {
	t.Helper()
	f := &fixture{
		clock:   &fakeClock{t: time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)},
		revoked: &revokedSet{set: map[Principal]bool{}},
	}
	var err error
	f.issuer, err = NewIssuer(testKey(1), 15*time.Minute, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	f.verifier, err = NewVerifier(VerifierConfig{
		Keys:        []ed25519.PublicKey{f.issuer.PublicKey()},
		Now:         f.clock.Now,
		Revocations: f.revoked,
		CacheSize:   cacheSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) issue(t testing.TB, user string, device uint32) string {
	t.Helper()
	tok, _, err := f.issuer.Issue(user, device, [16]byte{9})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	f := newFixture(t, 0)
	family := [16]byte{1, 2, 3}
	tok, issued, err := f.issuer.Issue("user-123", 7, family)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) > MaxTokenLen {
		t.Errorf("token of %d chars exceeds MaxTokenLen %d", len(tok), MaxTokenLen)
	}
	got, err := f.verifier.Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got != issued {
		t.Errorf("claims = %+v, want %+v", got, issued)
	}
	if got.FamilyID != family || got.UserID != "user-123" || got.DeviceID != 7 {
		t.Errorf("claims lost fields: %+v", got)
	}
	if !got.ExpiresAt.Equal(f.clock.Now().Add(15 * time.Minute)) {
		t.Errorf("expiry %v", got.ExpiresAt)
	}
	tok2, second, _ := f.issuer.Issue("user-123", 7, family)
	if tok2 == tok || second.TokenID == issued.TokenID {
		t.Error("two tokens share a token id")
	}
	// Longest user id fits the bound.
	long := strings.Repeat("u", MaxUserIDLen)
	if tok, _, err := f.issuer.Issue(long, 1, family); err != nil || len(tok) != MaxTokenLen {
		t.Errorf("longest token: %d chars, %v; want exactly %d", len(tok), err, MaxTokenLen)
	}
}

func TestIssueRejectsBadInput(t *testing.T) {
	f := newFixture(t, 0)
	for _, tc := range []struct {
		user   string
		device uint32
	}{
		{"", 1},
		{strings.Repeat("u", MaxUserIDLen+1), 1},
		{"\xff\xfe", 1},
		{"alice", 0},
	} {
		if _, _, err := f.issuer.Issue(tc.user, tc.device, [16]byte{}); err == nil {
			t.Errorf("Issue(%q, %d) succeeded", tc.user, tc.device)
		}
	}
	if _, err := NewIssuer(testKey(1), 48*time.Hour, time.Now); err == nil {
		t.Error("NewIssuer accepted a 48h lifetime")
	}
	if _, err := NewIssuer(testKey(1)[:10], time.Minute, time.Now); err == nil {
		t.Error("NewIssuer accepted a short key")
	}
	if _, err := NewVerifier(VerifierConfig{Now: time.Now, Revocations: NoRevocations{}}); err == nil {
		t.Error("NewVerifier accepted no keys")
	}
}

func TestVerifyRejects(t *testing.T) {
	f := newFixture(t, 0)
	tok := f.issue(t, "alice", 1)
	raw, err := encoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("forged signature", func(t *testing.T) {
		forged := bytes.Clone(raw)
		forged[len(forged)-1] ^= 1
		if _, err := f.verifier.Verify(ctx, encoding.EncodeToString(forged)); !errors.Is(err, ErrSignature) {
			t.Errorf("got %v, want ErrSignature", err)
		}
	})
	t.Run("every tampered byte", func(t *testing.T) {
		for i := range raw {
			for _, bit := range []byte{0x01, 0x80} {
				bad := bytes.Clone(raw)
				bad[i] ^= bit
				if _, err := f.verifier.Verify(ctx, encoding.EncodeToString(bad)); err == nil {
					t.Fatalf("flipping bit %#x of byte %d was accepted", bit, i)
				}
			}
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		other, _ := NewIssuer(testKey(2), time.Minute, f.clock.Now)
		tok := mustIssue(t, other, "alice", 1)
		if _, err := f.verifier.Verify(ctx, tok); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("got %v, want ErrUnknownKey", err)
		}
	})
	t.Run("wrong key under trusted key id", func(t *testing.T) {
		body, err := encode(KeyIDOf(f.issuer.PublicKey()), Claims{
			UserID: "alice", DeviceID: 1, IssuedAt: f.clock.Now(), ExpiresAt: f.clock.Now().Add(time.Minute),
		})
		if err != nil {
			t.Fatal(err)
		}
		var msg [len(signingContext) + maxRaw]byte
		sig := ed25519.Sign(testKey(2), signedMessage(&msg, body))
		tok := encoding.EncodeToString(append(body, sig...))
		if _, err := f.verifier.Verify(ctx, tok); !errors.Is(err, ErrSignature) {
			t.Errorf("got %v, want ErrSignature", err)
		}
	})
	t.Run("signature without context string", func(t *testing.T) {
		body := raw[:len(raw)-signatureSize]
		sig := ed25519.Sign(testKey(1), body)
		tok := encoding.EncodeToString(append(bytes.Clone(body), sig...))
		if _, err := f.verifier.Verify(ctx, tok); !errors.Is(err, ErrSignature) {
			t.Errorf("got %v, want ErrSignature", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		g := newFixture(t, 0)
		tok := g.issue(t, "alice", 1)
		g.clock.Advance(15*time.Minute - time.Second)
		if _, err := g.verifier.Verify(ctx, tok); err != nil {
			t.Fatalf("a second before expiry: %v", err)
		}
		g.clock.Advance(time.Second)
		if _, err := g.verifier.Verify(ctx, tok); !errors.Is(err, ErrExpired) {
			t.Errorf("at expiry: %v, want ErrExpired", err)
		}
	})
	t.Run("issued in the future", func(t *testing.T) {
		g := newFixture(t, 0)
		g.clock.Advance(time.Hour)
		tok := g.issue(t, "alice", 1)
		g.clock.Advance(-time.Hour)
		if _, err := g.verifier.Verify(ctx, tok); !errors.Is(err, ErrNotYetValid) {
			t.Errorf("got %v, want ErrNotYetValid", err)
		}
		g.clock.Advance(time.Hour - DefaultMaxClockSkew)
		if _, err := g.verifier.Verify(ctx, tok); err != nil {
			t.Errorf("within clock skew: %v", err)
		}
	})
	t.Run("revoked device", func(t *testing.T) {
		g := newFixture(t, 0)
		tok := g.issue(t, "alice", 1)
		other := g.issue(t, "alice", 2)
		g.revoked.Revoke("alice", 1)
		if _, err := g.verifier.Verify(ctx, tok); !errors.Is(err, ErrDeviceRevoked) {
			t.Errorf("got %v, want ErrDeviceRevoked", err)
		}
		if _, err := g.verifier.Verify(ctx, other); err != nil {
			t.Errorf("another device of the user: %v", err)
		}
	})
}

func mustIssue(t *testing.T, i *Issuer, user string, device uint32) string {
	t.Helper()
	tok, _, err := i.Issue(user, device, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestKeyRotation(t *testing.T) {
	f := newFixture(t, 0)
	next, _ := NewIssuer(testKey(3), time.Minute, f.clock.Now)
	v, err := NewVerifier(VerifierConfig{
		Keys:        []ed25519.PublicKey{f.issuer.PublicKey(), next.PublicKey()},
		Now:         f.clock.Now,
		Revocations: NoRevocations{},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{f.issue(t, "a", 1), mustIssue(t, next, "a", 1)} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("token under a trusted key: %v", err)
		}
	}
}

// buildRaw builds token bytes with arbitrary fields, validly signed, so
// structural checks are tested independently of the signature.
func buildRaw(version byte, iat, exp int64, device uint32, user []byte, userLen int, extra []byte) string {
	b := []byte{version}
	kid := KeyIDOf(testKey(1).Public().(ed25519.PublicKey))
	b = append(b, kid[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(iat))
	b = binary.BigEndian.AppendUint64(b, uint64(exp))
	b = append(b, make([]byte, 32)...)
	b = binary.BigEndian.AppendUint32(b, device)
	b = append(b, byte(userLen))
	b = append(b, user...)
	var msg [len(signingContext) + maxRaw + 64]byte
	n := copy(msg[:], signingContext)
	n += copy(msg[n:], b)
	b = append(b, ed25519.Sign(testKey(1), msg[:n])...)
	b = append(b, extra...)
	return encoding.EncodeToString(b)
}

func TestDecodeRejectsMalformed(t *testing.T) {
	now := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC).Unix()
	good := buildRaw(1, now, now+60, 1, []byte("alice"), 5, nil)
	var buf [maxRaw]byte
	if _, err := decode(good, &buf); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}
	cases := map[string]struct {
		token string
		want  error
	}{
		"empty":             {"", ErrMalformed},
		"too short":         {good[:40], ErrMalformed},
		"too long":          {strings.Repeat("A", MaxTokenLen+1), ErrMalformed},
		"bad base64":        {"!" + good[1:], ErrMalformed},
		"padded":            {good + "==", ErrMalformed},
		"version 0":         {buildRaw(0, now, now+60, 1, []byte("alice"), 5, nil), ErrVersion},
		"version 2":         {buildRaw(2, now, now+60, 1, []byte("alice"), 5, nil), ErrVersion},
		"empty user":        {buildRaw(1, now, now+60, 1, nil, 0, []byte("x")), ErrMalformed},
		"user len overruns": {buildRaw(1, now, now+60, 1, []byte("alice"), 9, nil), ErrMalformed},
		"user len short":    {buildRaw(1, now, now+60, 1, []byte("alice"), 3, nil), ErrMalformed},
		"user too long":     {buildRaw(1, now, now+60, 1, bytes.Repeat([]byte("u"), 65), 65, nil), ErrMalformed},
		"user not utf8":     {buildRaw(1, now, now+60, 1, []byte{0xff, 0xfe}, 2, nil), ErrMalformed},
		"device 0":          {buildRaw(1, now, now+60, 0, []byte("alice"), 5, nil), ErrMalformed},
		"exp before iat":    {buildRaw(1, now, now-1, 1, []byte("alice"), 5, nil), ErrMalformed},
		"exp equals iat":    {buildRaw(1, now, now, 1, []byte("alice"), 5, nil), ErrMalformed},
		"negative iat":      {buildRaw(1, -5, 60, 1, []byte("alice"), 5, nil), ErrMalformed},
		"lifetime too long": {buildRaw(1, now, now+int64(MaxLifetime/time.Second)+1, 1, []byte("alice"), 5, nil), ErrMalformed},
		"trailing byte":     {buildRaw(1, now, now+60, 1, []byte("alice"), 5, []byte{0}), ErrMalformed},
	}
	for name, tc := range cases {
		if _, err := decode(tc.token, &buf); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

func incoming(authorization ...string) context.Context {
	md := metadata.MD{}
	for _, a := range authorization {
		md.Append("authorization", a)
	}
	return metadata.NewIncomingContext(context.Background(), md)
}

func TestInterceptor(t *testing.T) {
	f := newFixture(t, 0)
	const login = "/guardyn.auth.v1.AuthService/Login"
	const send = "/guardyn.messaging.v1.MessagingService/SendMessage"
	icpt := NewInterceptor(f.verifier, login)
	tok := f.issue(t, "alice", 4)

	ctx, err := icpt.Authenticate(incoming("Bearer "+tok), send)
	if err != nil {
		t.Fatalf("valid token: %v", err)
	}
	if p, ok := FromContext(ctx); !ok || p != (Principal{"alice", 4}) {
		t.Errorf("principal = %+v, %v", p, ok)
	}
	if _, err := icpt.Authenticate(incoming("bearer "+tok), send); err != nil {
		t.Errorf("lower-case scheme: %v", err)
	}
	ctx, err = icpt.Authenticate(context.Background(), login)
	if err != nil {
		t.Errorf("public method without token: %v", err)
	}
	if _, ok := FromContext(ctx); ok {
		t.Error("public call got a principal")
	}

	other, _ := NewIssuer(testKey(2), time.Minute, f.clock.Now)
	cases := map[string]struct {
		ctx    context.Context
		reason string
	}{
		"no metadata":      {context.Background(), ReasonTokenMissing},
		"no authorization": {incoming(), ReasonTokenMissing},
		"basic scheme":     {incoming("Basic " + tok), ReasonTokenMissing},
		"bare token":       {incoming(tok), ReasonTokenMissing},
		"two tokens":       {incoming("Bearer "+tok, "Bearer "+tok), ReasonTokenInvalid},
		"garbage":          {incoming("Bearer xyz"), ReasonTokenInvalid},
		"wrong key":        {incoming("Bearer " + mustIssue(t, other, "alice", 4)), ReasonTokenInvalid},
	}
	for name, tc := range cases {
		_, err := icpt.Authenticate(tc.ctx, send)
		if status.Code(err) != codes.Unauthenticated || server.Reason(err) != tc.reason {
			t.Errorf("%s: got %v (reason %q), want Unauthenticated/%s", name, err, server.Reason(err), tc.reason)
		}
	}
}

// TestCachedTokensStillExpireAndRevoke checks that the verified-token cache
// never outlives expiry or device removal.
func TestCachedTokensStillExpireAndRevoke(t *testing.T) {
	f := newFixture(t, 0)
	icpt := NewInterceptor(f.verifier)
	const method = "/guardyn.messaging.v1.MessagingService/Receive"
	alice := incoming("Bearer " + f.issue(t, "alice", 1))
	bob := incoming("Bearer " + f.issue(t, "bob", 1))
	for _, ctx := range []context.Context{alice, bob} {
		if _, err := icpt.Authenticate(ctx, method); err != nil {
			t.Fatal(err)
		}
	}
	f.revoked.Revoke("alice", 1)
	if _, err := icpt.Authenticate(alice, method); server.Reason(err) != ReasonDeviceRemoved {
		t.Errorf("cached token of removed device: %v", err)
	}
	f.clock.Advance(15 * time.Minute)
	if _, err := icpt.Authenticate(bob, method); server.Reason(err) != ReasonTokenExpired {
		t.Errorf("cached expired token: %v", err)
	}
}

// TestDirectoryOutageIsUnavailable checks that a revocation check that cannot be answered
// refuses the call as Unavailable, for cached and fresh tokens alike, and never tells the
// device it was removed: DEVICE_REMOVED is permanent and clients act on it.
func TestDirectoryOutageIsUnavailable(t *testing.T) {
	f := newFixture(t, 0)
	icpt := NewInterceptor(f.verifier)
	const method = "/guardyn.messaging.v1.MessagingService/Receive"
	cached := incoming("Bearer " + f.issue(t, "alice", 1))
	if _, err := icpt.Authenticate(cached, method); err != nil {
		t.Fatal(err)
	}
	fresh := incoming("Bearer " + f.issue(t, "alice", 2))
	f.revoked.Fail(errors.New("directory down"))
	for name, ctx := range map[string]context.Context{"cached": cached, "fresh": fresh} {
		_, err := icpt.Authenticate(ctx, method)
		if status.Code(err) != codes.Unavailable || server.Reason(err) != ReasonRevocationUnavailable {
			t.Errorf("%s token during an outage: %v (reason %q), want Unavailable/%s", name, err, server.Reason(err), ReasonRevocationUnavailable)
		}
	}
	if _, err := f.verifier.Verify(context.Background(), f.issue(t, "alice", 3)); !errors.Is(err, ErrRevocationUnknown) || errors.Is(err, ErrDeviceRevoked) {
		t.Errorf("Verify during an outage: %v, want ErrRevocationUnknown", err)
	}
	f.revoked.Fail(nil)
	if _, err := icpt.Authenticate(cached, method); err != nil {
		t.Errorf("after the outage: %v", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	f := newFixture(t, 8)
	for i := range 100 {
		tok := f.issue(t, "alice", uint32(i+1))
		if _, err := f.verifier.principal(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		f.verifier.mu.RLock()
		n := len(f.verifier.cache)
		f.verifier.mu.RUnlock()
		if n > 8 {
			t.Fatalf("cache holds %d tokens, limit 8", n)
		}
	}
}

func TestUnaryAndStreamInterceptors(t *testing.T) {
	f := newFixture(t, -1)
	icpt := NewInterceptor(f.verifier)
	tok := f.issue(t, "carol", 2)
	var seen Principal
	handler := func(ctx context.Context, _ any) (any, error) {
		seen, _ = FromContext(ctx)
		return "ok", nil
	}
	info := &grpcUnaryInfo
	if _, err := icpt.Unary()(incoming("Bearer "+tok), nil, info, handler); err != nil || seen.UserID != "carol" {
		t.Errorf("unary: %v, principal %+v", err, seen)
	}
	if _, err := icpt.Unary()(context.Background(), nil, info, handler); server.Reason(err) != ReasonTokenMissing {
		t.Errorf("unary without token: %v", err)
	}
	ss := &fakeStream{ctx: incoming("Bearer " + tok)}
	err := icpt.Stream()(nil, ss, &grpcStreamInfo, func(_ any, s grpcServerStream) error {
		seen, _ = FromContext(s.Context())
		return nil
	})
	if err != nil || seen != (Principal{"carol", 2}) {
		t.Errorf("stream: %v, principal %+v", err, seen)
	}
}

func TestNewContext(t *testing.T) {
	ctx := NewContext(context.Background(), Principal{"dave", 3})
	if p, ok := FromContext(ctx); !ok || p != (Principal{"dave", 3}) {
		t.Errorf("FromContext(NewContext) = %+v, %v", p, ok)
	}
}
