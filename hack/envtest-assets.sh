#!/usr/bin/env bash
# Puts the envtest control plane (kube-apiserver, etcd, kubectl) under
# $PATCHBAY_CACHE/k8s/<version>/ (default ~/.cache/patchbay, outside the clone,
# so a fresh clone reuses it) and prints that directory, for KUBEBUILDER_ASSETS.
#
# It tries a download with setup-envtest first and falls back to building the
# binaries from the Go module proxy through the wrapper modules in
# hack/assets/, so patchbay can be developed behind a proxy-only firewall.
# A complete directory is reused: a second run builds nothing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The wrapper modules pin the versions; nothing else repeats them.
K8S_VERSION=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {sub(/^v/,"",$3); print $3}' "$root/hack/assets/kubernetes/go.mod")
ETCD_VERSION=$(awk '$1=="require" && $2=="go.etcd.io/etcd/server/v3" {print $3}' "$root/hack/assets/etcd/go.mod")
SETUP_ENVTEST_VERSION=${SETUP_ENVTEST_VERSION:-v0.25.1}

cache=${PATCHBAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchbay}
dir=$cache/k8s/$K8S_VERSION
log() { echo "envtest-assets: $*" >&2; }

complete() { [[ -x $dir/kube-apiserver && -x $dir/etcd && -x $dir/kubectl ]]; }
# A build of another etcd release is stale; a downloaded etcd is kept as it is.
if [[ -f $dir/etcd.version && $(cat "$dir/etcd.version") != "$ETCD_VERSION" ]]; then
  rm -f "$dir/etcd" "$dir/etcd.version"
fi
if complete; then
  echo "$dir"
  exit 0
fi
mkdir -p "$dir"

# 1. Download through setup-envtest (needs access to GitHub releases).
if [[ ! -x $dir/kube-apiserver || ! -x $dir/etcd ]]; then
  se=$cache/tools/setup-envtest-$SETUP_ENVTEST_VERSION/setup-envtest
  if [[ ! -x $se ]]; then
    GOBIN=$(dirname "$se") go install "sigs.k8s.io/controller-runtime/tools/setup-envtest@$SETUP_ENVTEST_VERSION" || true
  fi
  if [[ -x $se ]] && dl=$(timeout 300 "$se" use "$K8S_VERSION" --bin-dir "$cache/setup-envtest" -p path 2>/dev/null) && [[ -x $dl/kube-apiserver ]]; then
    log "downloaded Kubernetes $K8S_VERSION assets with setup-envtest"
    cp "$dl/kube-apiserver" "$dl/etcd" "$dir/"
    [[ -x $dl/kubectl && ! -e $dir/kubectl ]] && cp "$dl/kubectl" "$dir/"
  else
    log "no download of Kubernetes $K8S_VERSION assets; building them from the Go module proxy"
  fi
fi

# 2. Build what is still missing from the wrapper modules.
build() { # module-dir package output
  log "building $3 (this takes minutes once; it is cached in $dir)"
  (cd "$root/hack/assets/$1" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$dir/$3.tmp" "$2")
  mv "$dir/$3.tmp" "$dir/$3"
}
if [[ ! -x $dir/etcd ]]; then
  build etcd go.etcd.io/etcd/server/v3 etcd
  echo "$ETCD_VERSION" >"$dir/etcd.version"
fi
[[ -x $dir/kube-apiserver ]] || build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
if [[ ! -x $dir/kubectl ]]; then
  if command -v kubectl >/dev/null 2>&1; then
    ln -sf "$(command -v kubectl)" "$dir/kubectl"
  else
    build kubernetes k8s.io/kubernetes/cmd/kubectl kubectl
  fi
fi

complete || { log "assets in $dir are incomplete"; exit 1; }
echo "$dir"
