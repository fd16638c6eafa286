package kubetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

const (
	// settleTimeout bounds the wait for an overlay's workloads to be ready;
	// the seed's overlays settle in well under a minute on 2 cores.
	settleTimeout = 150 * time.Second
	// unschedulableVerdict is how long a pod must stay Unschedulable before
	// the wait stops early: the scheduler retries, so a transient refusal is
	// not yet a verdict.
	unschedulableVerdict = 15 * time.Second
	// failedCreateVerdict is how many times a controller must fail to create
	// a pod before the wait stops early.
	failedCreateVerdict = 3
)

// The slices of the API objects the checks read.
type (
	list[T any] struct {
		Items []T `json:"items"`
	}
	meta struct {
		Name              string            `json:"name"`
		Namespace         string            `json:"namespace"`
		UID               string            `json:"uid"`
		Generation        int64             `json:"generation"`
		Labels            map[string]string `json:"labels"`
		Annotations       map[string]string `json:"annotations"`
		OwnerReferences   []ownerRef        `json:"ownerReferences"`
		DeletionTimestamp *string           `json:"deletionTimestamp"`
	}
	ownerRef struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	}
	condition struct {
		Type    string `json:"type"`
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	node struct {
		Metadata meta `json:"metadata"`
		Status   struct {
			Conditions []condition `json:"conditions"`
		} `json:"status"`
	}
	pvc struct {
		Metadata meta `json:"metadata"`
		Spec     struct {
			VolumeName       string   `json:"volumeName"`
			StorageClassName *string  `json:"storageClassName"`
			AccessModes      []string `json:"accessModes"`
			Resources        struct {
				Requests map[string]string `json:"requests"`
			} `json:"resources"`
		} `json:"spec"`
	}
	pod struct {
		Metadata meta `json:"metadata"`
		Spec     struct {
			NodeName string `json:"nodeName"`
			Affinity *struct {
				PodAntiAffinity *struct {
					Required []affinityTerm `json:"requiredDuringSchedulingIgnoredDuringExecution"`
				} `json:"podAntiAffinity"`
			} `json:"affinity"`
		} `json:"spec"`
		Status struct {
			Phase      string      `json:"phase"`
			Conditions []condition `json:"conditions"`
		} `json:"status"`
	}
	affinityTerm struct {
		LabelSelector *labelSelector `json:"labelSelector"`
		Namespaces    []string       `json:"namespaces"`
		TopologyKey   string         `json:"topologyKey"`
	}
	labelSelector struct {
		MatchLabels      map[string]string `json:"matchLabels"`
		MatchExpressions []struct {
			Key      string   `json:"key"`
			Operator string   `json:"operator"`
			Values   []string `json:"values"`
		} `json:"matchExpressions"`
	}
	// workload is a Deployment, StatefulSet or DaemonSet.
	workload struct {
		Kind     string `json:"kind"`
		Metadata meta   `json:"metadata"`
		Spec     struct {
			Replicas *int32 `json:"replicas"`
		} `json:"spec"`
		Status struct {
			ObservedGeneration     int64 `json:"observedGeneration"`
			ReadyReplicas          int32 `json:"readyReplicas"`
			DesiredNumberScheduled int32 `json:"desiredNumberScheduled"`
			NumberReady            int32 `json:"numberReady"`
		} `json:"status"`
	}
	pdb struct {
		Metadata meta `json:"metadata"`
		Spec     struct {
			Selector *labelSelector `json:"selector"`
		} `json:"spec"`
		Status struct {
			ObservedGeneration int64 `json:"observedGeneration"`
			DisruptionsAllowed int32 `json:"disruptionsAllowed"`
			CurrentHealthy     int32 `json:"currentHealthy"`
			DesiredHealthy     int32 `json:"desiredHealthy"`
			ExpectedPods       int32 `json:"expectedPods"`
		} `json:"status"`
	}
	event struct {
		InvolvedObject struct {
			Kind      string `json:"kind"`
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"involvedObject"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
		Count   int32  `json:"count"`
	}
	object struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   meta   `json:"metadata"`
	}
)

func (p *pod) ref() string { return "pod " + p.Metadata.Namespace + "/" + p.Metadata.Name }

func (w *workload) ref() string { return w.Kind + " " + w.Metadata.Namespace + "/" + w.Metadata.Name }

// ready reports whether every replica the workload asks for is ready.
func (w *workload) ready() (bool, string) {
	if w.Status.ObservedGeneration < w.Metadata.Generation {
		return false, "not yet observed by its controller"
	}
	if w.Kind == "DaemonSet" {
		if w.Status.NumberReady < w.Status.DesiredNumberScheduled || w.Status.DesiredNumberScheduled == 0 {
			return false, fmt.Sprintf("%d of %d pods ready", w.Status.NumberReady, w.Status.DesiredNumberScheduled)
		}
		return true, ""
	}
	want := int32(1)
	if w.Spec.Replicas != nil {
		want = *w.Spec.Replicas
	}
	if w.Status.ReadyReplicas < want {
		return false, fmt.Sprintf("%d of %d replicas ready", w.Status.ReadyReplicas, want)
	}
	return true, ""
}

// failedCreate returns the FailedCreate event of the workload or of one of
// its ReplicaSets seen most often, or nil.
func (w *workload) failedCreate(events []event) *event {
	var worst *event
	for i := range events {
		e := &events[i]
		io := e.InvolvedObject
		if io.Namespace != w.Metadata.Namespace {
			continue
		}
		mine := (io.Kind == w.Kind && io.Name == w.Metadata.Name) ||
			(w.Kind == "Deployment" && io.Kind == "ReplicaSet" && strings.HasPrefix(io.Name, w.Metadata.Name+"-"))
		if mine && (worst == nil || e.Count > worst.Count) {
			worst = e
		}
	}
	return worst
}

func (p *pod) ready() bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == "Ready" {
			return cond.Status == "True"
		}
	}
	return false
}

// scheduled returns whether the scheduler has bound the pod and, when it
// has refused to, its reason.
func (p *pod) scheduled() (bool, *condition) {
	if p.Spec.NodeName != "" {
		return true, nil
	}
	for i, cond := range p.Status.Conditions {
		if cond.Type == "PodScheduled" && cond.Status == "False" {
			return false, &p.Status.Conditions[i]
		}
	}
	return false, nil
}

// applyCRDs applies every CRD under dir server-side, as infra/README.md
// tells operators to, and waits until the API server serves them.
func (c *cluster) applyCRDs(dir string) {
	c.t.Helper()
	if _, err := c.kubectl(nil, "apply", "--server-side", "--field-manager=guardyn-operator", "-R", "-f", dir); err != nil {
		c.t.Fatalf("applying the CRDs of %s: %v", dir, err)
	}
	if _, err := c.kubectl(nil, "wait", "--for=condition=Established", "crd", "--all", "--timeout=3m"); err != nil {
		c.t.Fatalf("waiting for the CRDs of %s: %v", dir, err)
	}
}

// overlay is a kustomization applied to the cluster: the namespaces its
// objects went to, or why the API server refused it.
type overlay struct {
	dir        string
	namespaces []string
	refused    []string
}

// applyOverlay applies a kustomization (kubectl apply --server-side -k, not
// a dry run, with the API server's strict field validation).
func (c *cluster) applyOverlay(t *testing.T, dir string) overlay {
	t.Helper()
	o := overlay{dir: dir}
	out, err := c.kubectl(nil, "apply", "--server-side", "--field-manager=guardyn-operator", "-k", dir, "-o", "json")
	if err != nil {
		o.refused = []string{fmt.Sprintf("apply -k %s refused: %v", dir, err)}
		return o
	}
	applied, err := decodeApplied(out)
	if err != nil {
		o.refused = []string{fmt.Sprintf("apply -k %s: reading kubectl's output: %v", dir, err)}
		return o
	}
	if len(applied) == 0 {
		o.refused = []string{fmt.Sprintf("apply -k %s: no object applied", dir)}
		return o
	}
	namespaces := map[string]bool{}
	for _, obj := range applied {
		if obj.Kind == "Namespace" {
			namespaces[obj.Metadata.Name] = true
		} else if obj.Metadata.Namespace != "" {
			namespaces[obj.Metadata.Namespace] = true
		}
	}
	o.namespaces = sortedKeys(namespaces)
	t.Logf("%s: %d objects accepted in namespaces %v", dir, len(applied), o.namespaces)
	return o
}

// checkOverlay applies a kustomization and inspects what it started.
func (c *cluster) checkOverlay(t *testing.T, dir string) []string {
	t.Helper()
	o := c.applyOverlay(t, dir)
	if len(o.refused) > 0 {
		return o.refused
	}
	return c.inspect(t, o)
}

// inspect returns every problem of an applied overlay, each naming its
// object: a pod not scheduled, a workload not ready, a pod its controller
// could not create, a required anti-affinity broken, a
// PodDisruptionBudget that admits no eviction. With no problem so far it
// evicts one pod per budget through the eviction API and checks that
// everything settles again.
func (c *cluster) inspect(t *testing.T, o overlay) []string {
	t.Helper()
	st, problems := c.settle(o.namespaces)
	problems = append(problems, antiAffinityProblems(st.pods)...)
	problems = append(problems, pdbProblems(st)...)
	if len(problems) > 0 {
		return problems
	}
	evicted := 0
	for _, b := range st.pdbs {
		p := firstSelected(st.pods, b)
		if p == nil {
			continue
		}
		code, body, err := c.post(fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/eviction", p.Metadata.Namespace, p.Metadata.Name),
			map[string]any{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": map[string]string{"name": p.Metadata.Name, "namespace": p.Metadata.Namespace}})
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("evicting %s under PodDisruptionBudget %s/%s: %v", p.ref(), b.Metadata.Namespace, b.Metadata.Name, err))
		case code != http.StatusCreated:
			problems = append(problems, fmt.Sprintf("evicting %s under PodDisruptionBudget %s/%s: refused (%d): %s", p.ref(), b.Metadata.Namespace, b.Metadata.Name, code, strings.TrimSpace(string(body))))
		default:
			evicted++
		}
	}
	if len(problems) > 0 {
		return problems
	}
	if evicted > 0 {
		t.Logf("%s: evicted %d pods (one per PodDisruptionBudget); waiting for their replacements", o.dir, evicted)
		st, problems = c.settle(o.namespaces)
		problems = append(problems, antiAffinityProblems(st.pods)...)
	}
	// The simulated kubelets must have kept every node Ready all along (a
	// node without heartbeats is tainted after 50 s, and its pods evicted).
	problems = append(problems, c.nodeProblems()...)
	t.Logf("%s: %d pods scheduled on %d nodes, %d workloads ready, %d PodDisruptionBudgets admit an eviction",
		o.dir, len(st.pods), len(nodesUsed(st.pods)), len(st.workloads), len(st.pdbs))
	return problems
}

// nodeProblems names each node that is not Ready or carries a taint.
func (c *cluster) nodeProblems() []string {
	var nodes list[struct {
		node
		Spec struct {
			Taints []struct {
				Key    string `json:"key"`
				Effect string `json:"effect"`
			} `json:"taints"`
		} `json:"spec"`
	}]
	if err := c.get("/api/v1/nodes", &nodes); err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, n := range nodes.Items {
		ready := false
		for _, cond := range n.Status.Conditions {
			ready = ready || (cond.Type == "Ready" && cond.Status == "True")
		}
		if !ready {
			problems = append(problems, fmt.Sprintf("node %s: not Ready: %v", n.Metadata.Name, n.Status.Conditions))
		}
		for _, taint := range n.Spec.Taints {
			problems = append(problems, fmt.Sprintf("node %s: tainted %s:%s", n.Metadata.Name, taint.Key, taint.Effect))
		}
	}
	return problems
}

func decodeApplied(out []byte) ([]object, error) {
	var one struct {
		object
		Items []object `json:"items"`
	}
	if err := json.Unmarshal(out, &one); err != nil {
		return nil, err
	}
	if one.Kind == "List" {
		return one.Items, nil
	}
	return []object{one.object}, nil
}

// state is what the checks read of a set of namespaces.
type state struct {
	pods      []pod
	workloads []workload
	pdbs      []pdb
	// failedCreate are the controllers' FailedCreate events: a pod the
	// API server refused (admission, quota, a missing service account).
	failedCreate []event
}

func (c *cluster) read(namespaces []string) (state, error) {
	var st state
	for _, ns := range namespaces {
		var pods list[pod]
		if err := c.get("/api/v1/namespaces/"+ns+"/pods", &pods); err != nil {
			return st, err
		}
		for _, p := range pods.Items {
			if p.Metadata.DeletionTimestamp == nil {
				st.pods = append(st.pods, p)
			}
		}
		for _, kind := range []string{"Deployment", "StatefulSet", "DaemonSet"} {
			var ws list[workload]
			if err := c.get("/apis/apps/v1/namespaces/"+ns+"/"+strings.ToLower(kind)+"s", &ws); err != nil {
				return st, err
			}
			for _, w := range ws.Items {
				w.Kind = kind
				st.workloads = append(st.workloads, w)
			}
		}
		var pdbs list[pdb]
		if err := c.get("/apis/policy/v1/namespaces/"+ns+"/poddisruptionbudgets", &pdbs); err != nil {
			return st, err
		}
		st.pdbs = append(st.pdbs, pdbs.Items...)
		var events list[event]
		if err := c.get("/api/v1/namespaces/"+ns+"/events?fieldSelector=reason%3DFailedCreate", &events); err != nil {
			return st, err
		}
		st.failedCreate = append(st.failedCreate, events.Items...)
	}
	return st, nil
}

// settle waits until every workload of the namespaces is ready, every pod
// scheduled and every budget observed, or until a pod has been refused by
// the scheduler for unschedulableVerdict, or settleTimeout; it returns the
// last state and what was still wrong then.
func (c *cluster) settle(namespaces []string) (state, []string) {
	deadline := time.Now().Add(settleTimeout)
	refusedSince := map[string]time.Time{}
	for {
		if err := c.exited(); err != nil {
			return state{}, []string{err.Error()}
		}
		st, err := c.read(namespaces)
		if err != nil {
			return st, []string{err.Error()}
		}
		var problems []string
		verdict := false
		for i := range st.pods {
			p := &st.pods[i]
			ok, refusal := p.scheduled()
			if ok {
				delete(refusedSince, p.Metadata.UID)
				continue
			}
			msg := "not scheduled yet"
			if refusal != nil {
				msg = fmt.Sprintf("not scheduled: %s: %s", refusal.Reason, refusal.Message)
				if refusal.Reason == "Unschedulable" {
					since, seen := refusedSince[p.Metadata.UID]
					if !seen {
						refusedSince[p.Metadata.UID] = time.Now()
					} else if time.Since(since) >= unschedulableVerdict {
						verdict = true
					}
				}
			}
			problems = append(problems, fmt.Sprintf("%s (of %s): %s", p.ref(), owner(p), msg))
		}
		for i := range st.workloads {
			w := &st.workloads[i]
			ok, why := w.ready()
			if ok {
				continue
			}
			// A refusal seen a few times is the verdict: a transient one
			// (the namespace's service account not created yet) is not
			// repeated.
			if e := w.failedCreate(st.failedCreate); e != nil {
				why += fmt.Sprintf("; its pods are refused (%d times): %s", e.Count, e.Message)
				if e.Count >= failedCreateVerdict {
					verdict = true
				}
			}
			problems = append(problems, fmt.Sprintf("%s: %s", w.ref(), why))
		}
		// A budget's status lags its pods: wait until it counts the
		// ready pods it selects, or its verdict is stale.
		for _, b := range st.pdbs {
			healthy := int32(0)
			for i := range st.pods {
				if st.pods[i].Metadata.Namespace == b.Metadata.Namespace && st.pods[i].ready() && b.Spec.Selector.matches(st.pods[i].Metadata.Labels) {
					healthy++
				}
			}
			if b.Status.ObservedGeneration < b.Metadata.Generation || b.Status.CurrentHealthy != healthy {
				problems = append(problems, fmt.Sprintf("PodDisruptionBudget %s/%s: counts %d healthy pods, %d are ready",
					b.Metadata.Namespace, b.Metadata.Name, b.Status.CurrentHealthy, healthy))
			}
		}
		if len(problems) == 0 || verdict || time.Now().After(deadline) {
			return st, problems
		}
		time.Sleep(2 * time.Second)
	}
}

func owner(p *pod) string {
	if len(p.Metadata.OwnerReferences) == 0 {
		return "no controller"
	}
	o := p.Metadata.OwnerReferences[0]
	return o.Kind + " " + o.Name
}

// antiAffinityProblems checks, independently of the scheduler, that no two
// pods share a node where a required anti-affinity term on the node's
// hostname forbids it.
func antiAffinityProblems(pods []pod) []string {
	var problems []string
	for i := range pods {
		p := &pods[i]
		if p.Spec.NodeName == "" || p.Spec.Affinity == nil || p.Spec.Affinity.PodAntiAffinity == nil {
			continue
		}
		for _, term := range p.Spec.Affinity.PodAntiAffinity.Required {
			if term.TopologyKey != "kubernetes.io/hostname" {
				continue
			}
			nss := term.Namespaces
			if len(nss) == 0 {
				nss = []string{p.Metadata.Namespace}
			}
			for j := range pods {
				q := &pods[j]
				if i == j || q.Spec.NodeName != p.Spec.NodeName || !slices.Contains(nss, q.Metadata.Namespace) {
					continue
				}
				if term.LabelSelector.matches(q.Metadata.Labels) {
					problems = append(problems, fmt.Sprintf("%s and %s share node %s against %s's required anti-affinity", p.ref(), q.ref(), p.Spec.NodeName, p.ref()))
				}
			}
		}
	}
	return problems
}

// matches applies a label selector; a nil selector matches nothing, as in
// affinity terms.
func (s *labelSelector) matches(labels map[string]string) bool {
	if s == nil {
		return false
	}
	for k, v := range s.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	for _, e := range s.MatchExpressions {
		v, has := labels[e.Key]
		switch e.Operator {
		case "In":
			if !has || !slices.Contains(e.Values, v) {
				return false
			}
		case "NotIn":
			if has && slices.Contains(e.Values, v) {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		case "DoesNotExist":
			if has {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// pdbProblems names each budget that selects no pod or, with every pod
// healthy, still admits no voluntary disruption: such a budget blocks every
// node drain and upgrade.
func pdbProblems(st state) []string {
	var problems []string
	for _, b := range st.pdbs {
		ref := fmt.Sprintf("PodDisruptionBudget %s/%s", b.Metadata.Namespace, b.Metadata.Name)
		switch {
		case b.Status.ExpectedPods == 0:
			problems = append(problems, ref+": selects no pod")
		case b.Status.DisruptionsAllowed < 1:
			problems = append(problems, fmt.Sprintf("%s: admits no eviction with every pod healthy (healthy %d, needs %d, of %d pods): it would block every drain",
				ref, b.Status.CurrentHealthy, b.Status.DesiredHealthy, b.Status.ExpectedPods))
		}
	}
	return problems
}

func firstSelected(pods []pod, b pdb) *pod {
	for i := range pods {
		p := &pods[i]
		if p.Metadata.Namespace == b.Metadata.Namespace && p.Spec.NodeName != "" && b.Spec.Selector.matches(p.Metadata.Labels) {
			return p
		}
	}
	return nil
}

func nodesUsed(pods []pod) map[string]bool {
	m := map[string]bool{}
	for _, p := range pods {
		if p.Spec.NodeName != "" {
			m[p.Spec.NodeName] = true
		}
	}
	return m
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
