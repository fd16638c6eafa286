// Package web serves what a browser needs from the all-in-one server, on one origin: the
// API over gRPC-Web and the Connect protocol, and the web app's static files (apps/web).
//
// Browsers cannot speak gRPC (they expose neither HTTP/2 framing nor trailers), so API
// calls arrive as gRPC-Web or Connect over HTTP/1.1 or HTTP/2 and connectrpc.com/vanguard
// translates each into a gRPC call on the platform's own grpc.Server (grpc.Server.ServeHTTP).
// Nothing is registered twice: a call from a browser passes the same interceptor pipeline
// (authentication, field limits, metrics, logs) and message limits as a native one, and the
// services apply the same rate limits. Vanguard is the maintained translator of the Connect
// project; improbable-eng/grpc-web, the older Go wrapper, has been archived. docs/web.md
// describes the port, CORS, headers and the browser forms of the streaming calls.
package web

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"strings"

	"connectrpc.com/vanguard"
	"connectrpc.com/vanguard/vanguardgrpc"
	"google.golang.org/grpc"
)

// Config chooses what the web handler serves and to whom.
type Config struct {
	// Origins may call the API from other origins (CORS), each a scheme://host[:port] such
	// as "https://app.example.org". The server's own origin always may and needs no entry.
	Origins []string
	// App holds the web app, index.html at its root (apps/web/dist); nil serves the API only.
	App fs.FS
	// MaxMessageBytes bounds one message as the gRPC server does; the translator buffers
	// no more than this (plus framing) of a request or response. Required.
	MaxMessageBytes int
	// TLS says the handler is served over TLS: responses carry Strict-Transport-Security.
	TLS bool
}

// NewHandler returns the web handler for the services registered on g: API calls go to
// g, other GET and HEAD requests to the app's files. Every response carries the security
// headers of docs/web.md.
func NewHandler(g *grpc.Server, cfg Config) (http.Handler, error) {
	if cfg.MaxMessageBytes <= 0 {
		return nil, errors.New("web config: MaxMessageBytes is required")
	}
	origins, err := parseOrigins(cfg.Origins)
	if err != nil {
		return nil, err
	}
	var app http.Handler = http.NotFoundHandler()
	if cfg.App != nil {
		app = newStatic(cfg.App)
	}
	api, err := vanguardgrpc.NewTranscoder(g,
		vanguard.WithDefaultServiceOptions(
			// The gRPC server refuses a larger message with RESOURCE_EXHAUSTED, as it does
			// natively; the translator must not buffer more than that before it can.
			vanguard.WithMaxMessageBufferBytes(uint32(cfg.MaxMessageBytes)+messageSlack),
		),
		vanguard.WithUnknownHandler(app),
	)
	if err != nil {
		return nil, fmt.Errorf("web: gRPC-Web translator: %w", err)
	}
	return &handler{api: api, origins: origins, tls: cfg.TLS, maxBody: int64(cfg.MaxMessageBytes)}, nil
}

// NewAppHandler returns a handler for the web app's files alone, with the origin policy and
// security headers of NewHandler: what a cluster runs behind Envoy (apps/guardyn-web), where
// Envoy routes the API to the services and every other GET or HEAD here. The all-in-one
// server's web port and the cluster so serve the app from this one handler, headers and all.
// A path no file answers is a 404; cfg.MaxMessageBytes is not used.
func NewAppHandler(cfg Config) (http.Handler, error) {
	if cfg.App == nil {
		return nil, errors.New("web config: App is required")
	}
	origins, err := parseOrigins(cfg.Origins)
	if err != nil {
		return nil, err
	}
	// No request body is ever read (GET and HEAD only), so no size limit applies.
	return &handler{api: newStatic(cfg.App), origins: origins, tls: cfg.TLS, maxBody: math.MaxInt64}, nil
}

// messageSlack lets a message of exactly the gRPC limit through the translator, so that
// the gRPC server, not the translator, decides and says why.
const messageSlack = 1 << 10

// parseOrigins checks each configured origin and returns them as a set.
func parseOrigins(list []string) (map[string]bool, error) {
	set := make(map[string]bool, len(list))
	for _, o := range list {
		if o == "*" || o == "null" {
			return nil, fmt.Errorf("web origin %q: list the origins that may call the API", o)
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("web origin %q: want scheme://host[:port]", o)
		}
		set[u.Scheme+"://"+strings.ToLower(u.Host)] = true
	}
	return set, nil
}
