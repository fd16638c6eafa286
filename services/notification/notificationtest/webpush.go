// Package notificationtest holds a Web Push service for tests: it speaks RFC 8030, verifies
// VAPID (RFC 8292) and decrypts payloads (RFC 8291) as a browser would, so tests outside the
// notification package (the all-in-one server's) can check what a push carried.
package notificationtest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
)

// WebPushServer is a push service speaking RFC 8030: it checks the VAPID JWT (RFC 8292)
// against the key the request names and decrypts the aes128gcm payload (RFC 8291) with the
// subscription's private key, as a browser would.
type WebPushServer struct {
	*httptest.Server
	UA     *ecdh.PrivateKey // the subscription's key pair
	Auth   []byte           // the subscription's authentication secret
	vapid  []byte           // the application server key subscriptions were made for
	mu     sync.Mutex
	got    []string         // decrypted payloads, in order
	status map[string][]int // path → statuses to answer in turn (then 201)
	hits   map[string]int
	errs   []error
	// verified holds the Authorization headers whose JWT verified, with its expiry: an
	// application server reuses one JWT for many pushes (RFC 8292 §2), and a push
	// service checks a header it has seen only for expiry, as real ones do, rather
	// than verify the same ECDSA signature again.
	verified map[string]time.Time
	now      func() time.Time
}

// maxVerified bounds the cache of verified Authorization headers.
const maxVerified = 1024

// NewWebPushServer starts a push service for subscriptions made with the application
// server key vapid; it stops when the test ends.
func NewWebPushServer(t testing.TB, vapid []byte) *WebPushServer {
	s, err := StartWebPushServer(vapid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// StartWebPushServer is NewWebPushServer outside a test (a benchmark's push service in a
// process of its own); the caller closes it.
func StartWebPushServer(vapid []byte) (*WebPushServer, error) {
	ua, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s := &WebPushServer{UA: ua, Auth: make([]byte, 16), vapid: vapid, status: map[string][]int{}, hits: map[string]int{}, verified: map[string]time.Time{}, now: time.Now}
	rand.Read(s.Auth)
	cert, err := p256Certificate()
	if err != nil {
		return nil, err
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Server.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.Server.StartTLS()
	return s, nil
}

// p256Certificate is a self-signed ECDSA P-256 certificate for the names httptest's own
// covers (127.0.0.1, ::1, example.com). httptest's is RSA-2048, whose signature in every
// TLS handshake cost this server as much CPU as about a hundred pushes; push services
// serve ECDSA certificates too.
func p256Certificate() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"guardyn test push service"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"example.com"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("test push service certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func (s *WebPushServer) fail(w http.ResponseWriter, err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
	http.Error(w, err.Error(), http.StatusBadRequest)
}

func (s *WebPushServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8192))
	if r.Method != http.MethodPost || r.Header.Get("Content-Encoding") != "aes128gcm" || r.Header.Get("TTL") == "" {
		s.fail(w, fmt.Errorf("method %s, Content-Encoding %q, TTL %q", r.Method, r.Header.Get("Content-Encoding"), r.Header.Get("TTL")))
		return
	}
	if err := s.checkVAPID(r.Header.Get("Authorization")); err != nil {
		s.fail(w, fmt.Errorf("vapid: %w", err))
		return
	}
	plain, err := s.decrypt(body)
	if err != nil {
		s.fail(w, fmt.Errorf("rfc 8291: %w", err))
		return
	}
	s.mu.Lock()
	s.hits[r.URL.Path]++
	var code int
	if q := s.status[r.URL.Path]; len(q) > 0 {
		code, s.status[r.URL.Path] = q[0], q[1:]
	}
	if code == 0 {
		code = http.StatusCreated
		s.got = append(s.got, string(plain))
	}
	s.mu.Unlock()
	w.WriteHeader(code)
}

func (s *WebPushServer) checkVAPID(h string) error {
	s.mu.Lock()
	exp, ok := s.verified[h]
	s.mu.Unlock()
	if ok && s.now().Before(exp) {
		return nil
	}
	exp, err := s.verifyVAPID(h)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if len(s.verified) >= maxVerified {
		clear(s.verified)
	}
	s.verified[h] = exp
	s.mu.Unlock()
	return nil
}

// verifyVAPID verifies the VAPID JWT of an Authorization header and returns its expiry.
func (s *WebPushServer) verifyVAPID(h string) (time.Time, error) {
	rest, ok := strings.CutPrefix(h, "vapid ")
	if !ok {
		return time.Time{}, errors.New("no vapid scheme")
	}
	var tok, k string
	for _, part := range strings.Split(rest, ",") {
		part = strings.TrimSpace(part)
		if v, ok := strings.CutPrefix(part, "t="); ok {
			tok = v
		} else if v, ok := strings.CutPrefix(part, "k="); ok {
			k = v
		}
	}
	pub, err := base64.RawURLEncoding.DecodeString(k)
	if err != nil || !bytes.Equal(pub, s.vapid) {
		return time.Time{}, errors.New("k is not the application server key")
	}
	ek, err := ecdh.P256().NewPublicKey(pub)
	if err != nil {
		return time.Time{}, err
	}
	key, err := x509.ParsePKIXPublicKey(mustBytes(x509.MarshalPKIXPublicKey(ek)))
	if err != nil {
		return time.Time{}, err
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return key.(*ecdsa.PublicKey), nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithExpirationRequired(), jwt.WithAudience(s.URL), jwt.WithTimeFunc(s.now))
	if err != nil {
		return time.Time{}, err
	}
	exp, _ := claims.GetExpirationTime()
	if exp.After(s.now().Add(24 * time.Hour)) {
		return time.Time{}, errors.New("exp more than 24 hours ahead")
	}
	if sub, _ := claims.GetSubject(); !strings.HasPrefix(sub, "mailto:") && !strings.HasPrefix(sub, "https:") {
		return time.Time{}, fmt.Errorf("sub %q", sub)
	}
	return exp.Time, nil
}

// decrypt undoes RFC 8291 §3.4 and RFC 8188 with the user agent's keys.
func (s *WebPushServer) decrypt(body []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("short body")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if idlen != 65 || len(body) < 21+idlen {
		return nil, fmt.Errorf("keyid of %d bytes", idlen)
	}
	asPub, err := ecdh.P256().NewPublicKey(body[21 : 21+idlen])
	if err != nil {
		return nil, err
	}
	record := body[21+idlen:]
	if uint32(len(record)) > rs {
		return nil, fmt.Errorf("record of %d bytes over rs %d", len(record), rs)
	}
	secret, err := s.UA.ECDH(asPub)
	if err != nil {
		return nil, err
	}
	info := append(append([]byte("WebPush: info\x00"), s.UA.PublicKey().Bytes()...), asPub.Bytes()...)
	prkKey, _ := hkdf.Extract(sha256.New, secret, s.Auth)
	ikm, _ := hkdf.Expand(sha256.New, prkKey, string(info), 32)
	prk, _ := hkdf.Extract(sha256.New, ikm, salt)
	cek, _ := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
	nonce, _ := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, nonce, record, nil)
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexFunc(plain, func(r rune) bool { return r != 0 })
	if i < 0 || plain[i] != 2 {
		return nil, errors.New("no last-record delimiter")
	}
	return plain[:i], nil
}

func (s *WebPushServer) Payloads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func (s *WebPushServer) ProtocolErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

func (s *WebPushServer) Answer(path string, codes ...int) {
	s.mu.Lock()
	s.status[path] = codes
	s.mu.Unlock()
}

func (s *WebPushServer) Hits(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// Target is a registration of this server's subscription at path.
func (s *WebPushServer) Target(path string) *notificationv1.RegisterPushTargetRequest {
	return &notificationv1.RegisterPushTargetRequest{Target: &notificationv1.RegisterPushTargetRequest_WebPush{WebPush: &notificationv1.WebPushTarget{
		Endpoint: s.URL + path, P256Dh: s.UA.PublicKey().Bytes(), Auth: s.Auth,
	}}}
}

func mustBytes(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
