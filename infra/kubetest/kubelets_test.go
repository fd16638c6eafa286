package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// kubelets plays the kubelets of the simulated k3d nodes, over the API
// server's HTTP API with the test's administrator certificate, in place of
// kwok (whose build cost CI 7 minutes cold) and of the stages kwokctl gives
// it: it keeps every node Ready (its status and its Lease in
// kube-node-lease, so the node lifecycle controller neither taints it nor
// evicts its pods), marks each pod the scheduler bound to one of its nodes
// Running and Ready through the status subresource, completes a Job's pods,
// and removes terminating pods at once (grace period 0). It starts no
// container: scheduling, admission and the controllers are the real ones;
// only the node agent is played.
type kubelets struct {
	c     *cluster
	nodes map[string]int // name → index, for the node's IP
	// since is the nodes' lastTransitionTime: they are Ready from the start.
	since  string
	nextIP map[string]int // node → last host number handed out to a pod
}

const (
	// heartbeatInterval is how often a node's Lease and Ready condition are
	// renewed: kubelets renew every 10 s, and the controller-manager
	// declares a node unhealthy after 50 s without one (40 s before 1.32).
	heartbeatInterval = 10 * time.Second
	// leaseDuration is what a kubelet writes in its Lease.
	leaseDuration = 40
	// podInterval is how often pods are looked at: it bounds how long a
	// bound pod waits to become Ready.
	podInterval = time.Second
)

func newKubelets(c *cluster, nodes []string) *kubelets {
	k := &kubelets{c: c, nodes: map[string]int{}, since: now(), nextIP: map[string]int{}}
	for i, n := range nodes {
		k.nodes[n] = i
	}
	return k
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

// run heartbeats the nodes and tends the pods until ctx ends; a failed call
// is logged and retried on the next round, as a kubelet would.
func (k *kubelets) run(ctx context.Context) {
	pods := time.NewTicker(podInterval)
	defer pods.Stop()
	beat := time.NewTicker(heartbeatInterval)
	defer beat.Stop()
	k.heartbeat(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			k.heartbeat(ctx)
		case <-pods.C:
			k.tendPods(ctx)
		}
	}
}

func (k *kubelets) nodeIP(name string) string { return fmt.Sprintf("10.0.0.%d", k.nodes[name]+2) }

// heartbeat reports every node Ready and without pressure, and renews its
// Lease (creating it the first time).
func (k *kubelets) heartbeat(ctx context.Context) {
	t := now()
	renew := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	for name := range k.nodes {
		var conds []map[string]string
		for _, c := range []struct{ typ, status, reason, msg string }{
			{"Ready", "True", "KubeletReady", "kubelet is posting ready status"},
			{"MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"},
			{"DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"},
			{"PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"},
			{"NetworkUnavailable", "False", "RouteCreated", "simulated node network is up"},
		} {
			conds = append(conds, map[string]string{
				"type": c.typ, "status": c.status, "reason": c.reason, "message": c.msg,
				"lastHeartbeatTime": t, "lastTransitionTime": k.since,
			})
		}
		status := map[string]any{"status": map[string]any{
			"conditions": conds,
			"addresses":  []map[string]string{{"type": "InternalIP", "address": k.nodeIP(name)}, {"type": "Hostname", "address": name}},
			"phase":      "Running",
		}}
		if err := k.patch(ctx, "/api/v1/nodes/"+name+"/status", status); err != nil {
			k.logf(ctx, "kubelet %s: status: %v", name, err)
		}
		leasePath := "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + name
		err := k.patch(ctx, leasePath, map[string]any{"spec": map[string]any{"renewTime": renew}})
		if err != nil && isNotFound(err) {
			_, err = k.send(ctx, http.MethodPost, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", "application/json", map[string]any{
				"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
				"metadata": map[string]any{"name": name, "namespace": "kube-node-lease"},
				"spec":     map[string]any{"holderIdentity": name, "leaseDurationSeconds": leaseDuration, "renewTime": renew},
			})
		}
		if err != nil {
			k.logf(ctx, "kubelet %s: lease: %v", name, err)
		}
	}
}

// kubeletPod is the slice of a pod a kubelet reads.
type kubeletPod struct {
	Metadata meta `json:"metadata"`
	Spec     struct {
		NodeName       string      `json:"nodeName"`
		HostNetwork    bool        `json:"hostNetwork"`
		Containers     []container `json:"containers"`
		InitContainers []container `json:"initContainers"`
		ReadinessGates []struct {
			ConditionType string `json:"conditionType"`
		} `json:"readinessGates"`
	} `json:"spec"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

type container struct {
	Name          string `json:"name"`
	Image         string `json:"image"`
	RestartPolicy string `json:"restartPolicy"`
}

// tendPods removes terminating pods, starts pods bound to a node and
// completes the Running pods of a Job.
func (k *kubelets) tendPods(ctx context.Context) {
	var pods list[kubeletPod]
	if err := k.c.get("/api/v1/pods", &pods); err != nil {
		return
	}
	for _, p := range pods.Items {
		if _, mine := k.nodes[p.Spec.NodeName]; !mine {
			continue
		}
		path := "/api/v1/namespaces/" + p.Metadata.Namespace + "/pods/" + p.Metadata.Name
		var err error
		switch {
		case p.Metadata.DeletionTimestamp != nil:
			// What the kubelet does once the containers have stopped: none
			// ran, so at once.
			_, err = k.send(ctx, http.MethodDelete, path, "application/json", map[string]any{
				"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
				"preconditions": map[string]string{"uid": p.Metadata.UID},
			})
		case p.Status.Phase == "Pending":
			err = k.patch(ctx, path+"/status", k.running(&p))
		case p.Status.Phase == "Running" && ownedByJob(&p):
			err = k.patch(ctx, path+"/status", completed(&p))
		}
		if err != nil && !isNotFound(err) && !isConflict(err) {
			k.logf(ctx, "kubelet %s: pod %s/%s: %v", p.Spec.NodeName, p.Metadata.Namespace, p.Metadata.Name, err)
		}
	}
}

// logf logs a failed call, unless the test is over and ended it.
func (k *kubelets) logf(ctx context.Context, format string, args ...any) {
	if ctx.Err() == nil {
		k.c.t.Logf(format, args...)
	}
}

func ownedByJob(p *kubeletPod) bool {
	for _, o := range p.Metadata.OwnerReferences {
		if o.Kind == "Job" {
			return true
		}
	}
	return false
}

// running is the status a kubelet reports once every container has
// started and passed its readiness probe (none runs here).
func (k *kubelets) running(p *kubeletPod) map[string]any {
	t := now()
	conds := []map[string]string{
		{"type": "Initialized", "status": "True", "lastTransitionTime": t},
		{"type": "ContainersReady", "status": "True", "lastTransitionTime": t},
		{"type": "Ready", "status": "True", "lastTransitionTime": t},
	}
	for _, g := range p.Spec.ReadinessGates {
		conds = append(conds, map[string]string{"type": g.ConditionType, "status": "True", "lastTransitionTime": t})
	}
	started := map[string]any{"running": map[string]string{"startedAt": t}}
	var cs, ics []map[string]any
	for _, c := range p.Spec.Containers {
		cs = append(cs, map[string]any{"name": c.Name, "image": c.Image, "imageID": "", "ready": true, "started": true, "restartCount": 0, "state": started})
	}
	for _, c := range p.Spec.InitContainers {
		s := map[string]any{"name": c.Name, "image": c.Image, "imageID": "", "restartCount": 0}
		if c.RestartPolicy == "Always" { // a sidecar keeps running
			s["ready"], s["started"], s["state"] = true, true, started
		} else {
			s["ready"], s["state"] = true, map[string]any{"terminated": map[string]any{"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t}}
		}
		ics = append(ics, s)
	}
	hostIP := k.nodeIP(p.Spec.NodeName)
	podIP := hostIP
	if !p.Spec.HostNetwork {
		k.nextIP[p.Spec.NodeName]++
		n := k.nextIP[p.Spec.NodeName]
		podIP = fmt.Sprintf("10.42.%d.%d", k.nodes[p.Spec.NodeName]*4+n/250, n%250+2)
	}
	status := map[string]any{
		"phase": "Running", "startTime": t, "conditions": conds,
		"containerStatuses": cs,
		"hostIP":            hostIP, "hostIPs": []map[string]string{{"ip": hostIP}},
		"podIP": podIP, "podIPs": []map[string]string{{"ip": podIP}},
	}
	if len(ics) > 0 {
		status["initContainerStatuses"] = ics
	}
	return map[string]any{"status": status}
}

// completed is the status of a Job's pod whose containers exited 0.
func completed(p *kubeletPod) map[string]any {
	t := now()
	var cs []map[string]any
	for _, c := range p.Spec.Containers {
		cs = append(cs, map[string]any{"name": c.Name, "image": c.Image, "imageID": "", "ready": false, "started": false, "restartCount": 0,
			"state": map[string]any{"terminated": map[string]any{"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t}}})
	}
	return map[string]any{"status": map[string]any{
		"phase": "Succeeded", "containerStatuses": cs,
		"conditions": []map[string]string{
			{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": t},
			{"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": t},
		},
	}}
}

// apiError is a response of the API server other than 2xx.
type apiError struct {
	code int
	body string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.code, e.body) }

func isNotFound(err error) bool {
	e, ok := err.(*apiError)
	return ok && e.code == http.StatusNotFound
}

func isConflict(err error) bool {
	e, ok := err.(*apiError)
	return ok && e.code == http.StatusConflict
}

// patch sends a strategic merge patch: lists such as conditions merge by
// their key (type), as a kubelet's status patches do.
func (k *kubelets) patch(ctx context.Context, path string, v any) error {
	_, err := k.send(ctx, http.MethodPatch, path, "application/strategic-merge-patch+json", v)
	return err
}

func (k *kubelets) send(ctx context.Context, method, path, contentType string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(k.c.server + path)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	resp, err := k.c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := readAll(resp)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return body, &apiError{code: resp.StatusCode, body: string(bytes.TrimSpace(body))}
	}
	return body, nil
}
