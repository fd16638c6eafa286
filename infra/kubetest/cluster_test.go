package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The seed's k3d cluster (infra/k3d/cluster.yaml): 3 servers and 2 agents.
// infra/README.md promises the overlays fit nodes of at least 2 CPU and 4 GiB
// allocatable; the simulated nodes have exactly that, so "requests fit" is
// checked at the bound the overlays are written against.
const (
	k3dClusterName = "guardyn"
	k3dServers     = 3
	k3dAgents      = 2
	nodeCPU        = "2"
	nodeMemory     = "4Gi"
	nodePods       = "110"
	nodeEphemeral  = "50Gi"
	// k3s' default StorageClass; no provisioner runs here, so the test binds
	// the claims itself (see cluster.provision).
	storageClass       = "local-path"
	storageProvisioner = "rancher.io/local-path"
	// How long a component may take to come up on a loaded 2-core machine.
	startTimeout = 3 * time.Minute
)

// binaries are the control-plane programs: kube-apiserver,
// kube-controller-manager, kube-scheduler and kubectl in dir
// (tools/ci/kube.sh), etcd from PATH (Debian's etcd-server). The nodes'
// kubelets are played by the test itself (kubelets_test.go).
type binaries struct {
	dir  string
	etcd string
}

func (b binaries) path(name string) string { return filepath.Join(b.dir, name) }

const installHint = "run `bash tools/ci/kube.sh` (builds kube-apiserver, kube-controller-manager, " +
	"kube-scheduler and kubectl v1.34.4 into ~/.cache/guardyn, about 15 min cold on " +
	"2 cores, and apt-installs etcd-server); tools/ci/setup.sh runs it in CI"

// findBinaries locates the control plane or fails the test saying how to
// install it: a test that skips when its cluster is missing would pass
// without ever applying a manifest.
func findBinaries(t *testing.T) binaries {
	t.Helper()
	dir := os.Getenv("GUARDYN_KUBE_BIN")
	if dir == "" {
		out, err := exec.Command("bash", filepath.Join(repoRoot(t), "tools/ci/kube.sh"), "--print-dir").Output()
		if err != nil {
			t.Fatalf("tools/ci/kube.sh --print-dir: %v", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	var missing []string
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			missing = append(missing, filepath.Join(dir, name))
		}
	}
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		missing = append(missing, "etcd on PATH")
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("control plane not installed (missing %s): %s", strings.Join(missing, ", "), installHint)
		t.Fatal(msg)
	}
	return binaries{dir: dir, etcd: etcd}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from the package directory: %v", err)
	}
	return root
}

// cluster is one control plane: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler on loopback with random ports,
// and the simulated nodes' kubelets, stopped when the test ends.
type cluster struct {
	t          *testing.T
	bin        binaries
	dir        string
	server     string
	kubeconfig string
	client     *http.Client
	procs      []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startCluster brings up a control plane with the seed's k3d nodes and
// waits until every node is Ready.
func startCluster(t *testing.T, bin binaries) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: bin, dir: scratchDir(t)}
	t.Cleanup(c.stop)

	pki := c.writePKI()
	etcdClient, etcdPeer := freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	c.start("etcd", bin.etcd,
		"--name=kubetest",
		"--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", etcdPeer),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", etcdPeer),
		fmt.Sprintf("--initial-cluster=kubetest=http://127.0.0.1:%d", etcdPeer),
		"--log-level=warn", "--logger=zap",
	)
	c.waitFor("etcd health", func() error {
		resp, err := http.Get(etcdURL + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var h struct{ Health string }
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			return err
		}
		if h.Health != "true" {
			return fmt.Errorf("health %q", h.Health)
		}
		return nil
	})

	apiPort := freePort(t)
	c.server = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	c.start("kube-apiserver", bin.path("kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--tls-cert-file="+pki.serverCert,
		"--tls-private-key-file="+pki.serverKey,
		"--client-ca-file="+pki.caCert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki.saPub,
		"--service-account-signing-key-file="+pki.saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	)
	c.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.tls}}
	c.waitFor("kube-apiserver /readyz", func() error {
		resp, err := c.client.Get(c.server + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
	c.kubeconfig = c.writeKubeconfig(pki)

	common := []string{
		"--kubeconfig=" + c.kubeconfig,
		"--authentication-kubeconfig=" + c.kubeconfig,
		"--authorization-kubeconfig=" + c.kubeconfig,
		"--bind-address=127.0.0.1",
		"--leader-elect=false",
	}
	c.start("kube-controller-manager", bin.path("kube-controller-manager"), append(common,
		fmt.Sprintf("--secure-port=%d", freePort(t)),
		"--service-account-private-key-file="+pki.saKey,
		"--root-ca-file="+pki.caCert,
		"--use-service-account-credentials=true",
		"--controllers=*",
	)...)
	c.start("kube-scheduler", bin.path("kube-scheduler"), append(common,
		fmt.Sprintf("--secure-port=%d", freePort(t)),
	)...)
	objs, nodes := k3dObjects()
	c.apply("k3d nodes and storage class", objs)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() { defer wg.Done(); newKubelets(c, nodes).run(ctx) }()
	c.waitFor("5 nodes Ready", func() error {
		var nodes list[node]
		if err := c.get("/api/v1/nodes", &nodes); err != nil {
			return err
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == "Ready" && cond.Status == "True" {
					ready++
				}
			}
		}
		if ready != k3dServers+k3dAgents {
			return fmt.Errorf("%d of %d nodes Ready", ready, k3dServers+k3dAgents)
		}
		return nil
	})
	c.waitFor("default service account", func() error {
		return c.get("/api/v1/namespaces/default/serviceaccounts/default", &struct{}{})
	})

	wg.Add(1)
	go func() { defer wg.Done(); c.provision(ctx) }()
	return c
}

// scratchDir is a directory removed when the test ends, on tmpfs when the
// machine has one: etcd fsyncs every write, which a loaded disk makes slow.
func scratchDir(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "guardyn-kubetest-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (c *cluster) start(name, path string, args ...string) {
	c.t.Helper()
	logPath := filepath.Join(c.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = c.dir
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
}

// stop ends the components in reverse order of start, and on failure shows
// the end of each one's log.
func (c *cluster) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if c.t.Failed() {
		for _, p := range c.procs {
			c.t.Logf("last lines of %s's log:\n%s", p.name, tail(p.log, 25))
		}
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exited reports a component that has stopped: none of them should while
// the test runs.
func (c *cluster) exited() error {
	for _, p := range c.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v); its log ends:\n%s", p.name, p.err, tail(p.log, 25))
		default:
		}
	}
	return nil
}

// waitFor polls check until it returns nil, failing the test when a
// component exits or startTimeout passes.
func (c *cluster) waitFor(what string, check func() error) {
	c.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if exitErr := c.exited(); exitErr != nil {
			c.t.Fatalf("waiting for %s: %v", what, exitErr)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %s: still %v after %v", what, err, startTimeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// kubectl runs kubectl against the cluster and returns its standard output;
// the error carries its standard error.
func (c *cluster) kubectl(stdin []byte, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin.path("kubectl"), append([]string{"--kubeconfig=" + c.kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// apply server-side applies objects (JSON) the harness itself needs.
func (c *cluster) apply(what string, objs []any) {
	c.t.Helper()
	b, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": objs})
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.kubectl(b, "apply", "--server-side", "--field-manager=kubetest", "-f", "-"); err != nil {
		c.t.Fatalf("applying %s: %v", what, err)
	}
}

// get reads one API path as JSON into v.
func (c *cluster) get(path string, v any) error {
	resp, err := c.client.Get(c.server + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := readAll(resp)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return json.Unmarshal(body, v)
}

// post sends a JSON body and returns the status code and response body.
func (c *cluster) post(path string, v any) (int, []byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.client.Post(c.server+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := readAll(resp)
	return resp.StatusCode, body, err
}

func readAll(resp *http.Response) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(bufio.NewReader(resp.Body))
	return buf.Bytes(), err
}

// k3dObjects are the seed cluster's nodes as k3s registers them (the labels
// k3s sets, plus infra/k3d/cluster.yaml's guardyn.dev/role), whose kubelets
// the test plays, and k3s' default local-path StorageClass; nodes are their
// names.
func k3dObjects() (objs []any, nodes []string) {
	addNode := func(role string, i int) {
		name := fmt.Sprintf("k3d-%s-%s-%d", k3dClusterName, role, i)
		nodes = append(nodes, name)
		labels := map[string]string{
			"beta.kubernetes.io/arch":          "amd64",
			"beta.kubernetes.io/os":            "linux",
			"beta.kubernetes.io/instance-type": "k3s",
			"kubernetes.io/arch":               "amd64",
			"kubernetes.io/os":                 "linux",
			"kubernetes.io/hostname":           name,
			"node.kubernetes.io/instance-type": "k3s",
			"guardyn.dev/role":                 role,
		}
		if role == "server" {
			labels["node-role.kubernetes.io/control-plane"] = "true"
			labels["node-role.kubernetes.io/master"] = "true"
			labels["node-role.kubernetes.io/etcd"] = "true"
		}
		resources := map[string]string{"cpu": nodeCPU, "memory": nodeMemory, "pods": nodePods, "ephemeral-storage": nodeEphemeral}
		objs = append(objs, map[string]any{
			"apiVersion": "v1", "kind": "Node",
			"metadata": map[string]any{
				"name":        name,
				"labels":      labels,
				"annotations": map[string]string{"node.alpha.kubernetes.io/ttl": "0"},
			},
			"status": map[string]any{
				"allocatable": resources,
				"capacity":    resources,
				"nodeInfo": map[string]string{
					"architecture": "amd64", "operatingSystem": "linux",
					"kubeletVersion": "v1.34.4+k3s1", "containerRuntimeVersion": "containerd://2.0.0-k3s1",
					// Required by the API's schema; a kubelet would report its own.
					"machineID": name, "systemUUID": name, "bootID": name,
					"kernelVersion": "6.1.0", "osImage": "K3s v1.34.4+k3s1", "kubeProxyVersion": "v1.34.4+k3s1",
				},
			},
		})
	}
	for i := range k3dServers {
		addNode("server", i)
	}
	for i := range k3dAgents {
		addNode("agent", i)
	}
	objs = append(objs, map[string]any{
		"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
		"metadata": map[string]any{
			"name":        storageClass,
			"annotations": map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		"provisioner":       storageProvisioner,
		"reclaimPolicy":     "Delete",
		"volumeBindingMode": "WaitForFirstConsumer",
	})
	return objs, nodes
}

// provision plays k3s' local-path provisioner: a claim of the local-path
// class on which the scheduler has chosen a node gets a volume on that node,
// which the controller-manager then binds. Without it no StatefulSet pod
// with a volumeClaimTemplate could ever be scheduled.
func (c *cluster) provision(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var claims list[pvc]
		if err := c.get("/api/v1/persistentvolumeclaims", &claims); err != nil {
			continue
		}
		for _, pc := range claims.Items {
			node := pc.Metadata.Annotations["volume.kubernetes.io/selected-node"]
			if node == "" || pc.Spec.VolumeName != "" || pc.Spec.StorageClassName == nil || *pc.Spec.StorageClassName != storageClass {
				continue
			}
			name := "pvc-" + pc.Metadata.UID
			pv := map[string]any{
				"apiVersion": "v1", "kind": "PersistentVolume",
				"metadata": map[string]any{
					"name":        name,
					"annotations": map[string]string{"pv.kubernetes.io/provisioned-by": storageProvisioner},
				},
				"spec": map[string]any{
					"capacity":                      map[string]string{"storage": pc.Spec.Resources.Requests["storage"]},
					"accessModes":                   pc.Spec.AccessModes,
					"storageClassName":              storageClass,
					"persistentVolumeReclaimPolicy": "Delete",
					"volumeMode":                    "Filesystem",
					"claimRef":                      map[string]string{"namespace": pc.Metadata.Namespace, "name": pc.Metadata.Name, "uid": pc.Metadata.UID},
					"hostPath":                      map[string]string{"path": "/var/lib/rancher/k3s/storage/" + name, "type": "DirectoryOrCreate"},
					"nodeAffinity": map[string]any{"required": map[string]any{"nodeSelectorTerms": []any{map[string]any{
						"matchExpressions": []any{map[string]any{"key": "kubernetes.io/hostname", "operator": "In", "values": []string{node}}},
					}}}},
				},
			}
			code, body, err := c.post("/api/v1/persistentvolumes", pv)
			if err == nil && code != http.StatusCreated && code != http.StatusConflict {
				c.t.Logf("provisioning %s/%s: %d %s", pc.Metadata.Namespace, pc.Metadata.Name, code, body)
			}
		}
	}
}

// pki holds the files of a throwaway certificate authority: the API
// server's serving certificate, an administrator's client certificate
// (system:masters, used by every component and kubectl) and the
// service-account signing key.
type pki struct {
	caCert, serverCert, serverKey, clientCert, clientKey, saKey, saPub string
	caPEM, clientCertPEM, clientKeyPEM                                 []byte
	tls                                                                *tls.Config
}

func (c *cluster) writePKI() *pki {
	c.t.Helper()
	dir := filepath.Join(c.dir, "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			c.t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	caKey := newKey(c.t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "guardyn-kubetest-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		c.t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		c.t.Fatal(err)
	}
	issue := func(serial int64, tmpl *x509.Certificate) ([]byte, []byte) {
		key := newKey(c.t)
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			c.t.Fatal(err)
		}
		return pemBlock("CERTIFICATE", der), pemKey(c.t, key)
	}
	serverCert, serverKey := issue(2, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
	})
	clientCert, clientKey := issue(3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "guardyn-kubetest", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	saKey := newKey(c.t)
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		c.t.Fatal(err)
	}
	caPEM := pemBlock("CERTIFICATE", caDER)
	p := &pki{
		caCert:        write("ca.crt", caPEM),
		serverCert:    write("apiserver.crt", serverCert),
		serverKey:     write("apiserver.key", serverKey),
		clientCert:    write("admin.crt", clientCert),
		clientKey:     write("admin.key", clientKey),
		saKey:         write("sa.key", pemKey(c.t, saKey)),
		saPub:         write("sa.pub", pemBlock("PUBLIC KEY", saPub)),
		caPEM:         caPEM,
		clientCertPEM: clientCert,
		clientKeyPEM:  clientKey,
	}
	pair, err := tls.X509KeyPair(clientCert, clientKey)
	if err != nil {
		c.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	p.tls = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pemKey(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("EC PRIVATE KEY", der)
}

// writeKubeconfig writes a kubeconfig for the administrator; JSON is YAML.
func (c *cluster) writeKubeconfig(p *pki) string {
	c.t.Helper()
	cfg := map[string]any{
		"apiVersion": "v1", "kind": "Config",
		"clusters": []any{map[string]any{"name": "kubetest", "cluster": map[string]any{
			"server": c.server, "certificate-authority-data": p.caPEM,
		}}},
		"users": []any{map[string]any{"name": "admin", "user": map[string]any{
			"client-certificate-data": p.clientCertPEM, "client-key-data": p.clientKeyPEM,
		}}},
		"contexts":        []any{map[string]any{"name": "kubetest", "context": map[string]any{"cluster": "kubetest", "user": "admin"}}},
		"current-context": "kubetest",
	}
	b, err := json.Marshal(cfg) // []byte fields become base64, as kubeconfig wants
	if err != nil {
		c.t.Fatal(err)
	}
	path := filepath.Join(c.dir, "kubeconfig")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}
