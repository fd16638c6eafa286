// Package notification is Guardyn's push service: devices register where to be woken (APNs,
// FCM or Web Push), and when a message is stored for a device with no open Receive stream,
// the service sends it a push with no content, not even the sender, that only makes the app
// open MessagingService.Receive. The API is proto/guardyn/notification/v1.
//
// Messaging instances publish a DeliveryNotice per stored message for a device they hold
// no stream of (bus.StreamNotify, which keeps one notice per device, so a burst of
// messages waiting for delivery is one notice). [Server.Consume] takes them from JetStream,
// skips devices online in the presence bucket, coalesces per device (one push per
// CoalesceWindow), retries refused pushes with exponential backoff and records a dead letter
// when they fail for good; a target its push service reports gone is deleted.
//
// Web Push endpoints are chosen by clients: only https URLs on public addresses are
// accepted, and every connection is checked again (ssrf.go).
package notification

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/server"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
)

// Limiter rate-limits by key ("action|caller").
type Limiter interface {
	Allow(key string) bool
}

// Metrics counts pushes; libs/observe's Pushes implements it. Provider names are
// "webpush", "apns" and "fcm"; reasons are fixed upper-case names (pushReason).
type Metrics interface {
	Sent(provider string, took time.Duration)
	Failed(provider, reason string, took time.Duration)
}

// Defaults for Config fields left zero.
const (
	// DefaultCoalesceWindow: a device is pushed at most once per window; the app, once
	// awake, reads everything waiting.
	DefaultCoalesceWindow = 30 * time.Second
	// DefaultMaxAttempts bounds the tries of one push before its dead letter.
	DefaultMaxAttempts = 6
	// DefaultRetryDelay and DefaultMaxRetryDelay shape the backoff between tries.
	DefaultRetryDelay    = time.Second
	DefaultMaxRetryDelay = 5 * time.Minute
	// DefaultWorkers is how many pushes are in flight at once.
	DefaultWorkers = 64
)

// Config holds the dependencies of a Server.
type Config struct {
	// Store keeps push targets and dead letters.
	Store kv.Store
	// Providers send pushes; a platform without one refuses registrations.
	WebPush, APNs, FCM Provider
	// Presence, if set, is the presence bucket: a device online there is not pushed.
	Presence jetstream.KeyValue

	// AllowPrivateEndpoints accepts Web Push endpoints on loopback and private addresses
	// and on any port: for tests against local servers only. It must match the Web Push
	// provider's HTTPOptions.AllowPrivate.
	AllowPrivateEndpoints bool
	// Resolver resolves endpoint hosts at registration (nil: net.DefaultResolver).
	Resolver Resolver

	Limits  Limiter // optional
	Metrics Metrics // optional
	Now     func() time.Time
	Logger  *slog.Logger

	CoalesceWindow            time.Duration
	MaxAttempts               int
	RetryDelay, MaxRetryDelay time.Duration
	Workers                   int
}

// Server implements notificationv1.NotificationServiceServer and consumes delivery notices.
type Server struct {
	notificationv1.UnimplementedNotificationServiceServer

	cfg       Config
	providers map[commonv1.PushPlatform]Provider
	coalesce  *coalescer
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("notification: config needs Store")
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CoalesceWindow <= 0 {
		cfg.CoalesceWindow = DefaultCoalesceWindow
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = DefaultRetryDelay
	}
	if cfg.MaxRetryDelay < cfg.RetryDelay {
		cfg.MaxRetryDelay = max(DefaultMaxRetryDelay, cfg.RetryDelay)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	s := &Server{cfg: cfg, providers: map[commonv1.PushPlatform]Provider{}, coalesce: newCoalescer(cfg.CoalesceWindow, cfg.Now)}
	for p, prov := range map[commonv1.PushPlatform]Provider{
		commonv1.PushPlatform_PUSH_PLATFORM_WEB_PUSH: cfg.WebPush,
		commonv1.PushPlatform_PUSH_PLATFORM_APNS:     cfg.APNs,
		commonv1.PushPlatform_PUSH_PLATFORM_FCM:      cfg.FCM,
	} {
		if prov != nil {
			s.providers[p] = prov
		}
	}
	return s, nil
}

func caller(ctx context.Context) (authn.Principal, error) {
	p, ok := authn.FromContext(ctx)
	if !ok {
		return authn.Principal{}, server.Error(codes.Unauthenticated, authn.ReasonTokenMissing, "missing bearer access token")
	}
	return p, nil
}

func (s *Server) allow(action, key string) error {
	if s.cfg.Limits != nil && !s.cfg.Limits.Allow(action+"|"+key) {
		return server.Error(codes.ResourceExhausted, reasonRateLimited, "too many %s requests; retry later", action)
	}
	return nil
}

func (s *Server) unavailable(ctx context.Context, what string, err error) error {
	s.cfg.Logger.WarnContext(ctx, "notification: "+what, "err", err)
	return server.Error(codes.Unavailable, reasonUnavailable, "push targets unavailable; retry")
}

func invalid(format string, args ...any) error {
	return server.Error(codes.InvalidArgument, reasonInvalidPushTarget, format, args...)
}

var (
	apnsTopic = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	fcmToken  = regexp.MustCompile(`^[A-Za-z0-9:_.-]+$`)
)

// checkTarget validates a registration; nothing is stored unless it passes.
func (s *Server) checkTarget(ctx context.Context, req *notificationv1.RegisterPushTargetRequest) error {
	p := platform(req)
	if p == commonv1.PushPlatform_PUSH_PLATFORM_UNSPECIFIED {
		return invalid("RegisterPushTargetRequest.target: not set")
	}
	if s.providers[p] == nil {
		return invalid("RegisterPushTargetRequest.target: this server does not send %v pushes", p)
	}
	switch t := req.GetTarget().(type) {
	case *notificationv1.RegisterPushTargetRequest_Apns:
		a := t.Apns
		if len(a.GetDeviceToken()) == 0 {
			return invalid("ApnsTarget.device_token: empty")
		}
		if !apnsTopic.MatchString(a.GetTopic()) {
			return invalid("ApnsTarget.topic: %q is not a bundle id", a.GetTopic())
		}
		if e := a.GetEnvironment(); e != notificationv1.ApnsEnvironment_APNS_ENVIRONMENT_SANDBOX && e != notificationv1.ApnsEnvironment_APNS_ENVIRONMENT_PRODUCTION {
			return invalid("ApnsTarget.environment: got %v, want SANDBOX or PRODUCTION", e)
		}
	case *notificationv1.RegisterPushTargetRequest_Fcm:
		if !fcmToken.MatchString(t.Fcm.GetRegistrationToken()) {
			return invalid("FcmTarget.registration_token: empty or not a registration token")
		}
	case *notificationv1.RegisterPushTargetRequest_WebPush:
		w := t.WebPush
		if len(w.GetP256Dh()) != 65 || len(w.GetAuth()) != 16 {
			return invalid("WebPushTarget: p256dh is %d bytes (want 65), auth %d (want 16)", len(w.GetP256Dh()), len(w.GetAuth()))
		}
		if err := checkP256(w.GetP256Dh()); err != nil {
			return invalid("WebPushTarget.p256dh: %v", err)
		}
		if err := checkEndpoint(ctx, s.cfg.Resolver, w.GetEndpoint(), s.cfg.AllowPrivateEndpoints); err != nil {
			// The message names the rule broken, never what the address resolved to.
			return invalid("WebPushTarget.endpoint: %v", err)
		}
	}
	return nil
}

// RegisterPushTarget stores the calling device's target, replacing any previous one.
func (s *Server) RegisterPushTarget(ctx context.Context, req *notificationv1.RegisterPushTargetRequest) (*notificationv1.RegisterPushTargetResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("push-register", p.UserID); err != nil {
		return nil, err
	}
	if err := s.checkTarget(ctx, req); err != nil {
		return nil, err
	}
	key, err := deviceKey(targetPrefix, p.UserID, p.DeviceID)
	if err != nil {
		return nil, invalid("caller: %v", err)
	}
	val, err := encodeTarget(storedTarget{registered: s.cfg.Now(), target: req})
	if err != nil {
		return nil, s.unavailable(ctx, "encode target", err)
	}
	if err := s.cfg.Store.Update(ctx, func(tx kv.Tx) error { return tx.Put(key, val) }); err != nil {
		return nil, s.unavailable(ctx, "store target", err)
	}
	return &notificationv1.RegisterPushTargetResponse{}, nil
}

// UnregisterPushTarget deletes the calling device's target.
func (s *Server) UnregisterPushTarget(ctx context.Context, _ *notificationv1.UnregisterPushTargetRequest) (*notificationv1.UnregisterPushTargetResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("push-register", p.UserID); err != nil {
		return nil, err
	}
	key, err := deviceKey(targetPrefix, p.UserID, p.DeviceID)
	if err != nil {
		return nil, invalid("caller: %v", err)
	}
	var found bool
	err = s.cfg.Store.Update(ctx, func(tx kv.Tx) error {
		_, err := tx.Get(key)
		if errors.Is(err, kv.ErrNotFound) {
			found = false
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return tx.Delete(key)
	})
	if err != nil {
		return nil, s.unavailable(ctx, "delete target", err)
	}
	if !found {
		return nil, server.Error(codes.NotFound, reasonPushTargetNotFound, "this device has no push target")
	}
	return &notificationv1.UnregisterPushTargetResponse{}, nil
}

// ListPushTargets lists which devices of the caller's account have a target.
func (s *Server) ListPushTargets(ctx context.Context, _ *notificationv1.ListPushTargetsRequest) (*notificationv1.ListPushTargetsResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("push-list", p.UserID); err != nil {
		return nil, err
	}
	prefix, err := userPrefix(targetPrefix, p.UserID)
	if err != nil {
		return nil, invalid("caller: %v", err)
	}
	resp := &notificationv1.ListPushTargetsResponse{}
	err = s.cfg.Store.View(ctx, func(tx kv.Tx) error {
		pairs, err := kv.ScanPrefix(tx, prefix, 0)
		if err != nil {
			return err
		}
		resp.Targets = resp.Targets[:0]
		for _, kvp := range pairs {
			id, err := strconv.ParseUint(strings.TrimPrefix(string(kvp.Key), string(prefix)), 10, 32)
			if err != nil {
				continue
			}
			t, err := decodeTarget(kvp.Value)
			if err != nil {
				continue
			}
			resp.Targets = append(resp.Targets, &notificationv1.PushTargetInfo{
				DeviceId: uint32(id), Platform: platform(t.target), RegisteredAt: timestamppb.New(t.registered),
			})
		}
		return nil
	})
	if err != nil {
		return nil, s.unavailable(ctx, "list targets", err)
	}
	slices.SortFunc(resp.Targets, func(a, b *notificationv1.PushTargetInfo) int { return int(a.DeviceId) - int(b.DeviceId) })
	return resp, nil
}

// DeadLetters lists the recorded dead letters, for operators and tests.
func (s *Server) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	var out []DeadLetter
	err := s.cfg.Store.View(ctx, func(tx kv.Tx) error {
		pairs, err := kv.ScanPrefix(tx, []byte(deadPrefix), 0)
		if err != nil {
			return err
		}
		for _, kvp := range pairs {
			d, err := decodeDead(kvp.Value)
			if err != nil {
				continue
			}
			rest := strings.TrimPrefix(string(kvp.Key), deadPrefix)
			user, dev, ok := strings.Cut(rest, "/")
			id, err := strconv.ParseUint(dev, 10, 32)
			if !ok || err != nil {
				continue
			}
			d.UserID, d.DeviceID = user, uint32(id)
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	return out, nil
}
