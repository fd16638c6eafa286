package notification

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	notificationv1 "github.com/guardyn/guardyn/proto/guardyn/notification/v1"
)

// Provider sends one content-free push to a target of its platform. Push returns nil when
// the push service accepted the push, an error wrapping ErrTargetGone when it says the
// target no longer exists (the target is then deleted), and a *PushError otherwise.
type Provider interface {
	Push(ctx context.Context, t *notificationv1.RegisterPushTargetRequest) error
}

// ErrTargetGone means the push service reports the target unregistered or invalid.
var ErrTargetGone = errors.New("push target gone")

// PushError is a push the service refused or could not take. Retryable ones (rate limits,
// server errors, network failures) are tried again with backoff; the others go to the
// dead letters at once.
type PushError struct {
	Status    int    // HTTP status, 0 for a network failure
	Reason    string // the push service's reason, if any; never a token or an endpoint
	Retryable bool
	Err       error
}

// Error names the HTTP status and the push service's reason only: the wrapped error of a
// network failure names the endpoint URL (a capability) and addresses, which must not
// reach logs or dead letters.
func (e *PushError) Error() string {
	if e.Status == 0 {
		if errors.Is(e.Err, errPrivateAddress) {
			return "push failed: " + errPrivateAddress.Error()
		}
		return "push failed: network error"
	}
	return fmt.Sprintf("push refused: HTTP %d %s", e.Status, e.Reason)
}

func (e *PushError) Unwrap() error { return e.Err }

// statusError classifies an HTTP answer of a push service.
func statusError(status int, reason string) error {
	return &PushError{Status: status, Reason: reason, Retryable: status == http.StatusTooManyRequests || status >= 500}
}

// networkError wraps a failed request: always retryable, except an endpoint that dials a
// non-public address, which never will succeed.
func networkError(err error) error {
	return &PushError{Err: err, Retryable: !errors.Is(err, errPrivateAddress)}
}

// drain reads at most limit bytes of a response body and closes it, so the connection is
// reused and a hostile endpoint cannot make us read for ever.
func drain(body io.ReadCloser, limit int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(body, limit))
	body.Close()
	return b
}

// HTTPOptions shape the HTTP client of a provider.
type HTTPOptions struct {
	// TLS, when set, replaces the default TLS configuration (tests trust their server's
	// certificate with it).
	TLS *tls.Config
	// AllowPrivate lets the client connect to loopback and private addresses; for tests
	// against local servers only. Off, every connection to a non-public address fails.
	AllowPrivate bool
	// Timeout bounds one push (0: 15s).
	Timeout time.Duration
}

// client returns an HTTP client for one provider. http2 asks for HTTP/2 (APNs speaks
// nothing else); without it every request in flight has a connection of its own, from a
// pool: on one multiplexed HTTP/2 connection concurrent pushes queue behind its single
// reader and writer (docs/perf-presence.md). Web Push has a leaner pool of its own
// (h1Client) on the same options.
func (o HTTPOptions) client(http2 bool) *http.Client {
	t := &http.Transport{
		DialContext:         newDialer(o.AllowPrivate).DialContext,
		ForceAttemptHTTP2:   http2,
		TLSClientConfig:     o.TLS,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	return &http.Client{
		Transport: t,
		Timeout:   timeout,
		// A push service answers; it never redirects. Following one would let an endpoint
		// send us anywhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
