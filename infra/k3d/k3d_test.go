package k3d

import (
	"os"
	"strings"
	"testing"
)

func TestClusterConfig(t *testing.T) {
	data, err := os.ReadFile("cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	if *c.Servers != 3 || *c.Agents != 2 {
		t.Fatalf("servers %d agents %d", *c.Servers, *c.Agents)
	}
}

// TestBadConfigs changes one thing of the real config at a time and expects
// an error naming what is wrong.
func TestBadConfigs(t *testing.T) {
	data, err := os.ReadFile("cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	good := string(data)
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown field", "servers: 3", "servers: 3\nworkers: 2", "field workers not found"},
		{"misspelled nested field", "hostPort: \"5000\"", "hostport: \"5000\"", "field hostport not found"},
		{"wrong type", "agents: 2", "agents: two", "line 13: cannot unmarshal !!str `two`"},
		{"old apiVersion", "k3d.io/v1alpha5", "k3d.io/v1alpha4", "apiVersion"},
		{"wrong kind", "kind: Simple", "kind: Cluster", "kind"},
		{"no servers", "servers: 3", "servers: 0", "servers 0"},
		{"one server", "servers: 3", "servers: 1", "want servers: 3"},
		{"bad node filter", "nodeFilters: [loadbalancer]\n  - port: 443", "nodeFilters: [lb]\n  - port: 443", `nodeFilters "lb"`},
		{"bad port", "port: 80:80", "port: eighty", `ports[0] "eighty"`},
		{"flannel left on", "      - arg: --flannel-backend=none\n        nodeFilters: [server:*]\n", "", "--flannel-backend=none"},
		{"network policy left on", "--disable-network-policy", "--disable=servicelb", "--disable-network-policy"},
		{"latest k3s", "rancher/k3s:v1.34.4-k3s1", "rancher/k3s:latest", "pin a k3s version"},
		{"registry on another port", "hostPort: \"5000\"", "hostPort: \"5001\"", "guardyn-registry on host port 5000"},
		{"no 443", "port: 443:443", "port: 8443:443", "port 443"},
		{"broken registries.yaml", "mirrors:", "mirrorz:", "registries.config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := strings.Replace(good, tc.old, tc.new, 1)
			if bad == good {
				t.Fatalf("%q not in cluster.yaml", tc.old)
			}
			_, err := Load([]byte(bad))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("cluster.yaml")
	f.Add(data)
	f.Add([]byte("apiVersion: k3d.io/v1alpha5\nkind: Simple\nservers: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil && (c.APIVersion != "k3d.io/v1alpha5" || c.Kind != "Simple") {
			t.Fatalf("accepted %q %q", c.APIVersion, c.Kind)
		}
	})
}
