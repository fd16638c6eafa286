// Package envoycheck validates the Envoy bootstrap of the gRPC-Web gateway
// (infra/k8s/base/apps/envoy-bootstrap.yaml) without Envoy: it parses the
// file into envoy.config.bootstrap.v3.Bootstrap with the go-control-plane
// types (unknown fields and unknown typed_config types are errors), runs the
// generated ValidateAll (the protoc-gen-validate rules Envoy itself applies),
// and checks the route table against the Guardyn APIs and the web app:
// every method of every service reaches the cluster of that service, the
// app's GET and HEAD requests reach the app's cluster, and no route leads
// anywhere else. [Match] emulates Envoy's route selection for the match
// features the bootstrap uses (path prefix or exact path, and the :method
// header); [Routes] refuses a route using any other feature rather than
// emulate it wrongly.
package envoycheck

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	// The typed_config types the bootstrap uses, so that their Any values resolve.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/connect_grpc_bridge/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/csrf/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_web/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Parse decodes a YAML bootstrap strictly and validates it with ValidateAll.
func Parse(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	return &b, nil
}

// Route is one route of the gateway's route table, in order: a request
// whose path has Prefix (or is Path) and whose method is one of Methods
// (nil: any) goes to Cluster.
type Route struct {
	Prefix, Path, Cluster string
	Methods               []string
}

// HTTPConnectionManager returns the HTTP connection manager of the named
// listener.
func HTTPConnectionManager(b *bootstrapv3.Bootstrap, listener string) (*hcmv3.HttpConnectionManager, error) {
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetName() != listener {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if err := f.GetTypedConfig().UnmarshalTo(&hcm); err == nil {
					return &hcm, nil
				}
			}
		}
		return nil, fmt.Errorf("envoy bootstrap: listener %q has no http_connection_manager", listener)
	}
	return nil, fmt.Errorf("envoy bootstrap: no listener %q", listener)
}

// Routes returns the route table of the HTTP connection manager of the
// named listener. A route that matches on anything but a path prefix or an
// exact path and the :method header, or that does not lead to a cluster, is
// an error: Match could not say where Envoy sends a request.
func Routes(b *bootstrapv3.Bootstrap, listener string) ([]Route, error) {
	hcm, err := HTTPConnectionManager(b, listener)
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		for i, r := range vh.GetRoutes() {
			rt, err := route(r)
			if err != nil {
				return nil, fmt.Errorf("envoy bootstrap: listener %q, virtual host %q, route %d: %w", listener, vh.GetName(), i, err)
			}
			out = append(out, rt)
		}
	}
	return out, nil
}

// methodsRE is the one regular expression form of a :method matcher that
// Match understands: a list of methods, GET|HEAD.
var methodsRE = regexp.MustCompile(`^[A-Z]+(\|[A-Z]+)*$`)

func route(r *routev3.Route) (Route, error) {
	m := r.GetMatch()
	out := Route{Prefix: m.GetPrefix(), Path: m.GetPath(), Cluster: r.GetRoute().GetCluster()}
	switch {
	case m.GetPathSpecifier() == nil:
		return Route{}, errors.New("no path match")
	case m.GetSafeRegex() != nil || m.GetPathSeparatedPrefix() != "" || m.GetConnectMatcher() != nil || m.GetPathMatchPolicy() != nil:
		return Route{}, fmt.Errorf("path match %v: only prefix and path are emulated", m.GetPathSpecifier())
	case len(m.GetQueryParameters()) > 0 || m.GetGrpc() != nil || m.GetTlsContext() != nil || len(m.GetDynamicMetadata()) > 0 ||
		m.GetRuntimeFraction() != nil || m.GetCaseSensitive() != nil || m.GetFilterState() != nil:
		return Route{}, errors.New("matches on more than path and :method")
	case r.GetRoute() == nil || out.Cluster == "":
		return Route{}, errors.New("leads to no cluster (only cluster routes are emulated)")
	}
	for _, h := range m.GetHeaders() {
		sm := h.GetStringMatch()
		if h.GetName() != ":method" || h.GetInvertMatch() || h.GetTreatMissingHeaderAsEmpty() || sm == nil || sm.GetIgnoreCase() || out.Methods != nil {
			return Route{}, fmt.Errorf("header matcher %v: only one :method matcher, exact or GET|HEAD, is emulated", h)
		}
		switch {
		case sm.GetExact() != "":
			out.Methods = []string{sm.GetExact()}
		case methodsRE.MatchString(sm.GetSafeRegex().GetRegex()):
			out.Methods = strings.Split(sm.GetSafeRegex().GetRegex(), "|")
		default:
			return Route{}, fmt.Errorf(":method matcher %v: only exact or METHOD|METHOD is emulated", sm)
		}
	}
	return out, nil
}

// Clusters returns the static clusters by name.
func Clusters(b *bootstrapv3.Bootstrap) map[string]*clusterv3.Cluster {
	out := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		out[c.GetName()] = c
	}
	return out
}

// Match returns the route Envoy picks for a request: the first whose
// match applies.
func Match(routes []Route, method, path string) (Route, bool) {
	for _, r := range routes {
		if r.Path != "" && r.Path != path || r.Path == "" && !strings.HasPrefix(path, r.Prefix) {
			continue
		}
		if r.Methods != nil && !slices.Contains(r.Methods, method) {
			continue
		}
		return r, true
	}
	return Route{}, false
}

// APIMethods are the HTTP methods API calls arrive with: gRPC, gRPC-Web and
// the Connect protocol all POST.
var APIMethods = []string{"POST"}

// AppMethods are the HTTP methods the web app's files are fetched with.
var AppMethods = []string{"GET", "HEAD"}

// CheckRoutes checks the route table against the gRPC methods of each
// service and the web app: methods maps a cluster name to the full method
// paths ("/pkg.Service/Method") it must serve, app names the cluster of the
// web app and appPaths paths of its files. Every API call (POST) must reach
// its cluster, every GET and HEAD of an app path the app's cluster, and
// every route must serve one of them. Whatever else a route table routes is
// checked by the caller with Match.
func CheckRoutes(routes []Route, methods map[string][]string, app string, appPaths []string) error {
	var errs []error
	used := map[int]bool{}
	use := func(r Route) {
		for i, rr := range routes {
			if rr.Prefix == r.Prefix && rr.Path == r.Path && rr.Cluster == r.Cluster && slices.Equal(rr.Methods, r.Methods) {
				used[i] = true
				return
			}
		}
	}
	clusters := make([]string, 0, len(methods))
	for c := range methods {
		clusters = append(clusters, c)
	}
	sort.Strings(clusters)
	want := func(method, path, cluster string) {
		r, ok := Match(routes, method, path)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s %s: no route (want cluster %s)", method, path, cluster))
		case r.Cluster != cluster:
			errs = append(errs, fmt.Errorf("%s %s: routed to cluster %q, want %q", method, path, r.Cluster, cluster))
		}
		if ok {
			use(r)
		}
	}
	for _, c := range clusters {
		for _, m := range methods[c] {
			for _, hm := range APIMethods {
				want(hm, m, c)
			}
		}
	}
	for _, p := range appPaths {
		for _, hm := range AppMethods {
			want(hm, p, app)
		}
	}
	for i, r := range routes {
		if !used[i] {
			errs = append(errs, fmt.Errorf("route %d (prefix %q, path %q, methods %v, cluster %q) serves no method of any Guardyn API and no file of the app", i, r.Prefix, r.Path, r.Methods, r.Cluster))
		}
	}
	return errors.Join(errs...)
}
