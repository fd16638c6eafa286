// Package envoycheck validates the Envoy bootstrap of the gRPC-Web gateway
// (infra/k8s/base/apps/envoy-bootstrap.yaml) without Envoy: it parses the
// file into envoy.config.bootstrap.v3.Bootstrap with the go-control-plane
// types (unknown fields and unknown typed_config types are errors), runs the
// generated ValidateAll (the protoc-gen-validate rules Envoy itself applies),
// and checks the gRPC route table against the Guardyn APIs: every method of
// every service reaches the cluster of that service, and no route leads
// anywhere else.
package envoycheck

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	// The typed_config types the bootstrap uses, so that their Any values resolve.
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

// Route is one route of the gateway's route table, in order.
type Route struct {
	Prefix, Path, Cluster string
}

// Routes returns the route table of the HTTP connection manager of the
// named listener.
func Routes(b *bootstrapv3.Bootstrap, listener string) ([]Route, error) {
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetName() != listener {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
					continue
				}
				var out []Route
				for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						out = append(out, Route{
							Prefix:  r.GetMatch().GetPrefix(),
							Path:    r.GetMatch().GetPath(),
							Cluster: r.GetRoute().GetCluster(),
						})
					}
				}
				return out, nil
			}
		}
		return nil, fmt.Errorf("envoy bootstrap: listener %q has no http_connection_manager", listener)
	}
	return nil, fmt.Errorf("envoy bootstrap: no listener %q", listener)
}

// Clusters returns the static clusters by name.
func Clusters(b *bootstrapv3.Bootstrap) map[string]*clusterv3.Cluster {
	out := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		out[c.GetName()] = c
	}
	return out
}

// Match returns the route Envoy picks for a request path: the first whose
// match applies.
func Match(routes []Route, path string) (Route, bool) {
	for _, r := range routes {
		if (r.Path != "" && r.Path == path) || (r.Path == "" && strings.HasPrefix(path, r.Prefix)) {
			return r, true
		}
	}
	return Route{}, false
}

// CheckRoutes checks the route table against the gRPC methods of each
// service: methods maps a cluster name to the full method paths
// ("/pkg.Service/Method") it must serve. Every method must reach its
// cluster, and every route must serve some method.
func CheckRoutes(routes []Route, methods map[string][]string) error {
	var errs []error
	used := map[int]bool{}
	clusters := make([]string, 0, len(methods))
	for c := range methods {
		clusters = append(clusters, c)
	}
	sort.Strings(clusters)
	for _, c := range clusters {
		for _, m := range methods[c] {
			r, ok := Match(routes, m)
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("method %s: no route (want cluster %s)", m, c))
			case r.Cluster != c:
				errs = append(errs, fmt.Errorf("method %s: routed to cluster %q, want %q", m, r.Cluster, c))
			}
			for i, rr := range routes {
				if rr == r {
					used[i] = true
					break
				}
			}
		}
	}
	for i, r := range routes {
		if !used[i] {
			errs = append(errs, fmt.Errorf("route %d (prefix %q, cluster %q) serves no method of any Guardyn API", i, r.Prefix, r.Cluster))
		}
	}
	return errors.Join(errs...)
}
