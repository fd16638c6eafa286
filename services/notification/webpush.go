package notification

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	webpush "github.com/SherClockHolmes/webpush-go"

	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
)

// wakePayload is the whole content of every push: it says only "open the app's stream".
// Web Push encrypts it (RFC 8291) and pads it to webPushRecordSize, so even its length
// tells the push service nothing.
var wakePayload = []byte(`{"wake":1}`)

// webPushRecordSize is the RFC 8188 record size of a push: room for the payload and
// padding, far below the 4096 bytes every push service accepts.
const webPushRecordSize = 128

// WebPushConfig configures Web Push delivery.
type WebPushConfig struct {
	// VAPIDKey is the application server's P-256 key (RFC 8292); browsers subscribe with
	// its public key as applicationServerKey.
	VAPIDKey *ecdh.PrivateKey
	// Subject is the contact of the VAPID JWT: a mailto: or https: URL.
	Subject string
	// TTL is how long the push service keeps an undelivered push, in seconds (0: 1 hour).
	TTL  int
	HTTP HTTPOptions
}

// WebPush sends Web Push messages (RFC 8030) with aes128gcm message encryption (RFC 8291)
// and VAPID (RFC 8292), through github.com/SherClockHolmes/webpush-go.
type WebPush struct {
	opts webpush.Options
}

// NewWebPush returns a Web Push provider.
func NewWebPush(cfg WebPushConfig) (*WebPush, error) {
	if cfg.VAPIDKey == nil || cfg.VAPIDKey.Curve() != ecdh.P256() {
		return nil, errors.New("web push: a P-256 VAPID key is required")
	}
	if cfg.Subject == "" {
		return nil, errors.New("web push: a VAPID subject (mailto: or https: URL) is required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 3600
	}
	return &WebPush{opts: webpush.Options{
		HTTPClient:      cfg.HTTP.client(),
		RecordSize:      webPushRecordSize,
		Subscriber:      cfg.Subject,
		TTL:             cfg.TTL,
		Urgency:         webpush.UrgencyHigh,
		Topic:           "wake", // RFC 8030 §5.4: a newer push replaces an undelivered one
		VAPIDPublicKey:  base64.RawURLEncoding.EncodeToString(cfg.VAPIDKey.PublicKey().Bytes()),
		VAPIDPrivateKey: base64.RawURLEncoding.EncodeToString(cfg.VAPIDKey.Bytes()),
	}}, nil
}

// PublicKey is the VAPID public key (uncompressed point) browsers subscribe with.
func (w *WebPush) PublicKey() []byte {
	b, _ := base64.RawURLEncoding.DecodeString(w.opts.VAPIDPublicKey)
	return b
}

// Push implements Provider.
func (w *WebPush) Push(ctx context.Context, t *notificationv1.RegisterPushTargetRequest) error {
	wp := t.GetWebPush()
	if wp == nil {
		return &PushError{Err: errors.New("not a web push target")}
	}
	sub := &webpush.Subscription{Endpoint: wp.GetEndpoint(), Keys: webpush.Keys{
		P256dh: base64.RawURLEncoding.EncodeToString(wp.GetP256Dh()),
		Auth:   base64.RawURLEncoding.EncodeToString(wp.GetAuth()),
	}}
	opts := w.opts
	resp, err := webpush.SendNotificationWithContext(ctx, wakePayload, sub, &opts)
	if err != nil {
		return networkError(err)
	}
	drain(resp.Body, 4096)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		// RFC 8030 §7.3: the subscription expired or was removed.
		return fmt.Errorf("%w: HTTP %d", ErrTargetGone, resp.StatusCode)
	}
	return statusError(resp.StatusCode, "")
}

// LoadOrCreateVAPIDKey reads the VAPID key at path (a raw P-256 scalar), creating it on
// first use, so browsers' subscriptions stay valid across restarts.
func LoadOrCreateVAPIDKey(path string) (*ecdh.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := ecdh.P256().NewPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("vapid key %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("vapid key: %w", err)
	}
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("vapid key: %w", err)
	}
	if err := os.WriteFile(path, k.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("vapid key: %w", err)
	}
	return k, nil
}
