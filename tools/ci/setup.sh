#!/usr/bin/env bash
# Installs what CI needs on a fresh Debian machine, idempotently: nothing
# is done when every tool is already there, and apt-get update runs at most
# once. Go itself is the machine's (go.mod pins the language version); code
# generation and the build tools (gazelle, buildifier, staticcheck) need only
# Go and the module proxy. Nix evaluates the flake in tools/ci/nix-check.sh.
# With --no-kube it leaves the Kubernetes build (tools/ci/kube.sh) to the
# caller: .ci/run runs it in the background, beside `go test ./...`.
set -euo pipefail
build_kube=true
[ "${1:-}" = "--no-kube" ] && build_kube=false

need=()
command -v nix >/dev/null || need+=(nix-bin)
command -v git >/dev/null || need+=(git)
# Java and Maven run Apache Cassandra for the CQL suites (libs/cassandratest).
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
# promtool checks infra/'s Prometheus rules and config (infra/promcheck).
command -v promtool >/dev/null || need+=(prometheus)
# etcd for the Kubernetes control plane infra/kubetest applies infra/k8s to.
command -v etcd >/dev/null || need+=(etcd-server)
# node runs the client library compiled to WebAssembly (tools/repocheck
# TestClientLibraryRunsAsWebAssembly, through Go's lib/wasm/go_js_wasm_exec).
command -v node >/dev/null || need+=(nodejs)
# chromium runs the web app's browser tests (apps/web/webtest, driven by chromedp).
command -v chromium >/dev/null || need+=(chromium)

if [ "${#need[@]}" -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to apt-get install ${need[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
  # The package may start a system etcd on :2379; the tests run their own on
  # random ports.
  if command -v systemctl >/dev/null; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
fi

command -v go >/dev/null || { echo "setup: no go on PATH; install Go 1.26" >&2; exit 1; }
echo "setup: $(go version), $(nix --version), $(java -version 2>&1 | head -1), $(mvn -v 2>/dev/null | head -1), $(promtool --version 2>&1 | head -1)"

# The Kubernetes control plane (kube-apiserver, controller-manager,
# scheduler, kubectl), built from the module proxy into a cache keyed
# by version outside the checkout: minutes the first time, nothing after.
if $build_kube; then
  kube_bin=$(bash tools/ci/kube.sh | tail -1)
  echo "setup: Kubernetes control plane in $kube_bin"
fi
