package envoycheck

import (
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/guardyn/guardyn/proto/apidesc"
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

func TestBootstrap(t *testing.T) {
	data, err := os.ReadFile(bootstrapFile)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := Routes(b, "grpc")
	if err != nil {
		t.Fatal(err)
	}
	methods := apiMethods(t)
	if err := CheckRoutes(routes, methods); err != nil {
		t.Fatal(err)
	}
	clusters := Clusters(b)
	for name := range methods {
		c, ok := clusters[name]
		if !ok {
			t.Fatalf("no cluster %s", name)
		}
		if c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] == nil {
			t.Errorf("cluster %s: no HTTP/2 protocol options: gRPC needs HTTP/2 upstream", name)
		}
		ep := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if want := name + ".apps.svc.cluster.local"; ep.GetAddress() != want || ep.GetPortValue() != 7443 {
			t.Errorf("cluster %s: endpoint %s:%d, want %s:7443 (the Service of that name)", name, ep.GetAddress(), ep.GetPortValue(), want)
		}
	}
	if a := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); a != "127.0.0.1" {
		t.Errorf("admin interface on %q: keep it on loopback, the probes listener exposes /ready and /stats/prometheus only", a)
	}
	probes, err := Routes(b, "probes")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range probes {
		if r.Prefix != "" || (r.Path != "/ready" && r.Path != "/stats/prometheus") {
			t.Errorf("probes listener routes %+v: only the exact paths /ready and /stats/prometheus may reach the admin interface", r)
		}
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
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown field", "stat_prefix: grpc", "stat_prefix: grpc\n                stat_prefx: x", "unknown field"},
		{"unknown filter type", "grpc_web.v3.GrpcWeb", "grpc_web.v3.GrpcWebX", "GrpcWebX"},
		{"invalid port", "port_value: 8080", "port_value: 80800", "PortValue"},
		{"empty cluster name", "route: {cluster: auth, timeout: 30s}", "route: {cluster: \"\", timeout: 30s}", `routed to cluster "", want "auth"`},
		{"negative connect timeout", "connect_timeout: 2s", "connect_timeout: -2s", "ConnectTimeout"},
		{"no socket address", "socket_address: {address: 127.0.0.1, port_value: 9901}\nstatic_resources", "pipe: {path: \"\"}\nstatic_resources", "Path"},
		{"route to the wrong cluster", "route: {cluster: media, timeout: 0s}", "route: {cluster: messaging, timeout: 0s}", `routed to cluster "messaging", want "media"`},
		{"misspelled service", "/guardyn.presence.v1.PresenceService/", "/guardyn.presence.v1.Presence/", "no route (want cluster presence)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(good, tc.old, tc.new, 1)
			if bad == good {
				t.Fatalf("%q not in the bootstrap", tc.old)
			}
			b, err := Parse([]byte(bad))
			if err == nil {
				var routes []Route
				routes, err = Routes(b, "grpc")
				if err == nil {
					err = CheckRoutes(routes, methods)
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	// A route no method uses is an error too (a service that does not exist).
	routes := []Route{{Prefix: "/guardyn.admin.v1.AdminService/", Cluster: "admin"}}
	if err := CheckRoutes(routes, nil); err == nil || !strings.Contains(err.Error(), "serves no method") {
		t.Fatalf("dangling route: err = %v", err)
	}
}
