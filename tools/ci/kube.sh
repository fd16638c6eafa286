#!/usr/bin/env bash
# Builds the Kubernetes control plane that infra/k8s is applied to in CI
# (infra/kubetest): kube-apiserver, kube-controller-manager, kube-scheduler
# and kubectl from k8s.io/kubernetes, from the Go module proxy into a cache
# outside the checkout keyed by version, so a repeat run finds them and
# builds nothing. etcd is Debian's etcd-server. The nodes are simulated by
# the test itself (infra/kubetest/kubelets_test.go), so nothing else is built.
#
# Usage: tools/ci/kube.sh [--print-dir]
#   builds what is missing and prints the bin directory on the last line;
#   with --print-dir it only prints that directory (built or not).
#
# Why a scratch module: k8s.io/kubernetes requires its staging modules
# (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 and replaces them with
# ./staging paths, which do not exist in the module zip. The scratch module
# requires k8s.io/kubernetes and replaces each staging module with its
# published twin (v0.<minor>.<patch>), which is what `go build` needs.
# Nothing here touches the product go.mod.
set -euo pipefail

KUBE_VERSION="${GUARDYN_KUBE_VERSION:-v1.34.4}"
CACHE_ROOT="${GUARDYN_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guardyn}"
DIR="$CACHE_ROOT/kube-$KUBE_VERSION"
BIN="$DIR/bin"

if [ "${1:-}" = "--print-dir" ]; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "kube.sh: no go on PATH" >&2; exit 1; }
mkdir -p "$BIN"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export GOWORK=off

log() { echo "kube.sh: $*" >&2; }

# etcd: Debian bookworm's etcd-server 3.4.23 (the apiserver still accepts 3.4).
if ! command -v etcd >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    log "need root to apt-get install etcd-server"
    exit 1
  fi
  log "installing etcd-server (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
  # The package starts a system etcd on :2379; the test runs its own on
  # random ports, so stop the service to keep the machine quiet.
  if command -v systemctl >/dev/null; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
fi

kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
missing=0
for b in "${kube_bins[@]}"; do [ -x "$BIN/$b" ] || missing=1; done
if [ "$missing" -eq 0 ]; then
  log "cached in $BIN"
  echo "$BIN"
  exit 0
fi

start=$(date +%s)

# Kubernetes: one scratch module, one replace line per staging module.
build_kube() {
  local src="$DIR/src-kube"
  local minor="${KUBE_VERSION#v1.}" # 34.4
  local staging="v0.$minor"
  rm -rf "$src"
  mkdir -p "$src"
  cd "$src"
  go mod init guardyn.local/kubebuild >/dev/null 2>&1
  local modfile
  modfile=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$modfile" ] || { log "no go.mod for k8s.io/kubernetes@$KUBE_VERSION"; return 1; }
  local mods
  mods=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$modfile" | sort -u)
  [ -n "$mods" ] || { log "no staging replaces in $modfile"; return 1; }
  for m in $mods; do
    go mod edit -replace "$m=$m@$staging"
  done
  go mod edit -require "k8s.io/kubernetes@$KUBE_VERSION"
  local pkgs=()
  for b in "${kube_bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b@$KUBE_VERSION"); done
  go get "${pkgs[@]}" >/dev/null
  local vpkg=k8s.io/component-base/version
  local ldflags="-s -w -X $vpkg.gitVersion=$KUBE_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=${minor%%.*} -X $vpkg.gitTreeState=clean"
  # One `go build` for the four commands: one action graph, so the packages
  # they share (client-go, apiserver, the API types: most of the work) are
  # compiled once and both cores stay busy until the last link, where four
  # builds one after the other each end on a single core (a package waiting
  # for its dependency, then the link). -o DIR/ writes one file per command.
  local tmp="$DIR/bin.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  log "building ${kube_bins[*]} $KUBE_VERSION"
  local cmds=()
  for b in "${kube_bins[@]}"; do cmds+=("k8s.io/kubernetes/cmd/$b"); done
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${cmds[@]}"
  for b in "${kube_bins[@]}"; do mv "$tmp/$b" "$BIN/$b"; done
  rmdir "$tmp"
}

build_kube

log "built in $(( $(date +%s) - start ))s into $BIN"
echo "$BIN"
