package notification_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// webPushServer is a push service speaking RFC 8030: it checks the VAPID JWT (RFC 8292)
// against the key the request names and decrypts the aes128gcm payload (RFC 8291) with the
// subscription's private key, as a browser would.
type webPushServer struct {
	*httptest.Server
	t      testing.TB
	ua     *ecdh.PrivateKey
	auth   []byte
	vapid  []byte // the application server key subscriptions were made for
	mu     sync.Mutex
	got    []string         // decrypted payloads, in order
	status map[string][]int // path → statuses to answer in turn (then 201)
	hits   map[string]int
	errs   []error
}

func newWebPushServer(t testing.TB, vapid []byte) *webPushServer {
	ua, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := &webPushServer{t: t, ua: ua, auth: make([]byte, 16), vapid: vapid, status: map[string][]int{}, hits: map[string]int{}}
	rand.Read(s.auth)
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *webPushServer) fail(w http.ResponseWriter, err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
	http.Error(w, err.Error(), http.StatusBadRequest)
}

func (s *webPushServer) serve(w http.ResponseWriter, r *http.Request) {
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

func (s *webPushServer) checkVAPID(h string) error {
	rest, ok := strings.CutPrefix(h, "vapid ")
	if !ok {
		return errors.New("no vapid scheme")
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
		return errors.New("k is not the application server key")
	}
	ek, err := ecdh.P256().NewPublicKey(pub)
	if err != nil {
		return err
	}
	key, err := x509.ParsePKIXPublicKey(must(x509.MarshalPKIXPublicKey(ek)))
	if err != nil {
		return err
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return key.(*ecdsa.PublicKey), nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithExpirationRequired(), jwt.WithAudience(s.URL))
	if err != nil {
		return err
	}
	if exp, _ := claims.GetExpirationTime(); exp.After(time.Now().Add(24 * time.Hour)) {
		return errors.New("exp more than 24 hours ahead")
	}
	if sub, _ := claims.GetSubject(); !strings.HasPrefix(sub, "mailto:") && !strings.HasPrefix(sub, "https:") {
		return fmt.Errorf("sub %q", sub)
	}
	return nil
}

// decrypt undoes RFC 8291 §3.4 and RFC 8188 with the user agent's keys.
func (s *webPushServer) decrypt(body []byte) ([]byte, error) {
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
	secret, err := s.ua.ECDH(asPub)
	if err != nil {
		return nil, err
	}
	info := append(append([]byte("WebPush: info\x00"), s.ua.PublicKey().Bytes()...), asPub.Bytes()...)
	prkKey, _ := hkdf.Extract(sha256.New, secret, s.auth)
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

func (s *webPushServer) payloads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func (s *webPushServer) protocolErrors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

func (s *webPushServer) answer(path string, codes ...int) {
	s.mu.Lock()
	s.status[path] = codes
	s.mu.Unlock()
}

func (s *webPushServer) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// apnsServer is Apple's HTTP/2 provider API as documented: HTTP/2 only, a provider JWT
// signed ES256 with the key id and team id, and the push headers.
type apnsServer struct {
	*httptest.Server
	key    *ecdsa.PrivateKey
	keyID  string
	team   string
	mu     sync.Mutex
	tokens []string // device tokens pushed
	errs   []error
}

func newAPNsServer(t testing.TB, key *ecdsa.PrivateKey) *apnsServer {
	s := &apnsServer{key: key, keyID: "KEY1234567", team: "TEAM123456"}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.EnableHTTP2 = true
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *apnsServer) serve(w http.ResponseWriter, r *http.Request) {
	reject := func(code int, reason string, err error) {
		if err != nil {
			s.mu.Lock()
			s.errs = append(s.errs, err)
			s.mu.Unlock()
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"reason": reason})
	}
	if r.ProtoMajor != 2 {
		reject(http.StatusBadRequest, "BadProtocol", fmt.Errorf("HTTP/%d", r.ProtoMajor))
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("authorization"), "bearer ")
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return &s.key.PublicKey, nil }, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuedAt())
	if !ok || err != nil || parsed.Header["kid"] != s.keyID || claims["iss"] != s.team {
		reject(http.StatusForbidden, "InvalidProviderToken", fmt.Errorf("provider token: %v", err))
		return
	}
	for h, want := range map[string]string{"apns-push-type": "background", "apns-priority": "5", "apns-topic": "dev.guardyn.app"} {
		if r.Header.Get(h) != want {
			reject(http.StatusBadRequest, "BadHeader", fmt.Errorf("%s: %q", h, r.Header.Get(h)))
			return
		}
	}
	if r.Header.Get("apns-collapse-id") == "" || r.Header.Get("apns-expiration") == "" {
		reject(http.StatusBadRequest, "BadCollapseId", errors.New("no collapse id or expiration"))
		return
	}
	device, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if _, err := hex.DecodeString(device); !ok || err != nil {
		reject(http.StatusBadRequest, "BadPath", fmt.Errorf("path %s", r.URL.Path))
		return
	}
	var body struct {
		APS map[string]any `json:"aps"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.APS["content-available"] != float64(1) || len(body.APS) != 1 {
		reject(http.StatusBadRequest, "BadPayload", fmt.Errorf("payload %v, %v", body, err))
		return
	}
	if device == hex.EncodeToString([]byte("dead")) {
		reject(http.StatusGone, "Unregistered", nil)
		return
	}
	s.mu.Lock()
	s.tokens = append(s.tokens, device)
	s.mu.Unlock()
	w.Header().Set("apns-id", "00000000-0000-0000-0000-000000000001")
}

// fcmServer is the FCM HTTP v1 API and a Google OAuth2 token endpoint: a service account's
// signed JWT (RFC 7523) buys an access token, which the send endpoint demands.
type fcmServer struct {
	*httptest.Server
	key    *rsa.PrivateKey
	mu     sync.Mutex
	issued int
	sent   []string
	errs   []error
}

func newFCMServer(t testing.TB) *fcmServer {
	s := &fcmServer{key: must(rsa.GenerateKey(rand.Reader, 2048))}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *fcmServer) serviceAccount() []byte {
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(s.key))})
	return must(json.Marshal(map[string]string{
		"type": "service_account", "project_id": "guardyn-test", "private_key_id": "k1",
		"private_key": string(pemKey), "client_email": "push@guardyn-test.iam.gserviceaccount.com",
		"token_uri": s.URL + "/token",
	}))
}

func (s *fcmServer) failf(w http.ResponseWriter, code int, format string, args ...any) {
	s.mu.Lock()
	s.errs = append(s.errs, fmt.Errorf(format, args...))
	s.mu.Unlock()
	http.Error(w, "refused", code)
}

func (s *fcmServer) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/token":
		if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
			s.failf(w, http.StatusBadRequest, "token request: grant %q", r.PostForm.Get("grant_type"))
			return
		}
		claims := jwt.MapClaims{}
		_, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), claims, func(*jwt.Token) (any, error) { return &s.key.PublicKey, nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(s.URL+"/token"), jwt.WithExpirationRequired())
		if err != nil || claims["iss"] != "push@guardyn-test.iam.gserviceaccount.com" || !strings.Contains(fmt.Sprint(claims["scope"]), "firebase.messaging") {
			s.failf(w, http.StatusUnauthorized, "assertion: %v %v", err, claims)
			return
		}
		s.mu.Lock()
		s.issued++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "ya29.test-token", "token_type": "Bearer", "expires_in": 3600})
	case "/v1/projects/guardyn-test/messages:send":
		if r.Header.Get("Authorization") != "Bearer ya29.test-token" {
			s.failf(w, http.StatusUnauthorized, "send without the issued token: %q", r.Header.Get("Authorization"))
			return
		}
		var m struct {
			Message struct {
				Token        string            `json:"token"`
				Data         map[string]string `json:"data"`
				Notification any               `json:"notification"`
			} `json:"message"`
		}
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.Message.Token == "" || m.Message.Notification != nil {
			s.failf(w, http.StatusBadRequest, "message %v: %v", m, err)
			return
		}
		if m.Message.Token == "gone" {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`)
			return
		}
		s.mu.Lock()
		s.sent = append(s.sent, m.Message.Token)
		s.mu.Unlock()
		io.WriteString(w, `{"name":"projects/guardyn-test/messages/1"}`)
	default:
		s.failf(w, http.StatusNotFound, "path %s", r.URL.Path)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
