package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guardyn/guardyn/infra/render"
)

const k8sRoot = "../k8s"

// The seed's k3d cluster: 5 nodes (3 servers, 2 agents) of 2 CPU and 4 GiB.
func clusterOpts(domain string) Options {
	return Options{Domain: domain, Nodes: 5, NodeCPU: "2", NodeMemory: "4Gi"}
}

func locks(t *testing.T) []*render.Lock {
	t.Helper()
	var out []*render.Lock
	for _, f := range []string{"testdata/images.json", "testdata/third-party.lock.json"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		l, err := render.ParseLock(data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

func mustRender(t *testing.T, opts render.Options) *render.Result {
	t.Helper()
	r, err := render.Render(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLocalOverlay(t *testing.T) {
	r := mustRender(t, render.Options{Root: k8sRoot, Overlay: "local"})
	if r.Domain != "guardyn.localhost" {
		t.Fatalf("local DOMAIN %q", r.Domain)
	}
	if err := Check(r.Objects, clusterOpts(r.Domain)); err != nil {
		t.Fatal(err)
	}
	assertKinds(t, r, "StatefulSet apps/guardyn-server", "Deployment apps/envoy", "StatefulSet data/tikv",
		"StatefulSet data/pd", "StatefulSet data/scylla", "StatefulSet messaging/nats", "StatefulSet observability/prometheus",
		"StatefulSet observability/loki", "StatefulSet observability/tempo", "Deployment observability/grafana",
		"Ingress apps/guardyn", "Certificate apps/guardyn-tls", "ClusterIssuer guardyn-ca")
}

// TestCommittedProdOverlay checks prod as kubectl kustomize renders it: every
// image pinned by digest, the placeholder digest allowed.
func TestCommittedProdOverlay(t *testing.T) {
	r := mustRender(t, render.Options{Root: k8sRoot, Overlay: "prod"})
	opts := clusterOpts(r.Domain)
	opts.Digests, opts.AllowPlaceholder = true, true
	if err := Check(r.Objects, opts); err != nil {
		t.Fatal(err)
	}
	// Without the allowance, the placeholder is refused, naming each container.
	opts.AllowPlaceholder = false
	err := Check(r.Objects, opts)
	if err == nil || !strings.Contains(err.Error(), "StatefulSet apps/auth: container auth: image ghcr.io/guardyn/auth@"+render.ZeroDigest+" carries the placeholder digest") {
		t.Fatalf("placeholder digests: err = %v", err)
	}
	assertKinds(t, r, "StatefulSet apps/auth", "StatefulSet apps/messaging", "StatefulSet apps/media",
		"StatefulSet apps/presence", "StatefulSet apps/notification", "ClusterIssuer letsencrypt")
}

// TestProdFromBundle renders prod as an operator deploys it: DOMAIN given,
// images from a bundle's images.json and the third-party lock.
func TestProdFromBundle(t *testing.T) {
	r := mustRender(t, render.Options{Root: k8sRoot, Overlay: "prod", Domain: "chat.example.com", Locks: locks(t)})
	opts := clusterOpts("chat.example.com")
	opts.Digests = true
	if err := Check(r.Objects, opts); err != nil {
		t.Fatal(err)
	}
	y := string(r.YAML)
	for _, want := range []string{
		"image: registry.example.org/guardyn/auth@sha256:",
		"image: docker.io/pingcap/tikv@sha256:",
		"host: chat.example.com",
		"host: grafana.chat.example.com",
		"- grafana.chat.example.com",
		"email: ops@chat.example.com",
		"value: https://grafana.chat.example.com",
	} {
		if !strings.Contains(y, want) {
			t.Errorf("rendered prod lacks %q", want)
		}
	}
	if strings.Contains(y, render.ZeroDigest) || strings.Contains(y, "guardyn.example.org") {
		t.Error("rendered prod still carries a placeholder digest or the committed DOMAIN")
	}
}

func assertKinds(t *testing.T, r *render.Result, ids ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, o := range r.Objects {
		have[o.ID()] = true
	}
	for _, id := range ids {
		if !have[id] {
			t.Errorf("no %s in the overlay", id)
		}
	}
}

// copyK8s copies infra/k8s to a temporary directory a test may break.
func copyK8s(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(k8sRoot, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(k8sRoot, p)
		if rel == "crds" {
			return filepath.SkipDir // not rendered
		}
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func edit(t *testing.T, root, file, old, new string) {
	t.Helper()
	p := filepath.Join(root, file)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), old, new, 1)
	if s == string(data) {
		t.Fatalf("%q not in %s", old, file)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBadInputs breaks one thing at a time; the render or the check fails
// with a message naming the object.
func TestBadInputs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		overlay string
		breakIt func(t *testing.T, root string)
		domain  string
		locks   bool
		want    string
	}{
		{name: "missing DOMAIN", overlay: "prod",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "overlays/prod/params.env", "DOMAIN=guardyn.example.org", "DOMIAN=guardyn.example.org")
			},
			want: "DOMAIN missing from overlays/prod/params.env (ConfigMap apps/guardyn-domain)"},
		{name: "empty DOMAIN", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "overlays/local/params.env", "DOMAIN=guardyn.localhost", "DOMAIN=")
			},
			want: "DOMAIN is empty in overlays/local/params.env (ConfigMap apps/guardyn-domain)"},
		{name: "DOMAIN not a DNS name", overlay: "prod", domain: "https://chat.example.com/",
			want: `DOMAIN "https://chat.example.com/" in overlays/prod/params.env (ConfigMap apps/guardyn-domain) is not a lower-case DNS name`},
		{name: "a host the replacements miss", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/apps/ingress.yaml", "    - host: DOMAIN\n", "    - host: DOMAIN\n      http:\n        paths:\n          - path: /\n            pathType: Prefix\n            backend:\n              service:\n                name: envoy\n                port: {name: grpc}\n    - host: admin.DOMAIN\n")
			},
			want: `Ingress apps/guardyn: host "admin.DOMAIN" is not under DOMAIN "guardyn.localhost"`},
		{name: "image not pinned by digest in prod", overlay: "prod", locks: true,
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "overlays/prod/kustomization.yaml", "  - name: docker.io/envoyproxy/envoy\n    digest: "+render.ZeroDigest+"\n", "")
			},
			want: "Deployment apps/envoy: container envoy: image docker.io/envoyproxy/envoy:v1.40.0 is not pinned by digest"},
		{name: "bundle without an image", overlay: "prod", locks: true,
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "overlays/prod/kustomization.yaml", "  - name: guardyn/auth\n", "  - name: guardyn/admin\n")
			},
			want: `render: image guardyn/admin: the release bundle's images.json has no image "admin"`},
		{name: "workload without limits", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/data/tikv.yaml", "            limits: {cpu: \"2\", memory: 2Gi}\n", "")
			},
			want: "StatefulSet data/tikv: container tikv: no cpu limit"},
		{name: "workload without memory request", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/apps/envoy.yaml", "requests: {cpu: 100m, memory: 64Mi}", "requests: {cpu: 100m}")
			},
			want: "Deployment apps/envoy: container envoy: no memory request"},
		{name: "root", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/messaging/nats.yaml", "runAsNonRoot: true", "runAsNonRoot: false")
			},
			want: "StatefulSet messaging/nats: container nats: runAsNonRoot must be true"},
		{name: "writable root filesystem", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/observability/loki-tempo.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
			},
			want: "StatefulSet observability/loki: container loki: readOnlyRootFilesystem must be true"},
		{name: "privilege escalation", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/data/pd.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true")
			},
			want: "StatefulSet data/pd: container pd: allowPrivilegeEscalation must be false"},
		{name: "capabilities kept", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/data/scylla.yaml", "capabilities: {drop: [ALL]}", "capabilities: {drop: [NET_RAW]}")
			},
			want: "StatefulSet data/scylla: container scylla: capabilities.drop must contain ALL"},
		{name: "no seccomp", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/observability/grafana.yaml", "seccompProfile: {type: RuntimeDefault}", "seccompProfile: {type: Unconfined}")
			},
			want: `Deployment observability/grafana: container grafana: seccompProfile.type must be RuntimeDefault (pod or container), is "Unconfined"`},
		{name: "Guardyn readiness not on /readyz", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/apps/allinone/allinone.yaml", "path: /readyz", "path: /healthz")
			},
			want: `StatefulSet apps/guardyn-server: container guardyn-server: readinessProbe path "/healthz", want "/readyz"`},
		{name: "latest", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/observability/prometheus.yaml", "prom/prometheus:v3.5.0", "prom/prometheus:latest")
			},
			want: "StatefulSet observability/prometheus: container prometheus: image docker.io/prom/prometheus:latest uses the tag latest"},
		{name: "replicated without PDB", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/data/tikv.yaml", "kind: PodDisruptionBudget", "kind: ConfigMap")
			},
			want: "StatefulSet data/tikv: 3 replicas and no PodDisruptionBudget selects its pods"},
		{name: "replicated without anti-affinity", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/messaging/nats.yaml", "topologyKey: kubernetes.io/hostname", "topologyKey: topology.kubernetes.io/zone")
			},
			want: "StatefulSet messaging/nats: 3 replicas and no required pod anti-affinity"},
		{name: "Service port no policy allows", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/data/policies.yaml", "        - ports: [{port: \"9042\", protocol: TCP}]\n    - fromEndpoints:\n        - matchLabels: {app.kubernetes.io/name: scylla}\n      toPorts:\n        - ports: [{port: \"7000\", protocol: TCP}, {port: \"9042\", protocol: TCP}]",
					"        - ports: [{port: \"19042\", protocol: TCP}]\n    - fromEndpoints:\n        - matchLabels: {app.kubernetes.io/name: scylla}\n      toPorts:\n        - ports: [{port: \"7000\", protocol: TCP}]")
			},
			want: "Service data/scylla: port cql (9042 on StatefulSet data/scylla): no CiliumNetworkPolicy allows ingress to it"},
		{name: "namespace without default deny", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/messaging/policies.yaml", "  ingress: [{}]\n  egress: [{}]\n", "  ingress: [{}]\n")
			},
			want: "namespace messaging: no default-deny CiliumNetworkPolicy"},
		{name: "a Secret in the overlay", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/apps/ingress.yaml", "---\napiVersion: networking.k8s.io/v1", "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: leaked\nstringData:\n  password: hunter2\n---\napiVersion: networking.k8s.io/v1")
			},
			want: "Secret apps/leaked: a Secret in the rendered overlay"},
		{name: "requests over the cluster", overlay: "local",
			breakIt: func(t *testing.T, root string) {
				edit(t, root, "base/data/scylla.yaml", "requests: {cpu: 250m, memory: 1Gi}", "requests: {cpu: \"3\", memory: 1Gi}")
			},
			want: "requests sum to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := copyK8s(t)
			if tc.breakIt != nil {
				tc.breakIt(t, root)
			}
			opts := render.Options{Root: root, Overlay: tc.overlay, Domain: tc.domain}
			if tc.locks {
				opts.Locks = locks(t)
			}
			r, err := render.Render(opts)
			if err == nil {
				copts := clusterOpts(r.Domain)
				copts.Digests = tc.overlay == "prod"
				copts.AllowPlaceholder = !tc.locks
				err = Check(r.Objects, copts)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to mention %q", err, tc.want)
			}
		})
	}
}
