// Package auth is Guardyn's account and key directory service: accounts and devices,
// challenge/response login with device signatures, access and refresh tokens, device
// linking, prekey bundles for PQXDH, MLS key packages and sender certificates. It never
// sees a private key or a message. The API is proto/guardyn/auth/v1.
package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/crypto/envelope"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/outbox"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
)

// Defaults for Config fields left zero.
const (
	DefaultAccessTokenTTL  = 15 * time.Minute
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	DefaultChallengeTTL    = time.Minute
	DefaultLinkTTL         = 10 * time.Minute
	// DefaultCertificateTTL keeps sender certificates short-lived: a removed device's
	// certificate stops vouching for it within a day.
	DefaultCertificateTTL = 24 * time.Hour
	// DefaultLowPreKeyThreshold is the pool size under which the owning device is told to
	// replenish its one-time prekeys.
	DefaultLowPreKeyThreshold = 10
	// MaxDevices bounds the devices of one account.
	MaxDevices = 16
	// MaxPoolSize bounds each per-device pool (one-time EC prekeys, one-time ML-KEM prekeys,
	// MLS key packages), as documented in the API.
	MaxPoolSize = 1000
)

// Events tells other services what changed. The all-in-one server publishes them on
// NATS; a nil Events publishes nothing. DeviceRemoved and AccountDeleted are committed
// to an outbox with the change and retried until they return nil (ReplayEvents), so
// they must return only once the bus has the event, and subscribers must be idempotent;
// the other events are best effort and their errors are logged.
type Events interface {
	// DevicesChanged: a device was added to or removed from the account.
	DevicesChanged(ctx context.Context, userID string) error
	// DeviceRemoved: the device is gone; its queued messages must be deleted.
	DeviceRemoved(ctx context.Context, userID string, deviceID uint32) error
	// AccountDeleted: the account and all its devices are gone.
	AccountDeleted(ctx context.Context, userID string, deviceIDs []uint32) error
	// PreKeysLow: a device's one-time prekey pool fell below the threshold.
	PreKeysLow(ctx context.Context, userID string, deviceID uint32, ecLeft, kemLeft int) error
}

// Limiter rate-limits by key; Allow reports whether one more event may happen now.
type Limiter interface {
	Allow(key string) bool
}

// Config holds the dependencies of a Server.
type Config struct {
	Store kv.Store
	// TokenKey signs access tokens; every service verifies them with its public half.
	TokenKey ed25519.PrivateKey
	// CertificateKey signs sender certificates; clients pin its public half.
	CertificateKey ed25519.PrivateKey

	Events Events  // optional
	Limits Limiter // optional: nil disables rate limiting
	Now    func() time.Time
	Logger *slog.Logger

	AccessTokenTTL, RefreshTokenTTL, ChallengeTTL, LinkTTL, CertificateTTL time.Duration
	LowPreKeyThreshold                                                     int
}

// Server implements authv1.AuthServiceServer.
type Server struct {
	authv1.UnimplementedAuthServiceServer

	store   kv.Store
	tokens  *authn.Issuer
	certs   *envelope.Issuer
	events  Events
	limits  Limiter
	now     func() time.Time
	log     *slog.Logger
	cfg     Config
	trust   *authv1.GetTrustRootResponse
	tokenPK ed25519.PublicKey
	// challenges issues and checks the stateless login nonces.
	challenges *challenges
	// outbox holds DeviceRemoved and AccountDeleted until the bus has them; nil
	// without Events.
	outbox *outbox.Outbox
}

// New returns a Server over cfg.Store.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("auth: config needs a Store")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	setDefault(&cfg.AccessTokenTTL, DefaultAccessTokenTTL)
	setDefault(&cfg.RefreshTokenTTL, DefaultRefreshTokenTTL)
	setDefault(&cfg.ChallengeTTL, DefaultChallengeTTL)
	setDefault(&cfg.LinkTTL, DefaultLinkTTL)
	setDefault(&cfg.CertificateTTL, DefaultCertificateTTL)
	if cfg.LowPreKeyThreshold == 0 {
		cfg.LowPreKeyThreshold = DefaultLowPreKeyThreshold
	}
	tokens, err := authn.NewIssuer(cfg.TokenKey, cfg.AccessTokenTTL, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("auth: token issuer: %w", err)
	}
	certs, err := envelope.NewIssuer(cfg.CertificateKey, cfg.CertificateTTL, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("auth: certificate issuer: %w", err)
	}
	kid := authn.KeyIDOf(tokens.PublicKey())
	s := &Server{
		store:   cfg.Store,
		tokens:  tokens,
		certs:   certs,
		events:  cfg.Events,
		limits:  cfg.Limits,
		now:     cfg.Now,
		log:     cfg.Logger,
		cfg:     cfg,
		tokenPK: tokens.PublicKey(),
		trust: &authv1.GetTrustRootResponse{
			SenderCertificateKey: certs.TrustRoot(),
			TokenKey:             tokens.PublicKey(),
			KeyId:                hex.EncodeToString(kid[:]),
		},
	}
	s.challenges = newChallenges(cfg.TokenKey)
	if cfg.Events != nil {
		if s.outbox, err = s.newEventOutbox(); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
	}
	return s, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

// PublicMethods are the RPCs that need no access token; pass them to authn.NewInterceptor.
func PublicMethods() []string {
	return []string{
		authv1.AuthService_Register_FullMethodName,
		authv1.AuthService_GetLoginChallenge_FullMethodName,
		authv1.AuthService_Login_FullMethodName,
		authv1.AuthService_RefreshToken_FullMethodName,
		authv1.AuthService_StartDeviceLink_FullMethodName,
		authv1.AuthService_GetDeviceLinkStatus_FullMethodName,
		authv1.AuthService_GetTrustRoot_FullMethodName,
	}
}

// TokenPublicKey is the key every service verifies access tokens with.
func (s *Server) TokenPublicKey() ed25519.PublicKey { return s.tokenPK }

// IsDeviceRevoked implements authn.Revocations from the store: a device that no longer
// exists (removed, or its account deleted) is revoked as soon as its removal commits. A
// store failure is an error, not a revocation.
func (s *Server) IsDeviceRevoked(ctx context.Context, userID string, deviceID uint32) (bool, error) {
	err := s.store.View(ctx, func(tx kv.Tx) error {
		_, err := tx.Get(deviceKey(userID, deviceID))
		return err
	})
	switch {
	case isNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("auth: device lookup: %w", err)
	}
	return false, nil
}

// Devices returns the current device ids of a user (nil for an unknown user). The
// messaging service reaches it through the directory responder on the bus.
func (s *Server) Devices(ctx context.Context, userID string) ([]uint32, error) {
	lists, err := s.DeviceLists(ctx, []string{userID})
	if err != nil {
		return nil, err
	}
	return lists[0], nil
}

// DeviceLists returns the current device ids of each user (nil for an unknown user), in
// the order asked, read in one transaction.
func (s *Server) DeviceLists(ctx context.Context, userIDs []string) ([][]uint32, error) {
	lists := make([][]uint32, len(userIDs))
	err := s.store.View(ctx, func(tx kv.Tx) error {
		for i, user := range userIDs {
			devs, err := loadDevices(tx, user)
			if err != nil {
				return err
			}
			lists[i] = nil // a retried transaction starts over
			for _, d := range devs {
				lists[i] = append(lists[i], d.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return lists, nil
}

// caller returns the authenticated principal; the interceptor guarantees one exists on
// every non-public method.
func caller(ctx context.Context) (authn.Principal, error) {
	p, ok := authn.FromContext(ctx)
	if !ok {
		return p, server.Error(codes.Unauthenticated, "TOKEN_MISSING", "missing access token")
	}
	return p, nil
}

// allow applies the rate limit for one action and key.
func (s *Server) allow(action, key string) error {
	if s.limits == nil || s.limits.Allow(action+"|"+key) {
		return nil
	}
	return server.Error(codes.ResourceExhausted, reasonRateLimited, "too many %s requests; retry later", action)
}

// peerKey identifies an unauthenticated caller for rate limiting by its IP address.
func peerKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}

// internal logs err and returns an opaque Internal status, so store details never reach
// clients.
func (s *Server) internal(ctx context.Context, op string, err error) error {
	if errors.Is(err, kv.ErrUnavailable) {
		s.log.WarnContext(ctx, "auth: store unavailable", "op", op, "err", err)
		return server.Error(codes.Unavailable, server.ReasonStoreUnavailable, "%s: store unavailable; retry", op)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return server.Error(codes.Canceled, "CANCELED", "%s: %v", op, err)
	}
	s.log.ErrorContext(ctx, "auth: store failure", "op", op, "err", err)
	return server.Error(codes.Internal, server.ReasonInternal, "%s failed", op)
}

// publish runs an event callback, logging a failure: the change has committed already.
func (s *Server) publish(ctx context.Context, what string, fn func(Events) error) {
	if s.events == nil {
		return
	}
	if err := fn(s.events); err != nil {
		s.log.WarnContext(ctx, "auth: publishing event failed", "event", what, "err", err)
	}
}

var usernamePattern = regexp.MustCompile(`^[a-z0-9_.]{3,32}$`)

func checkUsername(name string) error {
	if !usernamePattern.MatchString(name) {
		return server.Error(codes.InvalidArgument, reasonInvalidUsername, "username must be 3-32 characters of [a-z0-9_.], got %q", name)
	}
	return nil
}

func checkDeviceName(name string) error {
	if name == "" {
		return server.Error(codes.InvalidArgument, reasonMalformedRequest, "device name is empty")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return server.Error(codes.InvalidArgument, reasonMalformedRequest, "device name has a non-printable character")
		}
	}
	return nil
}

// newID returns n random bytes as lowercase hex.
func newID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
