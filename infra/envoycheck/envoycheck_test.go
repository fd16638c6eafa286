package envoycheck

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	csrfv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/csrf/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/guardyn/guardyn/proto/apidesc"
	"github.com/guardyn/guardyn/tools/devserver/web"

	// Filter types the bad bootstraps use, so that they parse and the check, not the parser, refuses them.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/gzip/compressor/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/compressor/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
)

const bootstrapFile = "../k8s/base/apps/envoy-bootstrap.yaml"

// apiMethods reads every gRPC method of the Guardyn APIs from the descriptor
// set the services are generated from, keyed by the cluster that must serve
// it: guardyn.NAME.v1 is served by the Service (and Envoy cluster) NAME.
func apiMethods(t *testing.T) map[string][]string {
	t.Helper()
	files, err := apidesc.Files()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		pkg := string(fd.Package())
		parts := strings.Split(pkg, ".")
		if len(parts) != 3 || parts[0] != "guardyn" {
			return true
		}
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				out[parts[1]] = append(out[parts[1]], "/"+string(sd.FullName())+"/"+string(md.Name()))
			}
		}
		return true
	})
	if len(out) < 5 {
		t.Fatalf("descriptor set has services of %d packages, want the five Guardyn APIs: %v", len(out), out)
	}
	return out
}

// appPaths are requests for the web app's files: the root, index.html,
// hashed and precompressed assets, a file in a directory.
var appPaths = []string{"/", "/index.html", "/app.3f9a2c1d.js", "/main-5XJFG3KT.wasm", "/style.0a1b2c3d.css", "/assets/logo.svg"}

// notRouted are requests that must reach nothing: other methods on the app,
// gRPC services the platform runs but does not publish (health, reflection),
// and API names that do not exist.
func notRouted(methods map[string][]string) [][2]string {
	var out [][2]string
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"} {
		for _, p := range appPaths {
			out = append(out, [2]string{m, p})
		}
	}
	for _, p := range []string{"/grpc.health.v1.Health/Check", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "/guardyn.admin.v1.AdminService/Drain", "/metrics", "/healthz"} {
		out = append(out, [2]string{"POST", p})
	}
	for _, ms := range methods {
		for _, p := range ms {
			for _, m := range []string{"PUT", "DELETE", "OPTIONS"} {
				out = append(out, [2]string{m, p})
			}
		}
	}
	return out
}

// checkBootstrap is every check of the gateway's bootstrap, joined.
func checkBootstrap(data []byte, methods map[string][]string) error {
	b, err := Parse(data)
	if err != nil {
		return err
	}
	routes, err := Routes(b, "grpc")
	if err != nil {
		return err
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := CheckRoutes(routes, methods, "web", appPaths); err != nil {
		errs = append(errs, err)
	}
	for _, req := range notRouted(methods) {
		if r, ok := Match(routes, req[0], req[1]); ok {
			fail("%s %s: routed to cluster %q, want no route (404)", req[0], req[1], r.Cluster)
		}
	}
	// A GET of an API method reaches the app's server (which has no such
	// file), never a service.
	for _, ms := range methods {
		for _, p := range ms {
			if r, ok := Match(routes, "GET", p); ok && r.Cluster != "web" {
				fail("GET %s: routed to cluster %q, want the app's (404 there) or none", p, r.Cluster)
			}
		}
	}

	clusters := Clusters(b)
	for name := range methods {
		c, ok := clusters[name]
		if !ok {
			fail("no cluster %s", name)
			continue
		}
		if c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] == nil {
			fail("cluster %s: no HTTP/2 protocol options: gRPC needs HTTP/2 upstream", name)
		}
		if ep := endpoint(c); ep.GetAddress() != name+".apps.svc.cluster.local" || ep.GetPortValue() != 7443 {
			fail("cluster %s: endpoint %s:%d, want %s.apps.svc.cluster.local:7443 (the Service of that name)", name, ep.GetAddress(), ep.GetPortValue(), name)
		}
	}
	if c, ok := clusters["web"]; !ok {
		fail("no cluster web")
	} else if ep := endpoint(c); ep.GetAddress() != "web.apps.svc.cluster.local" || ep.GetPortValue() != 8080 {
		fail("cluster web: endpoint %s:%d, want web.apps.svc.cluster.local:8080 (the Service of apps/guardyn-web)", ep.GetAddress(), ep.GetPortValue())
	}

	hcm, err := HTTPConnectionManager(b, "grpc")
	if err != nil {
		return err
	}
	// Filters: CSRF (the origin check) first, no CORS, no compression.
	var filters []string
	for _, f := range hcm.GetHttpFilters() {
		filters = append(filters, f.GetName())
		switch {
		case strings.Contains(f.GetName(), "cors") || strings.Contains(f.GetTypedConfig().GetTypeUrl(), "cors"):
			fail("http filter %s: no CORS in the gateway: the app and the API share one origin, and no other may call the API", f.GetName())
		case strings.Contains(f.GetName(), "compressor") || strings.Contains(f.GetTypedConfig().GetTypeUrl(), "compressor"):
			fail("http filter %s: the app's files are precompressed (.br, .gz) and must reach browsers as built", f.GetName())
		case f.GetName() == "envoy.filters.http.csrf":
			var p csrfv3.CsrfPolicy
			if err := f.GetTypedConfig().UnmarshalTo(&p); err != nil {
				fail("csrf filter: %v", err)
				break
			}
			fe := p.GetFilterEnabled().GetDefaultValue()
			if fe.GetNumerator() != 100 || fe.GetDenominator() != typev3.FractionalPercent_HUNDRED || p.GetFilterEnabled().GetRuntimeKey() != "" {
				fail("csrf filter: enabled for %v, want 100%% of requests with no runtime key", p.GetFilterEnabled())
			}
			if len(p.GetAdditionalOrigins()) > 0 || p.GetShadowEnabled() != nil {
				fail("csrf filter: additional origins %v, shadow %v: want the request's own origin only, enforced", p.GetAdditionalOrigins(), p.GetShadowEnabled())
			}
		}
	}
	if want := []string{"envoy.filters.http.csrf", "envoy.filters.http.grpc_web", "envoy.filters.http.connect_grpc_bridge", "envoy.filters.http.router"}; !slices.Equal(filters, want) {
		fail("http filters %v, want %v (the origin check before any translation)", filters, want)
	}

	// The security headers: the app's server sets its own; Envoy adds the
	// same set, unless present, to everything else (the API's responses).
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		// (A virtual host's CORS policy needs the CORS filter, refused above.)
		if len(vh.GetTypedPerFilterConfig()) > 0 {
			fail("virtual host %s: a per-filter policy", vh.GetName())
		}
		got := http.Header{}
		for _, h := range vh.GetResponseHeadersToAdd() {
			if h.GetAppendAction() != corev3.HeaderValueOption_ADD_IF_ABSENT {
				fail("virtual host %s: response header %s: append_action %v, want ADD_IF_ABSENT (the app's server is the source of its headers)", vh.GetName(), h.GetHeader().GetKey(), h.GetAppendAction())
			}
			got.Add(h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		if want := web.SecurityHeaders(true); !reflect.DeepEqual(got, want) {
			fail("virtual host %s: response headers %v, want web.SecurityHeaders(true) = %v", vh.GetName(), got, want)
		}
		for _, h := range vh.GetRequestHeadersToRemove() {
			if strings.EqualFold(h, "accept-encoding") {
				fail("virtual host %s: removes Accept-Encoding: precompressed files would never be served", vh.GetName())
			}
		}
		for _, r := range vh.GetRoutes() {
			if len(r.GetResponseHeadersToAdd()) > 0 || len(r.GetRequestHeadersToRemove()) > 0 || len(r.GetResponseHeadersToRemove()) > 0 || len(r.GetTypedPerFilterConfig()) > 0 {
				fail("route %v: changes headers or filters per route; the virtual host does, once", r.GetMatch())
			}
		}
	}

	if a := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); a != "127.0.0.1" {
		fail("admin interface on %q: keep it on loopback, the probes listener exposes /ready and /stats/prometheus only", a)
	}
	probes, err := Routes(b, "probes")
	if err != nil {
		return err
	}
	for _, r := range probes {
		if r.Prefix != "" || (r.Path != "/ready" && r.Path != "/stats/prometheus") {
			fail("probes listener routes %+v: only the exact paths /ready and /stats/prometheus may reach the admin interface", r)
		}
	}
	return errors.Join(errs...)
}

func endpoint(c *clusterv3.Cluster) *corev3.SocketAddress {
	return c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
}

// TestBootstrap: the gateway's bootstrap is valid Envoy configuration; each
// API method (POST) reaches its service; /, /index.html and hashed assets
// (GET, HEAD) reach the app's server; nothing else is routed; no CORS, the
// CSRF origin check on, no compression; the API's responses get the app's
// security headers.
func TestBootstrap(t *testing.T) {
	data, err := os.ReadFile(bootstrapFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkBootstrap(data, apiMethods(t)); err != nil {
		t.Fatal(err)
	}
}

// TestBadBootstraps changes the real bootstrap one way at a time.
func TestBadBootstraps(t *testing.T) {
	data, err := os.ReadFile(bootstrapFile)
	if err != nil {
		t.Fatal(err)
	}
	good := string(data)
	methods := apiMethods(t)
	const appMatch = `{prefix: /, headers: [{name: ":method", string_match: {safe_regex: {regex: "GET|HEAD"}}}]}`
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown field", "stat_prefix: grpc", "stat_prefix: grpc\n                stat_prefx: x", "unknown field"},
		{"unknown filter type", "grpc_web.v3.GrpcWeb", "grpc_web.v3.GrpcWebX", "GrpcWebX"},
		{"invalid port", "port_value: 8080", "port_value: 80800", "PortValue"},
		{"empty cluster name", "route: {cluster: auth, timeout: 30s}", "route: {cluster: \"\", timeout: 30s}", "leads to no cluster"},
		{"negative connect timeout", "connect_timeout: 2s", "connect_timeout: -2s", "ConnectTimeout"},
		{"no socket address", "socket_address: {address: 127.0.0.1, port_value: 9901}\nstatic_resources", "pipe: {path: \"\"}\nstatic_resources", "Path"},
		{"route to the wrong cluster", "route: {cluster: media, timeout: 0s}", "route: {cluster: messaging, timeout: 0s}", `routed to cluster "messaging", want "media"`},
		{"misspelled service", "/guardyn.presence.v1.PresenceService/", "/guardyn.presence.v1.Presence/", "no route (want cluster presence)"},
		{"app route takes POST", `regex: "GET|HEAD"`, `regex: "GET|HEAD|POST"`, `POST /: routed to cluster "web", want no route`},
		{"app route takes any method", appMatch, "{prefix: /}", `PUT /index.html: routed to cluster "web"`},
		{"app route missing", appMatch, "{path: /nothing}", "GET /index.html: no route (want cluster web)"},
		{"app route to a service", "route: {cluster: web, timeout: 120s}", "route: {cluster: auth, timeout: 120s}", `GET /: routed to cluster "auth", want "web"`},
		{"API takes any method", "/guardyn.auth.v1.AuthService/, headers: [{name: \":method\", string_match: {exact: POST}}]}", "/guardyn.auth.v1.AuthService/}", `routed to cluster "auth", want the app's`},
		{"API route before the others catches all", "                        - match: {prefix: /guardyn.auth.v1.AuthService/", "                        - match: {prefix: /}\n                          route: {cluster: auth, timeout: 30s}\n                        - match: {prefix: /guardyn.auth.v1.AuthService/", `routed to cluster "auth", want "messaging"`},
		{"a route Match cannot emulate", appMatch, `{prefix: /, headers: [{name: "origin", present_match: true}]}`, "only one :method matcher"},
		{"web endpoint", "{address: web.apps.svc.cluster.local, port_value: 8080}", "{address: web.apps.svc.cluster.local, port_value: 7443}", "cluster web: endpoint"},
		{"no csrf filter", "                  - name: envoy.filters.http.csrf\n                    typed_config:\n                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy\n                      filter_enabled:\n                        default_value: {numerator: 100, denominator: HUNDRED}\n", "", "the origin check before any translation"},
		{"csrf filter in part", "{numerator: 100, denominator: HUNDRED}", "{numerator: 10, denominator: HUNDRED}", "csrf filter: enabled for"},
		{"cors filter", "                  - name: envoy.filters.http.router\n", "                  - name: envoy.filters.http.cors\n                    typed_config:\n                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors\n                  - name: envoy.filters.http.router\n", "no CORS in the gateway"},
		{"compressor filter", "                  - name: envoy.filters.http.router\n", "                  - name: envoy.filters.http.compressor\n                    typed_config:\n                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor\n                      compressor_library: {name: gzip, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip}}\n                  - name: envoy.filters.http.router\n", "must reach browsers as built"},
		{"a CSP other than the app's", "connect-src 'self'; worker-src", "connect-src *; worker-src", "want web.SecurityHeaders(true)"},
		{"a header missing", "                        - header: {key: x-frame-options, value: DENY}\n                          append_action: ADD_IF_ABSENT\n", "", "want web.SecurityHeaders(true)"},
		{"headers overwrite the app's", "append_action: ADD_IF_ABSENT", "append_action: OVERWRITE_IF_EXISTS_OR_ADD", "want ADD_IF_ABSENT"},
		{"Accept-Encoding removed", "                      routes:\n", "                      request_headers_to_remove: [accept-encoding]\n                      routes:\n", "removes Accept-Encoding"},
		{"admin exposed", "- match: {path: /ready}", "- match: {prefix: /}", "only the exact paths"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(good, tc.old, tc.new, 1)
			if bad == good {
				t.Fatalf("%q not in the bootstrap", tc.old)
			}
			if err := checkBootstrap([]byte(bad), methods); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	// A route no method uses is an error too (a service that does not exist).
	routes := []Route{{Prefix: "/guardyn.admin.v1.AdminService/", Cluster: "admin"}}
	if err := CheckRoutes(routes, nil, "web", nil); err == nil || !strings.Contains(err.Error(), "serves no method") {
		t.Fatalf("dangling route: err = %v", err)
	}
}
