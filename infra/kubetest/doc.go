// Package kubetest applies the Kubernetes manifests of infra/k8s to a real
// control plane in its tests (issue 20): etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler run on loopback, and the test
// plays the kubelets of the seed's k3d nodes (3 servers, 2 agents: Ready
// nodes with Lease heartbeats, bound pods reported Running), so every object of
// every overlay must be accepted by the API server and every pod scheduled by
// the real scheduler. The binaries come from tools/ci/kube.sh; the tests drive
// kubectl and read its JSON (no client-go in the product module). What the
// tests check and what they cannot (real containers, the Cilium datapath) is
// in docs/build.md. It is part of the infra module, whose tests .ci/run
// runs after tools/ci/setup.sh has built the control plane:
// cd infra && GOWORK=off go test ./kubetest/.
package kubetest
