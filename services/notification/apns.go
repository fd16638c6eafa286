package notification

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
)

// APNs gateways of the HTTP/2 provider API.
const (
	APNsProduction = "https://api.push.apple.com"
	APNsSandbox    = "https://api.sandbox.push.apple.com"
)

// apnsTokenLifetime is how long a provider token is reused: Apple refuses tokens older than
// an hour and throttles providers that make new ones more often than every 20 minutes.
const apnsTokenLifetime = 40 * time.Minute

// apnsBody is a background push: it wakes the app and carries nothing.
var apnsBody = []byte(`{"aps":{"content-available":1}}`)

// APNsConfig configures Apple Push Notification service delivery with token-based
// authentication.
type APNsConfig struct {
	// Key is the .p8 signing key from the Apple developer account; KeyID its id and TeamID
	// the team's.
	Key    *ecdsa.PrivateKey
	KeyID  string
	TeamID string
	// Production and Sandbox override the gateways (tests); empty means Apple's.
	Production, Sandbox string
	HTTP                HTTPOptions
	Now                 func() time.Time
}

// APNs sends pushes through Apple's HTTP/2 provider API, authenticated with an ES256 JWT.
type APNs struct {
	cfg    APNsConfig
	client *http.Client

	mu       sync.Mutex
	token    string
	issuedAt time.Time
}

// ParseAPNsKey parses the PEM of an APNs .p8 key.
func ParseAPNsKey(p8 []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(p8)
	if block == nil {
		return nil, errors.New("apns key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("apns key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("apns key: not an ECDSA key")
	}
	return ek, nil
}

// NewAPNs returns an APNs provider.
func NewAPNs(cfg APNsConfig) (*APNs, error) {
	if cfg.Key == nil || cfg.KeyID == "" || cfg.TeamID == "" {
		return nil, errors.New("apns: Key, KeyID and TeamID are required")
	}
	if cfg.Production == "" {
		cfg.Production = APNsProduction
	}
	if cfg.Sandbox == "" {
		cfg.Sandbox = APNsSandbox
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &APNs{cfg: cfg, client: cfg.HTTP.client(true)}, nil
}

// providerToken returns the current JWT, making a new one when it is old or when refresh
// asks (Apple said ExpiredProviderToken).
func (a *APNs) providerToken(refresh bool) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.Now()
	if a.token != "" && !refresh && now.Sub(a.issuedAt) < apnsTokenLifetime {
		return a.token, nil
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": a.cfg.TeamID, "iat": now.Unix()})
	t.Header["kid"] = a.cfg.KeyID
	s, err := t.SignedString(a.cfg.Key)
	if err != nil {
		return "", fmt.Errorf("apns: sign provider token: %w", err)
	}
	a.token, a.issuedAt = s, now
	return s, nil
}

// Push implements Provider.
func (a *APNs) Push(ctx context.Context, t *notificationv1.RegisterPushTargetRequest) error {
	at := t.GetApns()
	if at == nil {
		return &PushError{Err: errors.New("not an apns target")}
	}
	base := a.cfg.Production
	if at.GetEnvironment() == notificationv1.ApnsEnvironment_APNS_ENVIRONMENT_SANDBOX {
		base = a.cfg.Sandbox
	}
	err := a.push(ctx, base, at, false)
	var pe *PushError
	if errors.As(err, &pe) && pe.Status == http.StatusForbidden && pe.Reason == "ExpiredProviderToken" {
		err = a.push(ctx, base, at, true)
	}
	return err
}

func (a *APNs) push(ctx context.Context, base string, at *notificationv1.ApnsTarget, refresh bool) error {
	token, err := a.providerToken(refresh)
	if err != nil {
		return &PushError{Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/3/device/"+hex.EncodeToString(at.GetDeviceToken()), bytes.NewReader(apnsBody))
	if err != nil {
		return &PushError{Err: err}
	}
	req.Header.Set("authorization", "bearer "+token)
	req.Header.Set("apns-topic", at.GetTopic())
	req.Header.Set("apns-push-type", "background")
	req.Header.Set("apns-priority", "5") // required for background pushes
	req.Header.Set("apns-collapse-id", "guardyn-wake")
	req.Header.Set("apns-expiration", strconv.FormatInt(a.cfg.Now().Add(time.Hour).Unix(), 10))
	req.Header.Set("content-type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return networkError(err)
	}
	body := drain(resp.Body, 4096)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var reason struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(body, &reason)
	switch {
	case resp.StatusCode == http.StatusGone,
		resp.StatusCode == http.StatusBadRequest && (reason.Reason == "BadDeviceToken" || reason.Reason == "DeviceTokenNotForTopic"):
		return fmt.Errorf("%w: HTTP %d %s", ErrTargetGone, resp.StatusCode, reason.Reason)
	}
	return statusError(resp.StatusCode, reason.Reason)
}
