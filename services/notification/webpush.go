package notification

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

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
// and VAPID (RFC 8292).
//
// It is written against the RFCs rather than through github.com/SherClockHolmes/webpush-go:
// that library rebuilds the VAPID key from its scalar and signs a new JWT for every push,
// which cost 30% of a push's CPU (docs/perf-presence.md). Here the JWT of each push service
// origin is signed once and reused for an hour (RFC 8292 §2 allows up to 24), and the
// encryption uses crypto/ecdh, crypto/hkdf and AES-GCM from the standard library. The test
// server (notificationtest) decrypts and verifies independently.
type WebPush struct {
	key     *ecdh.PrivateKey
	signer  *ecdsa.PrivateKey
	k       string // base64url VAPID public key, the "k" of the Authorization header
	subject string
	ttl     string
	client  *h1Client
	now     func() time.Time

	mu   sync.Mutex
	jwts map[string]vapidToken // by origin (audience)
}

// vapidToken is the signed JWT of one origin, kept as the header lines every push to that
// origin carries (RFC 8030's and its Authorization, RFC 8292): built once per JWT, so a
// push only appends its request line, Host and body.
type vapidToken struct {
	head    []byte // header lines, each ending in CRLF; read-only once stored
	expires time.Time
}

// vapidLifetime is how long a VAPID JWT is valid; it is reused until vapidReuse before.
const (
	vapidLifetime = 12 * time.Hour
	vapidReuse    = time.Hour
)

// NewWebPush returns a Web Push provider.
func NewWebPush(cfg WebPushConfig) (*WebPush, error) {
	if cfg.VAPIDKey == nil || cfg.VAPIDKey.Curve() != ecdh.P256() {
		return nil, errors.New("web push: a P-256 VAPID key is required")
	}
	if !strings.HasPrefix(cfg.Subject, "mailto:") && !strings.HasPrefix(cfg.Subject, "https:") {
		return nil, errors.New("web push: the VAPID subject must be a mailto: or https: URL")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 3600
	}
	signer, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), cfg.VAPIDKey.Bytes())
	if err != nil {
		return nil, fmt.Errorf("web push: vapid key: %w", err)
	}
	return &WebPush{
		key: cfg.VAPIDKey, signer: signer, subject: cfg.Subject, ttl: strconv.Itoa(cfg.TTL),
		k:      base64.RawURLEncoding.EncodeToString(cfg.VAPIDKey.PublicKey().Bytes()),
		client: newH1Client(cfg.HTTP), now: time.Now, jwts: make(map[string]vapidToken),
	}, nil
}

// PublicKey is the VAPID public key (uncompressed point) browsers subscribe with.
func (w *WebPush) PublicKey() []byte { return w.key.PublicKey().Bytes() }

// head returns the header lines of a push to the push service at https://host, with its
// VAPID Authorization; the caller must not modify them.
func (w *WebPush) head(host string) ([]byte, error) {
	now := w.now()
	var buf [128]byte
	key := append(append(buf[:0], "https://"...), host...) // the origin, the JWT's audience
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.jwts[string(key)]; ok && now.Before(t.expires.Add(-vapidReuse)) {
		return t.head, nil
	}
	origin := string(key)
	exp := now.Add(vapidLifetime)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"aud": origin, "exp": exp.Unix(), "sub": w.subject}).SignedString(w.signer)
	if err != nil {
		return nil, fmt.Errorf("web push: sign vapid jwt: %w", err)
	}
	if len(w.jwts) >= maxVAPIDOrigins {
		clear(w.jwts) // push services are a handful of origins; this bounds a flood of others
	}
	h := "Content-Type: application/octet-stream\r\n" +
		"Content-Encoding: aes128gcm\r\n" +
		"TTL: " + w.ttl + "\r\n" +
		"Urgency: high\r\n" +
		"Topic: wake\r\n" + // RFC 8030 §5.4: a newer push replaces an undelivered one
		"Authorization: vapid t=" + tok + ", k=" + w.k + "\r\n" +
		"Content-Length: " + strconv.Itoa(webPushBodySize) + "\r\n"
	w.jwts[origin] = vapidToken{head: []byte(h), expires: exp}
	return w.jwts[origin].head, nil
}

const maxVAPIDOrigins = 1024

// webPushBodySize is the length of every push's body: the aes128gcm header (salt, rs,
// idlen, the 65-byte key id) and one record of webPushRecordSize.
const webPushBodySize = 16 + 4 + 1 + 65 + webPushRecordSize

// appendEncrypted appends to out payload sealed for a subscription as one aes128gcm record
// (RFC 8291 §3.4, RFC 8188 §2), padded to webPushRecordSize: webPushBodySize bytes.
func appendEncrypted(out, uaPublic, auth, payload []byte) ([]byte, error) {
	ua, err := ecdh.P256().NewPublicKey(uaPublic)
	if err != nil {
		return nil, fmt.Errorf("p256dh: %w", err)
	}
	as, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	secret, err := as.ECDH(ua)
	if err != nil {
		return nil, err
	}
	asPublic := as.PublicKey().Bytes()
	info := make([]byte, 0, 14+65+65)
	info = append(append(append(info, "WebPush: info\x00"...), uaPublic...), asPublic...)
	prkKey, err := hkdf.Extract(sha256.New, secret, auth)
	if err != nil {
		return nil, err
	}
	ikm, err := hkdf.Expand(sha256.New, prkKey, string(info), 32)
	if err != nil {
		return nil, err
	}
	var salt [16]byte
	rand.Read(salt[:])
	prk, err := hkdf.Extract(sha256.New, ikm, salt[:])
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	// Header: salt || rs || idlen || keyid (the application server's public key).
	out = append(out, salt[:]...)
	out = binary.BigEndian.AppendUint32(out, webPushRecordSize)
	out = append(out, byte(len(asPublic)))
	out = append(out, asPublic...)
	// Record: payload || 0x02 (last record) || zero padding, sealed.
	plain := make([]byte, webPushRecordSize-gcm.Overhead())
	if len(payload)+1 > len(plain) {
		return nil, errors.New("web push payload too large")
	}
	copy(plain, payload)
	plain[len(payload)] = 2
	return gcm.Seal(out, nonce, plain, nil), nil
}

// Push implements Provider.
func (w *WebPush) Push(ctx context.Context, t *notificationv1.RegisterPushTargetRequest) error {
	wp := t.GetWebPush()
	if wp == nil {
		return &PushError{Err: errors.New("not a web push target")}
	}
	u, err := url.Parse(wp.GetEndpoint())
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return &PushError{Err: errors.New("endpoint is not an https URL")}
	}
	target := u.RequestURI()
	if !printableASCII(u.Host) || !printableASCII(target) || strings.Contains(u.Host, "%") {
		// What url.Parse lets through but a request line or Host header must not carry
		// (spaces in a query, non-ASCII or zoned hosts): refused, never sent.
		return &PushError{Err: errors.New("endpoint has bytes an HTTP/1.1 request cannot carry")}
	}
	head, err := w.head(u.Host)
	if err != nil {
		return &PushError{Err: err}
	}
	// The whole request in one buffer, written in one TLS record: request line, Host, the
	// origin's header lines, then the sealed body appended in place.
	msg := make([]byte, 0, len("POST  HTTP/1.1\r\nHost: \r\n\r\n")+len(target)+len(u.Host)+len(head)+webPushBodySize)
	msg = append(append(append(msg, "POST "...), target...), " HTTP/1.1\r\nHost: "...)
	msg = append(append(append(append(msg, u.Host...), "\r\n"...), head...), "\r\n"...)
	msg, err = appendEncrypted(msg, wp.GetP256Dh(), wp.GetAuth(), wakePayload)
	if err != nil {
		return &PushError{Err: err}
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	status, err := w.client.do(ctx, addr, u.Hostname(), msg)
	if err != nil {
		return networkError(err)
	}
	switch {
	case status >= 200 && status < 300:
		return nil
	case status == http.StatusNotFound || status == http.StatusGone:
		// RFC 8030 §7.3: the subscription expired or was removed.
		return fmt.Errorf("%w: HTTP %d", ErrTargetGone, status)
	}
	return statusError(status, "")
}

// printableASCII reports whether s is only bytes from '!' to '~'.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
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
