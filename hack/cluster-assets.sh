#!/usr/bin/env bash
# Puts a whole cluster's Kubernetes binaries under $PATCHBAY_CACHE/k8s/<version>/
# and prints that directory: the envtest assets (kube-apiserver, etcd, kubectl,
# from envtest-assets.sh) plus kube-controller-manager, kube-scheduler (kwok's
# binary runtime), kubelet and kube-proxy (the real-node cluster), built
# from the same wrapper module (hack/assets/kubernetes) through the Go module
# proxy. kube-controller-manager takes several minutes and about 3 GB of memory
# to build on 2 cores once; a complete directory is reused.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=$("$root/hack/envtest-assets.sh")
log() { echo "cluster-assets: $*" >&2; }

for cmd in kube-controller-manager kube-scheduler kubelet kube-proxy; do
  [[ -x $dir/$cmd ]] && continue
  log "building $cmd (this takes minutes once; it is cached in $dir)"
  (cd "$root/hack/assets/kubernetes" && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$dir/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
  mv "$dir/$cmd.tmp" "$dir/$cmd"
done
echo "$dir"
