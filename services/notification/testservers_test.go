package notification_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
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

	"github.com/golang-jwt/jwt/v5"
)

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
