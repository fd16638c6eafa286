package notification

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
)

// FCMEndpoint is Firebase Cloud Messaging's HTTP v1 API.
const FCMEndpoint = "https://fcm.googleapis.com"

// fcmScope is the OAuth2 scope of the HTTP v1 API.
const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// FCMConfig configures Firebase Cloud Messaging delivery.
type FCMConfig struct {
	// ServiceAccountJSON is the service account key file from the Firebase console. Its
	// token_uri is where access tokens come from (the OAuth2 JWT bearer grant, RFC 7523).
	ServiceAccountJSON []byte
	// Endpoint overrides FCMEndpoint (tests).
	Endpoint string
	HTTP     HTTPOptions
}

// FCM sends pushes through the FCM HTTP v1 API with a service account's OAuth2 tokens.
type FCM struct {
	client  *http.Client
	sendURL string
}

type serviceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// NewFCM returns an FCM provider.
func NewFCM(cfg FCMConfig) (*FCM, error) {
	var sa serviceAccount
	if err := json.Unmarshal(cfg.ServiceAccountJSON, &sa); err != nil {
		return nil, fmt.Errorf("fcm: service account: %w", err)
	}
	if sa.Type != "service_account" || sa.ProjectID == "" || sa.ClientEmail == "" || sa.PrivateKey == "" || sa.TokenURI == "" {
		return nil, errors.New("fcm: service account JSON needs type service_account, project_id, client_email, private_key and token_uri")
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = FCMEndpoint
	}
	base := cfg.HTTP.client(true)
	jc := &jwt.Config{
		Email: sa.ClientEmail, PrivateKey: []byte(sa.PrivateKey), PrivateKeyID: sa.PrivateKeyID,
		Scopes: []string{fcmScope}, TokenURL: sa.TokenURI,
	}
	// Token requests go through the same guarded client as pushes.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, base)
	client := oauth2.NewClient(ctx, oauth2.ReuseTokenSource(nil, jc.TokenSource(ctx)))
	client.Timeout = base.Timeout
	client.CheckRedirect = base.CheckRedirect
	return &FCM{client: client, sendURL: strings.TrimSuffix(cfg.Endpoint, "/") + "/v1/projects/" + sa.ProjectID + "/messages:send"}, nil
}

type fcmMessage struct {
	Message struct {
		Token   string            `json:"token"`
		Data    map[string]string `json:"data"`
		Android struct {
			Priority    string `json:"priority"`
			CollapseKey string `json:"collapse_key"`
			TTL         string `json:"ttl"`
		} `json:"android"`
	} `json:"message"`
}

type fcmError struct {
	Error struct {
		Status  string `json:"status"`
		Details []struct {
			ErrorCode string `json:"errorCode"`
		} `json:"details"`
	} `json:"error"`
}

// Push implements Provider.
func (f *FCM) Push(ctx context.Context, t *notificationv1.RegisterPushTargetRequest) error {
	ft := t.GetFcm()
	if ft == nil {
		return &PushError{Err: errors.New("not an fcm target")}
	}
	var m fcmMessage
	m.Message.Token = ft.GetRegistrationToken()
	m.Message.Data = map[string]string{"wake": "1"}
	m.Message.Android.Priority = "high"
	m.Message.Android.CollapseKey = "guardyn-wake"
	m.Message.Android.TTL = "3600s"
	body, err := json.Marshal(&m)
	if err != nil {
		return &PushError{Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.sendURL, bytes.NewReader(body))
	if err != nil {
		return &PushError{Err: err}
	}
	req.Header.Set("content-type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return networkError(err)
	}
	b := drain(resp.Body, 16<<10)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var fe fcmError
	_ = json.Unmarshal(b, &fe)
	code := fe.Error.Status
	for _, d := range fe.Error.Details {
		if d.ErrorCode != "" {
			code = d.ErrorCode
		}
	}
	if resp.StatusCode == http.StatusNotFound || code == "UNREGISTERED" {
		return fmt.Errorf("%w: HTTP %d %s", ErrTargetGone, resp.StatusCode, code)
	}
	return statusError(resp.StatusCode, code)
}
