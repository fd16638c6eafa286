package authn

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/guardyn/guardyn/libs/server"
)

// Reasons of the Unauthenticated errors the interceptor returns.
const (
	ReasonTokenMissing  = "TOKEN_MISSING"
	ReasonTokenInvalid  = "TOKEN_INVALID"
	ReasonTokenExpired  = "TOKEN_EXPIRED"
	ReasonDeviceRemoved = "DEVICE_REMOVED"
	// ReasonRevocationUnavailable comes with Unavailable: the device directory
	// could not tell whether the device was removed. Retry; the device may well
	// be fine.
	ReasonRevocationUnavailable = "REVOCATION_UNAVAILABLE"
)

// Principal is the authenticated device making a call.
type Principal struct {
	UserID   string
	DeviceID uint32
}

type principalKey struct{}

// FromContext returns the caller that the interceptor authenticated.
// ok is false for public methods and contexts that never passed it.
func FromContext(ctx context.Context) (p Principal, ok bool) {
	pp, ok := ctx.Value(principalKey{}).(*Principal)
	if !ok {
		return Principal{}, false
	}
	return *pp, true
}

// NewContext returns ctx carrying p, for handler tests and internal calls.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, &p)
}

// Interceptor demands a valid access token in `authorization: Bearer <token>`
// metadata on every method except the public ones. It implements
// server.Authenticator and also offers plain gRPC interceptors.
type Interceptor struct {
	verifier *Verifier
	public   map[string]bool

	// Prebuilt so that rejecting a flood of bad tokens allocates nothing
	// beyond the token parse; messages are fixed to leak nothing.
	errMissing, errInvalid, errExpired, errRemoved, errUnknown error
}

var _ server.Authenticator = (*Interceptor)(nil)

// NewInterceptor returns an Interceptor verifying with v that lets the
// given full method names (e.g. "/guardyn.auth.v1.AuthService/Login")
// through without a token.
func NewInterceptor(v *Verifier, publicMethods ...string) *Interceptor {
	i := &Interceptor{
		verifier:   v,
		public:     make(map[string]bool, len(publicMethods)),
		errMissing: server.Error(codes.Unauthenticated, ReasonTokenMissing, "missing bearer access token"),
		errInvalid: server.Error(codes.Unauthenticated, ReasonTokenInvalid, "invalid access token"),
		errExpired: server.Error(codes.Unauthenticated, ReasonTokenExpired, "access token expired"),
		errRemoved: server.Error(codes.Unauthenticated, ReasonDeviceRemoved, "device removed"),
		errUnknown: server.Error(codes.Unavailable, ReasonRevocationUnavailable, "device directory unavailable; retry"),
	}
	for _, m := range publicMethods {
		i.public[m] = true
	}
	return i
}

// Authenticate implements server.Authenticator.
func (i *Interceptor) Authenticate(ctx context.Context, fullMethod string) (context.Context, error) {
	if i.public[fullMethod] {
		return ctx, nil
	}
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 {
		return nil, i.errMissing
	}
	if len(vals) > 1 {
		return nil, i.errInvalid
	}
	token, ok := bearer(vals[0])
	if !ok {
		return nil, i.errMissing
	}
	p, err := i.verifier.principal(ctx, token)
	switch {
	case err == nil:
		return context.WithValue(ctx, principalKey{}, p), nil
	case errors.Is(err, ErrExpired):
		return nil, i.errExpired
	case errors.Is(err, ErrDeviceRevoked):
		return nil, i.errRemoved
	case errors.Is(err, ErrRevocationUnknown):
		return nil, i.errUnknown
	default:
		return nil, i.errInvalid
	}
}

// bearer extracts the token of an RFC 6750 "Bearer" authorization value;
// the scheme is case-insensitive.
func bearer(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimSpace(v[len(scheme):]), true
}

// Unary returns a unary server interceptor, for servers not built with
// libs/server.
func (i *Interceptor) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := i.Authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream returns a stream server interceptor that authenticates once when
// the stream opens.
func (i *Interceptor) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := i.Authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
	}
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }
