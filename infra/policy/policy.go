// Package policy checks rendered manifests (infra/render) against what every
// Guardyn workload must be before anyone applies it: non-root, read-only root
// filesystem, no privilege escalation, no capabilities, seccomp
// RuntimeDefault, requests and limits, liveness and readiness probes (the
// Guardyn binaries' /healthz and /readyz on the admin port), disruption
// budgets and anti-affinity for replicated tiers, images pinned (by digest in
// prod, never latest), a default-deny Cilium policy in every namespace and an
// allow rule for every port of every Service, no Secret in clear, and every
// public name under DOMAIN. Every violation names the object.
package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/guardyn/guardyn/infra/render"
)

// Namespaces are the seed's five namespaces; nothing else is deployed to.
var Namespaces = []string{"platform", "data", "messaging", "apps", "observability"}

// Options say how strict to be.
type Options struct {
	// Domain is the DOMAIN the overlay was rendered with.
	Domain string
	// Digests requires every image pinned by a real digest (prod).
	Digests bool
	// AllowPlaceholder accepts render.ZeroDigest where Digests applies: the
	// committed prod overlay, before the render step pins real digests.
	AllowPlaceholder bool
	// Nodes and NodeCPU, NodeMemory bound the sum of requests (the seed's
	// k3d cluster: 5 nodes of 2 CPU and 4 GiB).
	Nodes               int
	NodeCPU, NodeMemory string
}

// AdminPort is the Guardyn binaries' admin HTTP port in a pod
// (GUARDYN_ADMIN_ADDR=:7444): /healthz, /readyz, /metrics.
const AdminPort = 7444

var workloadKinds = map[string]bool{"Deployment": true, "StatefulSet": true, "DaemonSet": true, "Job": true, "CronJob": true, "Pod": true, "ReplicaSet": true}

var clusterScoped = map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true, "ClusterIssuer": true,
	"CiliumClusterwideNetworkPolicy": true, "CustomResourceDefinition": true, "StorageClass": true, "PersistentVolume": true}

// Check returns every violation in objs, joined, or nil.
func Check(objs []render.Object, opts Options) error {
	c := &checker{opts: opts, objs: objs}
	c.namespaces()
	c.workloads()
	c.networkPolicies()
	c.secrets()
	c.domain()
	c.capacity()
	return errors.Join(c.errs...)
}

type checker struct {
	opts Options
	objs []render.Object
	errs []error
}

func (c *checker) fail(o render.Object, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", o.ID(), fmt.Sprintf(format, args...)))
}

func (c *checker) namespaces() {
	for _, o := range c.objs {
		if clusterScoped[o.Kind] {
			if o.Kind == "Namespace" && !slices.Contains(Namespaces, o.Name) {
				c.fail(o, "not one of the namespaces %v", Namespaces)
			}
			continue
		}
		if !slices.Contains(Namespaces, o.Namespace) {
			c.fail(o, "namespace %q is not one of %v", o.Namespace, Namespaces)
		}
	}
}

// podSpec returns the pod template's spec and metadata of a workload.
func podSpec(o render.Object) (spec, meta map[string]any) {
	switch o.Kind {
	case "Pod":
		return m(o.Fields, "spec"), m(o.Fields, "metadata")
	case "CronJob":
		t := m(o.Fields, "spec", "jobTemplate", "spec", "template")
		return m(t, "spec"), m(t, "metadata")
	default:
		t := m(o.Fields, "spec", "template")
		return m(t, "spec"), m(t, "metadata")
	}
}

func (c *checker) workloads() {
	for _, o := range c.objs {
		if !workloadKinds[o.Kind] {
			continue
		}
		spec, meta := podSpec(o)
		if spec == nil {
			c.fail(o, "no pod template")
			continue
		}
		psc := m(spec, "securityContext")
		for _, k := range []string{"hostNetwork", "hostPID", "hostIPC"} {
			if b, _ := spec[k].(bool); b {
				c.fail(o, "%s: true", k)
			}
		}
		for _, v := range l(spec, "volumes") {
			if vm, _ := v.(map[string]any); vm["hostPath"] != nil {
				c.fail(o, "volume %v: hostPath", vm["name"])
			}
		}
		if sa, _ := spec["serviceAccountName"].(string); sa == "" {
			if b, ok := spec["automountServiceAccountToken"].(bool); !ok || b {
				c.fail(o, "automountServiceAccountToken must be false for a pod without its own service account")
			}
		}
		containers := l(spec, "containers")
		if len(containers) == 0 {
			c.fail(o, "no containers")
		}
		all := append(slices.Clone(containers), l(spec, "initContainers")...)
		for i, ci := range all {
			ctr, _ := ci.(map[string]any)
			c.container(o, psc, ctr, i < len(containers))
		}
		c.replicated(o, spec, meta)
	}
}

func (c *checker) container(o render.Object, psc, ctr map[string]any, main bool) {
	name, _ := ctr["name"].(string)
	where := "container " + name
	sc := m(ctr, "securityContext")
	nonRoot := func() bool {
		if b, ok := sc["runAsNonRoot"].(bool); ok {
			return b
		}
		b, _ := psc["runAsNonRoot"].(bool)
		return b
	}()
	if !nonRoot {
		c.fail(o, "%s: runAsNonRoot must be true (pod or container)", where)
	}
	if uid, ok := num(sc["runAsUser"]); ok && uid == 0 {
		c.fail(o, "%s: runAsUser 0", where)
	} else if uid, ok := num(psc["runAsUser"]); ok && uid == 0 {
		c.fail(o, "%s: runAsUser 0 (pod)", where)
	}
	if b, ok := sc["allowPrivilegeEscalation"].(bool); !ok || b {
		c.fail(o, "%s: allowPrivilegeEscalation must be false", where)
	}
	if b, _ := sc["privileged"].(bool); b {
		c.fail(o, "%s: privileged", where)
	}
	if b, _ := sc["readOnlyRootFilesystem"].(bool); !b {
		c.fail(o, "%s: readOnlyRootFilesystem must be true", where)
	}
	caps := m(sc, "capabilities")
	if !slices.Contains(strs(l(caps, "drop")), "ALL") {
		c.fail(o, "%s: capabilities.drop must contain ALL", where)
	}
	if len(l(caps, "add")) > 0 {
		c.fail(o, "%s: capabilities.add %v", where, l(caps, "add"))
	}
	seccomp, _ := m(sc, "seccompProfile")["type"].(string)
	if seccomp == "" {
		seccomp, _ = m(psc, "seccompProfile")["type"].(string)
	}
	if seccomp != "RuntimeDefault" {
		c.fail(o, "%s: seccompProfile.type must be RuntimeDefault (pod or container), is %q", where, seccomp)
	}
	res := m(ctr, "resources")
	for _, kind := range []string{"requests", "limits"} {
		for _, r := range []string{"cpu", "memory"} {
			v := m(res, kind)[r]
			if v == nil {
				c.fail(o, "%s: no %s %s", where, r, strings.TrimSuffix(kind, "s"))
				continue
			}
			if _, err := parseQuantity(fmt.Sprint(v), r == "cpu"); err != nil {
				c.fail(o, "%s: %s.%s %v: %v", where, kind, r, v, err)
			}
		}
	}
	image, _ := ctr["image"].(string)
	c.image(o, where, image)
	if !main {
		return
	}
	live, ready := m(ctr, "livenessProbe"), m(ctr, "readinessProbe")
	if live == nil {
		c.fail(o, "%s: no livenessProbe", where)
	}
	if ready == nil {
		c.fail(o, "%s: no readinessProbe", where)
	}
	if isGuardyn(image) {
		c.guardynProbe(o, where, ctr, live, "/healthz", "livenessProbe")
		c.guardynProbe(o, where, ctr, ready, "/readyz", "readinessProbe")
	}
}

// isGuardyn tells a Guardyn binary's image from a third-party one: logical
// names guardyn/NAME (the overlays rewrite them) and REPO/guardyn/NAME.
func isGuardyn(image string) bool {
	return strings.HasPrefix(image, "guardyn/") || strings.Contains(image, "/guardyn/")
}

func (c *checker) guardynProbe(o render.Object, where string, ctr, probe map[string]any, path, kind string) {
	hg := m(probe, "httpGet")
	if hg == nil {
		c.fail(o, "%s: %s must be httpGet %s on the admin port %d", where, kind, path, AdminPort)
		return
	}
	if p, _ := hg["path"].(string); p != path {
		c.fail(o, "%s: %s path %q, want %q", where, kind, p, path)
	}
	if port := resolvePort(ctr, hg["port"]); port != AdminPort {
		c.fail(o, "%s: %s port %v, want the admin port %d", where, kind, hg["port"], AdminPort)
	}
}

var (
	digestRE = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	tagRE    = regexp.MustCompile(`:[\w][\w.-]{0,127}$`)
)

func (c *checker) image(o render.Object, where, image string) {
	name, digest, hasDigest := strings.Cut(image, "@")
	switch {
	case image == "":
		c.fail(o, "%s: no image", where)
		return
	case strings.HasSuffix(name, ":latest"):
		c.fail(o, "%s: image %s uses the tag latest", where, image)
	case !hasDigest && !tagRE.MatchString(lastPart(name)):
		c.fail(o, "%s: image %s has neither tag nor digest", where, image)
	}
	if !c.opts.Digests {
		return
	}
	if !hasDigest || !digestRE.MatchString(image) {
		c.fail(o, "%s: image %s is not pinned by digest (prod deploys by digest from the release bundle)", where, image)
		return
	}
	if "@"+digest == "@"+render.ZeroDigest && !c.opts.AllowPlaceholder {
		c.fail(o, "%s: image %s carries the placeholder digest: render with the release bundle's images.json", where, image)
	}
}

func lastPart(s string) string {
	if i := strings.LastIndex(s, "/"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// replicated checks that a workload of more than one replica has a
// disruption budget and required anti-affinity on the node name.
func (c *checker) replicated(o render.Object, spec, meta map[string]any) {
	replicas, ok := num(m(o.Fields, "spec")["replicas"])
	if !ok {
		replicas = 1
	}
	if replicas < 2 || (o.Kind != "Deployment" && o.Kind != "StatefulSet") {
		return
	}
	labels := strMap(m(meta, "labels"))
	covered := false
	for _, p := range c.objs {
		if p.Kind == "PodDisruptionBudget" && p.Namespace == o.Namespace && selects(m(p.Fields, "spec", "selector"), labels) {
			covered = true
		}
	}
	if !covered {
		c.fail(o, "%d replicas and no PodDisruptionBudget selects its pods", replicas)
	}
	anti := false
	for _, t := range l(m(spec, "affinity", "podAntiAffinity"), "requiredDuringSchedulingIgnoredDuringExecution") {
		tm, _ := t.(map[string]any)
		if tm["topologyKey"] == "kubernetes.io/hostname" && selects(m(tm, "labelSelector"), labels) {
			anti = true
		}
	}
	if !anti {
		c.fail(o, "%d replicas and no required pod anti-affinity on kubernetes.io/hostname against its own pods", replicas)
	}
}

// networkPolicies checks a default-deny CiliumNetworkPolicy in every
// namespace and, for every Service port, an ingress rule of a policy
// selecting the Service's pods that allows that port.
func (c *checker) networkPolicies() {
	var cnps []render.Object
	for _, o := range c.objs {
		if o.Kind == "CiliumNetworkPolicy" {
			cnps = append(cnps, o)
		}
	}
	for _, ns := range Namespaces {
		deny := false
		for _, p := range cnps {
			sel := m(p.Fields, "spec", "endpointSelector")
			if p.Namespace == ns && sel != nil && len(sel) == 0 && isDenyAll(l(m(p.Fields, "spec"), "ingress")) && isDenyAll(l(m(p.Fields, "spec"), "egress")) {
				deny = true
			}
		}
		if !deny {
			c.errs = append(c.errs, fmt.Errorf("namespace %s: no default-deny CiliumNetworkPolicy (endpointSelector {}, ingress [{}], egress [{}])", ns))
		}
	}
	for _, svc := range c.objs {
		if svc.Kind != "Service" {
			continue
		}
		sel := strMap(m(svc.Fields, "spec", "selector"))
		pods := c.podsSelected(svc.Namespace, sel)
		if len(pods) == 0 {
			c.fail(svc, "selects no pod of the overlay")
			continue
		}
		for _, pi := range l(m(svc.Fields, "spec"), "ports") {
			port, _ := pi.(map[string]any)
			for _, pod := range pods {
				target := resolveServicePort(pod.spec, port)
				if target == 0 {
					c.fail(svc, "port %v: target %v is no container port of %s", port["name"], port["targetPort"], pod.owner.ID())
					continue
				}
				if !allowsIngress(cnps, svc.Namespace, pod.labels, target) {
					c.fail(svc, "port %v (%d on %s): no CiliumNetworkPolicy allows ingress to it", port["name"], target, pod.owner.ID())
				}
			}
		}
	}
}

func isDenyAll(rules []any) bool {
	if len(rules) != 1 {
		return false
	}
	r, _ := rules[0].(map[string]any)
	return len(r) == 0
}

type pod struct {
	owner  render.Object
	labels map[string]string
	spec   map[string]any
}

func (c *checker) podsSelected(ns string, sel map[string]string) []pod {
	if len(sel) == 0 {
		return nil
	}
	var out []pod
	for _, o := range c.objs {
		if !workloadKinds[o.Kind] || o.Namespace != ns {
			continue
		}
		spec, meta := podSpec(o)
		labels := strMap(m(meta, "labels"))
		if subset(sel, labels) {
			out = append(out, pod{o, labels, spec})
		}
	}
	return out
}

func allowsIngress(cnps []render.Object, ns string, labels map[string]string, port int) bool {
	for _, p := range cnps {
		if p.Namespace != ns || !selects(m(p.Fields, "spec", "endpointSelector"), labels) {
			continue
		}
		for _, ri := range l(m(p.Fields, "spec"), "ingress") {
			r, _ := ri.(map[string]any)
			if len(r) == 0 {
				continue
			}
			for _, tpi := range l(r, "toPorts") {
				tp, _ := tpi.(map[string]any)
				for _, ppi := range l(tp, "ports") {
					pp, _ := ppi.(map[string]any)
					if n, err := strconv.Atoi(fmt.Sprint(pp["port"])); err == nil && n == port {
						return true
					}
				}
			}
		}
	}
	return false
}

// secrets: Secrets come only from SOPS files (infra/secrets), never from
// the kustomize output, which is committed in clear.
func (c *checker) secrets() {
	for _, o := range c.objs {
		if o.Kind == "Secret" {
			c.fail(o, "a Secret in the rendered overlay: secrets live SOPS-encrypted in infra/k8s/secrets and are applied apart")
		}
	}
}

// domain: every public name is DOMAIN or under it, and no placeholder is left.
func (c *checker) domain() {
	d := c.opts.Domain
	if d == "" {
		c.errs = append(c.errs, errors.New("policy: no DOMAIN given"))
		return
	}
	under := func(h string) bool { return h == d || strings.HasSuffix(h, "."+d) }
	for _, o := range c.objs {
		switch o.Kind {
		case "Ingress":
			for _, ri := range l(m(o.Fields, "spec"), "rules") {
				r, _ := ri.(map[string]any)
				if h, _ := r["host"].(string); !under(h) {
					c.fail(o, "host %q is not under DOMAIN %q", h, d)
				}
			}
			for _, ti := range l(m(o.Fields, "spec"), "tls") {
				t, _ := ti.(map[string]any)
				for _, h := range strs(l(t, "hosts")) {
					if !under(h) {
						c.fail(o, "tls host %q is not under DOMAIN %q", h, d)
					}
				}
			}
		case "Certificate":
			if b, _ := m(o.Fields, "spec")["isCA"].(bool); b {
				continue
			}
			names := strs(l(m(o.Fields, "spec"), "dnsNames"))
			if len(names) == 0 {
				c.fail(o, "no dnsNames")
			}
			for _, h := range names {
				if !under(h) {
					c.fail(o, "dnsName %q is not under DOMAIN %q", h, d)
				}
			}
		}
		if s := findString(o.Fields, "DOMAIN"); s != "" {
			c.fail(o, "the placeholder DOMAIN is left in %q: the overlay's replacements miss it", s)
		}
	}
}

func findString(v any, needle string) string {
	switch t := v.(type) {
	case string:
		if strings.Contains(t, needle) && !strings.Contains(t, "GUARDYN_DOMAIN") && !strings.HasPrefix(t, "DOMAIN=") {
			return t
		}
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if k == "DOMAIN" || k == "key" { // the ConfigMap that carries it, a configMapKeyRef to it
				continue
			}
			if s := findString(t[k], needle); s != "" {
				return s
			}
		}
	case []any:
		for _, e := range t {
			if s := findString(e, needle); s != "" {
				return s
			}
		}
	}
	return ""
}

// capacity: the requests of all pods fit the cluster the overlay is for.
func (c *checker) capacity() {
	if c.opts.Nodes == 0 {
		return
	}
	var cpu, mem int64 // millicores, bytes
	for _, o := range c.objs {
		if !workloadKinds[o.Kind] {
			continue
		}
		replicas, ok := num(m(o.Fields, "spec")["replicas"])
		if !ok {
			replicas = 1
		}
		spec, _ := podSpec(o)
		for _, ci := range l(spec, "containers") {
			ctr, _ := ci.(map[string]any)
			req := m(ctr, "resources", "requests")
			q, _ := parseQuantity(fmt.Sprint(req["cpu"]), true)
			cpu += q * int64(replicas)
			q, _ = parseQuantity(fmt.Sprint(req["memory"]), false)
			mem += q * int64(replicas)
		}
	}
	nodeCPU, err1 := parseQuantity(c.opts.NodeCPU, true)
	nodeMem, err2 := parseQuantity(c.opts.NodeMemory, false)
	if err := errors.Join(err1, err2); err != nil {
		c.errs = append(c.errs, fmt.Errorf("policy: node capacity: %w", err))
		return
	}
	n := int64(c.opts.Nodes)
	if cpu > nodeCPU*n || mem > nodeMem*n {
		c.errs = append(c.errs, fmt.Errorf("requests sum to %dm CPU and %d MiB, over %d nodes of %s CPU and %s",
			cpu, mem>>20, c.opts.Nodes, c.opts.NodeCPU, c.opts.NodeMemory))
	}
}

// parseQuantity reads the Kubernetes quantities the manifests use: CPU in
// cores or millicores (returned in millicores), memory with a binary or
// decimal suffix (returned in bytes).
func parseQuantity(s string, cpu bool) (int64, error) {
	suffixes := []struct {
		s string
		f float64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"m", 1e-3}}
	f := 1.0
	num := s
	for _, x := range suffixes {
		if strings.HasSuffix(s, x.s) {
			num, f = strings.TrimSuffix(s, x.s), x.f
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || num == "" {
		return 0, fmt.Errorf("quantity %q is not a Kubernetes quantity", s)
	}
	if cpu {
		return int64(v * f * 1000), nil
	}
	return int64(v * f), nil
}

// Helpers over decoded YAML.

func m(v map[string]any, path ...string) map[string]any {
	for _, p := range path {
		next, _ := v[p].(map[string]any)
		v = next
	}
	return v
}

func l(v map[string]any, key string) []any {
	out, _ := v[key].([]any)
	return out
}

func strs(v []any) []string {
	var out []string
	for _, e := range v {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func strMap(v map[string]any) map[string]string {
	out := map[string]string{}
	for k, e := range v {
		out[k] = fmt.Sprint(e)
	}
	return out
}

func num(v any) (int, bool) {
	switch t := v.(type) {
	case float64:
		return int(t), true
	case int64:
		return int(t), true
	case int:
		return t, true
	}
	return 0, false
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// selects evaluates a label selector (matchLabels, matchExpressions with In
// and Exists) against pod labels. Cilium's "k8s:" prefix and its namespace
// label are read as Kubernetes labels of the policy's namespace.
func selects(sel map[string]any, labels map[string]string) bool {
	if sel == nil {
		return false
	}
	for k, v := range strMap(m(sel, "matchLabels")) {
		k = strings.TrimPrefix(k, "k8s:")
		if k == "io.kubernetes.pod.namespace" {
			continue
		}
		if labels[k] != v {
			return false
		}
	}
	for _, ei := range l(sel, "matchExpressions") {
		e, _ := ei.(map[string]any)
		key := strings.TrimPrefix(fmt.Sprint(e["key"]), "k8s:")
		if key == "io.kubernetes.pod.namespace" {
			continue
		}
		val, has := labels[key]
		switch e["operator"] {
		case "In":
			if !has || !slices.Contains(strs(l(e, "values")), val) {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func containerPorts(spec map[string]any) map[string]int {
	out := map[string]int{}
	for _, ci := range l(spec, "containers") {
		ctr, _ := ci.(map[string]any)
		for _, pi := range l(ctr, "ports") {
			p, _ := pi.(map[string]any)
			n, _ := num(p["containerPort"])
			out[fmt.Sprint(p["name"])] = n
			out[strconv.Itoa(n)] = n
		}
	}
	return out
}

func resolveServicePort(spec, port map[string]any) int {
	t := port["targetPort"]
	if t == nil {
		t = port["port"]
	}
	return containerPorts(spec)[fmt.Sprint(t)]
}

func resolvePort(ctr map[string]any, v any) int {
	for _, pi := range l(ctr, "ports") {
		p, _ := pi.(map[string]any)
		n, _ := num(p["containerPort"])
		if fmt.Sprint(p["name"]) == fmt.Sprint(v) || strconv.Itoa(n) == fmt.Sprint(v) {
			return n
		}
	}
	n, _ := num(v)
	return n
}
