package promcheck

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"sigs.k8s.io/yaml"

	"github.com/guardyn/guardyn/libs/observe"
	"github.com/guardyn/guardyn/libs/server"
)

const (
	obsDir     = "../k8s/base/observability"
	rulesFile  = obsDir + "/prometheus/guardyn.rules.yml"
	configFile = obsDir + "/prometheus/prometheus.yml"
)

// Series Prometheus makes itself; no service registers them.
var synthetic = map[string]bool{"up": true}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`up{job="guardyn"} == 0`: {"up"},
		`sum by (service, method) (rate(guardyn_grpc_server_errors_total{code=~"Internal|Unknown"}[5m])) > 0`:                             {"guardyn_grpc_server_errors_total"},
		`histogram_quantile(0.99, sum by (le) (rate(guardyn_inbox_depth_bucket[$__rate_interval]))) > 1e3`:                                {"guardyn_inbox_depth_bucket"},
		`sum(rate(a_total[5m])) / on (pod) group_left (x) b{c="by (d)"} unless c offset 5m`:                                               {"a_total", "b", "c"},
		`max by (version, commit) (guardyn_build_info) * 0.5 + sum without (pod) (go_goroutines{job="guardyn", pod=~"a.b"}) or vector(1)`: {"go_goroutines", "guardyn_build_info"},
	} {
		if got := MetricNames(expr); !reflect.DeepEqual(got, want) {
			t.Errorf("MetricNames(%q) = %v, want %v", expr, got, want)
		}
	}
}

// registry builds the registry of a Guardyn binary the way every binary
// does: libs/observe's metrics (stores, bus, push, build info, Go and
// process collectors) plus libs/server's RPC metrics.
func registry(t *testing.T) *prometheus.Registry {
	t.Helper()
	o, err := observe.New(context.Background(), observe.Config{LogWriter: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close(context.Background()) })
	if _, err := server.New(server.Config{Observer: o, Register: func(grpc.ServiceRegistrar) {}}); err != nil {
		t.Fatal(err)
	}
	return o.Registry()
}

// registered reports whether reg has a metric of that name: registering a
// probe collector of the same name and another help text fails exactly when
// the name is taken (descriptors of one name must agree). A Vec that has seen
// no observation is not gathered, so Gather cannot tell.
func registered(reg *prometheus.Registry, name string) bool {
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "promcheck probe " + name})
	if err := reg.Register(probe); err != nil {
		return true
	}
	reg.Unregister(probe)
	return false
}

func checkNames(t *testing.T, reg *prometheus.Registry, where, expr string) {
	t.Helper()
	names := MetricNames(expr)
	if len(names) == 0 {
		t.Errorf("%s: %q reads no metric", where, expr)
	}
	for _, n := range names {
		if synthetic[n] {
			continue
		}
		if !slices.ContainsFunc(BaseName(n), func(b string) bool { return registered(reg, b) }) {
			t.Errorf("%s: %q reads %s, which no Guardyn service registers", where, expr, n)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func TestRulesQueryRegisteredMetrics(t *testing.T) {
	reg := registry(t)
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(data, &rf); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			checkNames(t, reg, "rule "+r.Alert, r.Expr)
			n++
		}
	}
	if n == 0 {
		t.Fatal("no rules")
	}
}

func TestDashboardsQueryRegisteredMetrics(t *testing.T) {
	reg := registry(t)
	files, err := filepath.Glob(obsDir + "/grafana/dashboards/*.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"auth.json", "media.json", "messaging.json", "notification.json", "presence.json"}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("dashboards %v, want one per service %v", got, want)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID    string `json:"uid"`
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(d.Panels) == 0 || d.UID == "" {
			t.Fatalf("%s: no uid or no panels", f)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				checkNames(t, reg, filepath.Base(f)+" panel "+p.Title, tg.Expr)
			}
		}
	}
}

// TestBadQueryIsCaught: a query of a metric no service registers fails.
func TestBadQueryIsCaught(t *testing.T) {
	reg := registry(t)
	for _, tc := range []struct {
		expr string
		ok   bool
	}{
		{`rate(guardyn_grpc_server_handled_total[5m])`, true},
		{`histogram_quantile(0.9, rate(guardyn_push_seconds_bucket[5m]))`, true},
		{`rate(guardyn_grpc_requests_total[5m])`, false},
		{`guardyn_push_seconds_buckets`, false},
	} {
		allOK := true
		for _, n := range MetricNames(tc.expr) {
			if !slices.ContainsFunc(BaseName(n), func(b string) bool { return registered(reg, b) }) {
				allOK = false
			}
		}
		if allOK != tc.ok {
			t.Errorf("%q: registered = %v, want %v", tc.expr, allOK, tc.ok)
		}
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: tools/ci/setup.sh installs it (Debian package prometheus)")
	}
	return p
}

func TestPromtoolChecksRulesAndConfig(t *testing.T) {
	tool := promtool(t)
	out, err := exec.Command(tool, "check", "rules", rulesFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	// The config names the rules at their path in the pod; point it here.
	// Debian's promtool is built without Kubernetes service discovery, so the
	// kubernetes_sd_configs are checked here and then swapped for a static
	// target: promtool checks the rest (relabelling, intervals, rule files).
	dir := t.TempDir()
	data, err := os.ReadFile(configFile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	rules, _ := filepath.Abs(rulesFile)
	cfg["rule_files"] = []any{rules}
	for _, sc := range cfg["scrape_configs"].([]any) {
		sc := sc.(map[string]any)
		sds, _ := sc["kubernetes_sd_configs"].([]any)
		if len(sds) == 0 {
			t.Fatalf("scrape config %v: no kubernetes_sd_configs", sc["job_name"])
		}
		for _, sd := range sds {
			checkKubernetesSD(t, sc["job_name"], sd)
		}
		delete(sc, "kubernetes_sd_configs")
		sc["static_configs"] = []any{map[string]any{"targets": []any{"127.0.0.1:7444"}}}
	}
	out2, _ := yaml.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), out2, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(tool, "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	// And a broken rule is refused (the check is not a no-op).
	bad := filepath.Join(dir, "bad.rules.yml")
	data, _ = os.ReadFile(rulesFile)
	if err := os.WriteFile(bad, []byte(strings.Replace(string(data), "> 0\n", "> > 0\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "check", "rules", bad).CombinedOutput(); err == nil {
		t.Fatalf("promtool accepted a broken expression:\n%s", out)
	}
}

// TestPrometheusRuleMatchesRuleFile: the PrometheusRule for
// prometheus-operator carries exactly the rules of the file.
func TestPrometheusRuleMatchesRuleFile(t *testing.T) {
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var file any
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	op, err := os.ReadFile(obsDir + "/operator.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(op), "\n---\n") {
		var obj struct {
			Kind string `json:"kind"`
			Spec any    `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		if obj.Kind == "PrometheusRule" {
			if !reflect.DeepEqual(obj.Spec, file) {
				t.Fatal("operator.yaml's PrometheusRule differs from prometheus/guardyn.rules.yml")
			}
			return
		}
	}
	t.Fatal("no PrometheusRule in operator.yaml")
}

// checkKubernetesSD holds a kubernetes_sd_config to the fields Prometheus
// documents for it (what Debian's promtool cannot check).
func checkKubernetesSD(t *testing.T, job, sd any) {
	t.Helper()
	m, ok := sd.(map[string]any)
	if !ok {
		t.Fatalf("job %v: kubernetes_sd_config is not a map", job)
	}
	for k := range m {
		switch k {
		case "role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata":
		default:
			t.Errorf("job %v: kubernetes_sd_config field %q is not one Prometheus knows", job, k)
		}
	}
	switch m["role"] {
	case "pod", "service", "endpoints", "endpointslice", "node", "ingress":
	default:
		t.Errorf("job %v: kubernetes_sd_config role %v", job, m["role"])
	}
	if ns, _ := m["namespaces"].(map[string]any); ns != nil {
		for k := range ns {
			if k != "names" && k != "own_namespace" {
				t.Errorf("job %v: namespaces field %q", job, k)
			}
		}
	}
}
