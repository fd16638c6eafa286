package web

import (
	"fmt"
	"net/http"
	"strings"
)

// contentSecurityPolicy allows the app its own scripts, styles and WebAssembly and nothing
// else: no inline script or style, no eval (WebAssembly compilation is allowed on its own
// by 'wasm-unsafe-eval'), no plugins, no framing by anyone, no form posts, no <base>, and
// DOM sinks that take strings only through Trusted Types, so that a message rendered by
// mistake as HTML cannot run. The app talks to this origin only.
const contentSecurityPolicy = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; " +
	"style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; font-src 'self'; " +
	"connect-src 'self'; worker-src 'self'; manifest-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'"

// SecurityHeaders returns the headers every web response carries (tls: served over TLS,
// which adds Strict-Transport-Security). In a cluster Envoy adds the same set to the API's
// responses; infra/envoycheck holds its route table to this function.
func SecurityHeaders(tls bool) http.Header {
	h := http.Header{}
	setSecurityHeaders(h, tls)
	return h
}

// setSecurityHeaders sets the headers every web response carries, API and files alike.
func setSecurityHeaders(h http.Header, tls bool) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY") // frame-ancestors for browsers without CSP 2
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	// Calls will want the camera and microphone of this origin; nothing else is used.
	h.Set("Permissions-Policy", "camera=(self), microphone=(self), geolocation=(), payment=(), usb=()")
	if tls {
		h.Set("Strict-Transport-Security", "max-age=63072000")
	}
}

// CORS: what a page on an allowed origin may send and read. The access token travels in
// the Authorization header, never in a cookie, so no response allows credentials and no
// ambient authority exists for another origin to borrow.
const (
	corsAllowMethods = "GET, POST"
	corsAllowHeaders = "Authorization, Content-Type, Connect-Protocol-Version, Connect-Timeout-Ms, " +
		"Grpc-Timeout, X-Grpc-Web, X-User-Agent"
	corsExposeHeaders = "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, Content-Encoding, " +
		"Connect-Content-Encoding"
	corsMaxAge = "7200"
)

// handler applies the origin policy and security headers, then serves the API or a file.
type handler struct {
	api     http.Handler
	origins map[string]bool
	tls     bool
	maxBody int64 // MaxMessageBytes
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	setSecurityHeaders(hdr, h.tls)
	if len(h.origins) > 0 {
		hdr.Add("Vary", "Origin")
	}
	origin := r.Header.Get("Origin")
	if origin != "" && !h.sameOrigin(r, origin) {
		// A browser sends Origin on every cross-origin request, and the API's content
		// types need a preflight: a page elsewhere gets no further than this.
		if !h.origins[strings.ToLower(origin)] {
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
		hdr.Set("Access-Control-Allow-Origin", origin)
		hdr.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			hdr.Set("Access-Control-Allow-Methods", corsAllowMethods)
			hdr.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			hdr.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if h.connectUnaryTooLarge(w, r) {
		return
	}
	h.api.ServeHTTP(w, r)
}

// connectUnaryTooLarge refuses a Connect unary request whose body is over the message limit,
// with RESOURCE_EXHAUSTED as the gRPC server refuses such a message. Vanguard v0.4.0 would
// refuse it too, but as UNAVAILABLE, which clients retry. (gRPC-Web and Connect streaming
// frame each message with its length, which the translator checks itself; a body without
// Content-Length, which no browser sends, still gets UNAVAILABLE.)
func (h *handler) connectUnaryTooLarge(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost || r.ContentLength <= h.maxBody {
		return false
	}
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	if ct = strings.ToLower(strings.TrimSpace(ct)); ct != "application/proto" && ct != "application/json" {
		return false
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests) // Connect's HTTP status of resource_exhausted
	fmt.Fprintf(w, `{"code":"resource_exhausted","message":"message larger than max (%d vs. %d)"}`, r.ContentLength, h.maxBody)
	return true
}

// sameOrigin reports whether origin is the origin the request was sent to.
func (h *handler) sameOrigin(r *http.Request, origin string) bool {
	scheme := "http"
	if h.tls || r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(origin, scheme+"://"+r.Host)
}
