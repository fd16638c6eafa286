// Package client is the Guardyn client library, of which every app is a thin face (the
// command-line app apps/guardyn today, the browser app next): one Client per local device
// profile, holding its keys, sessions, groups and pinned identities in an encrypted vault,
// and speaking the Guardyn APIs (proto/guardyn/*/v1) with PQXDH + Double Ratchet sessions
// sealed in sender-hiding envelopes, and MLS for groups. The walkthrough is docs/cli.md.
//
// An app gives the Client two things ([Config]): where the profile lives, a
// [vault.Storage] (files in a directory for the command-line app, IndexedDB in a browser),
// and how to reach the server, a [grpc.ClientConnInterface] (native gRPC for the
// command-line app; a gRPC-Web one in a browser).
//
// Every operation is one or more load-modify-save cycles of the profile state under the
// profile's lock, so several processes may use one profile at once (listen in one
// terminal, send in another). Secrets never leave the vault unencrypted; the server sees
// usernames, device ids and ciphertext only.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/guardyn/guardyn/libs/client/vault"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/crypto/session"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
	messagingv1 "github.com/guardyn/guardyn/proto/guardyn/messaging/v1"
	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
)

// Prekey policy: how many one-time prekeys of each kind a device keeps on the server.
const (
	PreKeyBatch     = 100 // uploaded at registration and when topping up (the API's maximum per call)
	PreKeyLowWater  = 20  // top up when fewer than this many remain
	tokenMargin     = time.Minute
	certMargin      = time.Hour
	defaultLinkPoll = time.Second
)

// sessionConfig is the ratchet configuration of every messaging session: header
// encryption on, as the messaging layer requires.
var sessionConfig = session.Config{HeaderEncryption: true}

// Config says where a profile lives and how to reach the server.
type Config struct {
	// Home is the profile directory (one device of one account): the vault's files when
	// Storage is nil, and the spool of unfinished file uploads (SendFile).
	Home string
	// Storage keeps the profile's vault; nil means the files of Home (vault.Dir).
	Storage vault.Storage
	// Passphrase unlocks the profile's vault.
	Passphrase []byte
	// Conn is the transport to the Guardyn server: a *grpc.ClientConn, or anything else
	// that carries unary and server-streaming calls with their metadata and status codes.
	// Over a transport that also streams requests, Listen opens a bidirectional stream
	// (messaging Receive) and SendFile a client stream (media UploadChunks). A transport
	// that cannot (a browser's gRPC-Web, package grpcweb) says so by implementing
	// [RequestStreamer]; the client then uses the browser forms of those calls, with the
	// same guarantees: Subscribe with AckMessages, and UploadChunk per chunk.
	Conn grpc.ClientConnInterface
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// VaultParams are the scrypt parameters of a new profile; the zero value means
	// vault.DefaultParams. Tests lower them.
	VaultParams vault.Params
	// RequireVerified is strict mode: sends (messages, receipts, typing, copies to one's
	// own devices) to an account with unverified new devices fail with
	// ErrUnverifiedDevices instead of reaching them.
	RequireVerified bool
}

// RequestStreamer is implemented by a transport (Config.Conn) that may be unable to carry
// calls whose requests stream: client-streaming and bidirectional calls. A browser cannot
// stream a request body over gRPC-Web, so grpcweb.Conn reports false, and the client makes
// only unary and server-streaming calls over it.
//
// The transport says it rather than the app: an app cannot forget to. A wrapper around
// such a transport must implement RequestStreamer too; one that does not is taken for a
// streaming transport, and its first streaming call fails (grpcweb refuses it with
// UNIMPLEMENTED before sending anything), so the mistake shows at once and loses nothing.
type RequestStreamer interface {
	// StreamsRequests reports whether the transport carries client-streaming and
	// bidirectional calls.
	StreamsRequests() bool
}

// streamsRequests reports whether conn carries calls whose requests stream.
func streamsRequests(conn grpc.ClientConnInterface) bool {
	rs, ok := conn.(RequestStreamer)
	return !ok || rs.StreamsRequests()
}

// Client is one local device profile connected to a server.
type Client struct {
	vault           *vault.Vault
	auth            authv1.AuthServiceClient
	msg             messagingv1.MessagingServiceClient
	presence        presencev1.PresenceServiceClient
	push            notificationv1.NotificationServiceClient
	now             func() time.Time
	requireVerified bool
	typing          typingReplays
	// unaryOnly: the transport carries no request streams (see RequestStreamer), so
	// Listen subscribes and SendFile uploads one chunk per call.
	unaryOnly bool

	// media and home serve file transfers (media.go); afterChunk, set by tests, runs
	// after each uploaded chunk and aborts the upload when it fails, as a killed process.
	media      mediav1.MediaServiceClient
	home       string
	afterChunk func(uploadID string, sent int64) error
}

func newClient(cfg Config, v *vault.Vault) *Client {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Client{vault: v, auth: authv1.NewAuthServiceClient(cfg.Conn), msg: messagingv1.NewMessagingServiceClient(cfg.Conn), now: now, requireVerified: cfg.RequireVerified,
		media: mediav1.NewMediaServiceClient(cfg.Conn), home: cfg.Home,
		presence: presencev1.NewPresenceServiceClient(cfg.Conn), push: notificationv1.NewNotificationServiceClient(cfg.Conn),
		unaryOnly: !streamsRequests(cfg.Conn)}
}

// storage is the Storage of the profile.
func (cfg Config) storage() vault.Storage {
	if cfg.Storage != nil {
		return cfg.Storage
	}
	return vault.Dir(cfg.Home)
}

// where names the profile in errors.
func (cfg Config) where() string {
	if cfg.Storage != nil {
		return "the configured storage"
	}
	return cfg.Home
}

func (cfg Config) params() vault.Params {
	if cfg.VaultParams == (vault.Params{}) {
		return vault.DefaultParams
	}
	return cfg.VaultParams
}

// Open unlocks an existing profile. It fails with ErrNoProfile when cfg.Home holds none and
// with vault.ErrWrongPassphrase when the passphrase is wrong.
func Open(cfg Config) (*Client, error) {
	v, err := vault.Open(cfg.storage(), cfg.Passphrase)
	if errors.Is(err, vault.ErrNotFound) {
		return nil, fmt.Errorf("%w in %s", ErrNoProfile, cfg.where())
	} else if err != nil {
		return nil, err
	}
	return newClient(cfg, v), nil
}

// Close forgets the vault key.
func (c *Client) Close() { c.vault.Close() }

// Register creates an account with this profile as its first device: it generates the
// identity key, registers, pins the server's trust root, logs in and uploads prekeys.
func Register(ctx context.Context, cfg Config, username, deviceName string) (*Client, error) {
	username = strings.ToLower(username)
	if vault.Exists(cfg.storage()) {
		return nil, fmt.Errorf("%w in %s", ErrProfileExists, cfg.where())
	}
	s, id, err := newState(username, deviceName)
	if err != nil {
		return nil, err
	}
	root, err := fetchTrustRoot(ctx, authv1.NewAuthServiceClient(cfg.Conn))
	if err != nil {
		return nil, err
	}
	s.TrustRoot = root
	ik := id.Public().Bytes()
	sig, err := id.Sign(keys.ContextRegistration, registrationStatement(username, ik))
	if err != nil {
		return nil, fmt.Errorf("client: sign registration: %w", err)
	}
	resp, err := authv1.NewAuthServiceClient(cfg.Conn).Register(ctx, &authv1.RegisterRequest{
		Username: username, IdentityKey: ik, DeviceName: deviceName, Signature: sig,
	})
	if err != nil {
		return nil, fmt.Errorf("client: register %q: %w", username, err)
	}
	s.UserID, s.DeviceID = resp.GetUserId(), resp.GetDeviceId()
	// The account starts with this device alone: every later device is one it either
	// approves or is warned about.
	s.Contacts[username] = &contact{UserID: s.UserID, Devices: make(map[uint32]*peerDevice)}
	b, err := s.encode()
	if err != nil {
		return nil, err
	}
	v, err := vault.Create(cfg.storage(), cfg.Passphrase, cfg.params(), b)
	if err != nil {
		return nil, err
	}
	c := newClient(cfg, v)
	if err := c.Login(ctx); err != nil {
		return c, err
	}
	if err := c.uploadInitialPreKeys(ctx); err != nil {
		return c, err
	}
	if _, err := c.ReplenishKeyPackages(ctx); err != nil {
		return c, err
	}
	return c, nil
}

func newState(username, deviceName string) (*state, *keys.Identity, error) {
	id, err := keys.GenerateIdentity()
	if err != nil {
		return nil, nil, fmt.Errorf("client: generate identity: %w", err)
	}
	idb, err := id.MarshalBinary()
	if err != nil {
		return nil, nil, fmt.Errorf("client: encode identity: %w", err)
	}
	pk, err := keys.NewPreKeyStore().MarshalBinary()
	if err != nil {
		return nil, nil, fmt.Errorf("client: encode prekeys: %w", err)
	}
	return &state{
		Version: stateVersion, Username: username, DeviceName: deviceName,
		Identity: idb, PreKeys: pk, Contacts: make(map[string]*contact),
	}, id, nil
}

func fetchTrustRoot(ctx context.Context, auth authv1.AuthServiceClient) ([]byte, error) {
	resp, err := auth.GetTrustRoot(ctx, &authv1.GetTrustRootRequest{})
	if err != nil {
		return nil, fmt.Errorf("client: get trust root: %w", err)
	}
	if len(resp.GetSenderCertificateKey()) != 32 {
		return nil, fmt.Errorf("client: server sent a %d-byte sender certificate key, want 32", len(resp.GetSenderCertificateKey()))
	}
	return resp.GetSenderCertificateKey(), nil
}

// cycle runs one load-modify-save cycle of the profile state under the profile lock. fn
// may call the server (with c.bearer) and must leave s consistent; if it fails nothing is
// saved. History entries it logs are appended to the history file in the same cycle.
func (c *Client) cycle(fn func(s *state) error) error {
	var failed error
	err := c.vault.UpdateAppend(func(cur []byte) ([]byte, [][]byte, error) {
		s, err := decodeState(cur)
		if err != nil {
			return nil, nil, err
		}
		s.now = c.now()
		if err := fn(s); err != nil {
			// A detected identity change or new device is kept (as the contact's pending
			// identity, or an unverified device) even though the operation fails, so every
			// later operation sees it.
			var changed *IdentityChangedError
			if !errors.As(err, &changed) && !errors.Is(err, ErrUnverifiedDevices) {
				return nil, nil, err
			}
			failed = err
		}
		records := make([][]byte, 0, len(s.newLog))
		for _, e := range s.newLog {
			b, err := json.Marshal(e)
			if err != nil {
				return nil, nil, fmt.Errorf("client: encode history entry: %w", err)
			}
			records = append(records, b)
		}
		next, err := s.encode()
		return next, records, err
	})
	if err == nil {
		err = failed
	}
	return err
}

// view reads the profile state under the lock without saving it.
func (c *Client) view() (*state, error) {
	b, err := c.vault.Read()
	if err != nil {
		return nil, err
	}
	return decodeState(b)
}

// registered fails unless the profile has finished registering or linking.
func (s *state) registered() error {
	if s.UserID == "" || s.DeviceID == 0 {
		if s.Link != nil {
			return ErrLinkPending
		}
		return ErrNoProfile
	}
	return nil
}

// bearer returns ctx carrying a valid access token, refreshing it (or logging in again when
// the refresh token no longer works) inside the caller's cycle, so that two processes never
// rotate the same refresh token.
func (c *Client) bearer(ctx context.Context, s *state) (context.Context, error) {
	if err := s.registered(); err != nil {
		return nil, err
	}
	now := c.now()
	if s.Tokens.Access == "" || !now.Add(tokenMargin).Before(s.Tokens.AccessExpires) {
		refreshed := false
		if s.Tokens.Refresh != "" && now.Before(s.Tokens.RefreshExpires) {
			resp, err := c.auth.RefreshToken(ctx, &authv1.RefreshTokenRequest{RefreshToken: s.Tokens.Refresh})
			if err == nil {
				s.setTokens(resp.GetTokens())
				refreshed = true
			}
		}
		if !refreshed {
			if err := c.login(ctx, s); err != nil {
				return nil, err
			}
		}
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.Tokens.Access), nil
}

func (s *state) setTokens(t *authv1.TokenPair) {
	s.Tokens = tokens{
		Access: t.GetAccessToken(), AccessExpires: t.GetAccessTokenExpiresAt().AsTime(),
		Refresh: t.GetRefreshToken(), RefreshExpires: t.GetRefreshTokenExpiresAt().AsTime(),
	}
}

// login proves possession of the identity key and stores fresh tokens in s.
func (c *Client) login(ctx context.Context, s *state) error {
	id, err := s.identity()
	if err != nil {
		return err
	}
	ch, err := c.auth.GetLoginChallenge(ctx, &authv1.GetLoginChallengeRequest{Username: s.Username, DeviceId: s.DeviceID})
	if err != nil {
		return fmt.Errorf("client: login challenge: %w", err)
	}
	sig, err := id.Sign(keys.ContextLoginChallenge, loginStatement(s.Username, s.DeviceID, ch.GetNonce()))
	if err != nil {
		return fmt.Errorf("client: sign login challenge: %w", err)
	}
	resp, err := c.auth.Login(ctx, &authv1.LoginRequest{Username: s.Username, DeviceId: s.DeviceID, Nonce: ch.GetNonce(), Signature: sig})
	if err != nil {
		return fmt.Errorf("client: login: %w", err)
	}
	if resp.GetUserId() != s.UserID {
		return fmt.Errorf("client: login: server says this device belongs to account %q, the profile says %q", resp.GetUserId(), s.UserID)
	}
	s.setTokens(resp.GetTokens())
	return nil
}

// Login logs in again with the identity key, replacing the stored tokens.
func (c *Client) Login(ctx context.Context) error {
	return c.cycle(func(s *state) error {
		if err := s.registered(); err != nil {
			return err
		}
		return c.login(ctx, s)
	})
}

// certificate returns a sender certificate valid for at least certMargin, fetching a new
// one into s when needed.
func (c *Client) certificate(ctx context.Context, s *state) ([]byte, error) {
	if len(s.Certificate) > 0 && c.now().Add(certMargin).Before(s.CertExpires) {
		return s.Certificate, nil
	}
	actx, err := c.bearer(ctx, s)
	if err != nil {
		return nil, err
	}
	resp, err := c.auth.GetSenderCertificate(actx, &authv1.GetSenderCertificateRequest{})
	if err != nil {
		return nil, fmt.Errorf("client: get sender certificate: %w", err)
	}
	s.Certificate, s.CertExpires = resp.GetCertificate(), resp.GetExpiresAt().AsTime()
	return s.Certificate, nil
}
