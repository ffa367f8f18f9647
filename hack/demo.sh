#!/usr/bin/env bash
# The demo: patchbay installed with its chart on a cluster with a real node,
# the Broker and every sample applied, and one real request sent through each
# style's endpoint from this machine.
#
#   hack/demo.sh          on the local cluster (hack/local-cluster.sh up)
#   hack/demo.sh kind     on a kind cluster (needs Docker; hack/kind.sh)
#   hack/demo.sh down     remove the local cluster and everything in it
#
# Both clusters take the same steps but the first: bring the cluster up and
# load the image archives of `make images` into it. It is safe to re-run.
# Expects HELM (make demo sets it); the image names come from the Makefile.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

HELM=${HELM:?HELM is unset: run make demo}
NAMESPACE=${DEMO_NAMESPACE:-patchbay-demo}
RELEASE_NAMESPACE=patchbay-system
IMAGES=${IMAGES_DIR:-$root/bin/images}
VERSION=${VERSION:-0.1.0}
NATS_IMG=${NATS_IMG:?NATS_IMG is unset: run make demo}
KIND_CLUSTER=${KIND_CLUSTER:-patchbay}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

cluster=${1:-local}
case $cluster in
local)
  hack/local-cluster.sh up >/dev/null
  KUBECONFIG=$(hack/local-cluster.sh env | sed 's/^export KUBECONFIG=//')
  export KUBECONFIG
  log "loading the images into the node"
  hack/local-cluster.sh load "$IMAGES"/*.tar
  ;;
kind)
  command -v kind >/dev/null || { echo "kind is not installed" >&2; exit 1; }
  kind get clusters 2>/dev/null | grep -x "$KIND_CLUSTER" >/dev/null || kind create cluster --name "$KIND_CLUSTER"
  KUBECONFIG=${KUBECONFIG:-$HOME/.kube/config}
  export KUBECONFIG
  kubectl config use-context "kind-$KIND_CLUSTER" >/dev/null
  log "loading the images into kind"
  for f in "$IMAGES"/*.tar; do kind load image-archive --name "$KIND_CLUSTER" "$f"; done
  ;;
down)
  exec hack/local-cluster.sh down
  ;;
*)
  echo "usage: $0 [local|kind|down]" >&2
  exit 2
  ;;
esac

log "installing the chart (manager $VERSION, runtime $VERSION, NATS $NATS_IMG)"
"$HELM" upgrade --install patchbay charts/patchbay --namespace "$RELEASE_NAMESPACE" --create-namespace \
  --set image.tag="$VERSION" --set image.pullPolicy=IfNotPresent \
  --set runtimeImage.tag="$VERSION" --set natsImage="$NATS_IMG" \
  --wait --timeout 5m >/dev/null
# make images keeps the tags: restart the manager so that it runs the image just loaded.
kubectl -n "$RELEASE_NAMESPACE" rollout restart deploy/patchbay-manager >/dev/null
kubectl -n "$RELEASE_NAMESPACE" rollout status deploy/patchbay-manager --timeout=5m >/dev/null

log "applying the Broker and the samples in namespace $NAMESPACE"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "$NAMESPACE" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
samples=(sync-chain sync-orchestrated async-orchestrated choreography hybrid)
args=(-f config/samples/broker.yaml)
for s in "${samples[@]}"; do args+=(-f "config/samples/$s.yaml"); done
kubectl apply -n "$NAMESPACE" --server-side "${args[@]}" >/dev/null

log "waiting for the Broker and the Workflows to be Ready"
kubectl wait -n "$NAMESPACE" --for=condition=Ready broker/default --timeout=6m >/dev/null
kubectl wait -n "$NAMESPACE" --for=condition=Ready workflows --all --timeout=6m >/dev/null

# request WORKFLOW: POST one order to the Workflow's endpoint from this machine.
# The local node routes Service addresses; kind's are reached through a
# port-forward.
request() {
  local wf=$1 endpoint svc url pf=""
  endpoint=$(kubectl get workflow -n "$NAMESPACE" "$wf" -o jsonpath='{.status.endpoint}')
  svc=${endpoint#http://}
  svc=${svc%%.*}
  if [[ $cluster == local ]]; then
    url=http://$(kubectl get svc -n "$NAMESPACE" "$svc" -o jsonpath='{.spec.clusterIP}')/
  else
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    kubectl port-forward -n "$NAMESPACE" "svc/$svc" "$port:80" >/dev/null 2>&1 &
    pf=$!
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
    url=http://127.0.0.1:$port/
  fi
  curl -sS -o /tmp/patchbay-demo-$wf.out -w '%{http_code} %{time_total}\n' \
    -H 'Content-Type: application/json' -d '{"orderId":"demo-1","id":7}' "$url" || true
  [[ -n $pf ]] && kill "$pf" 2>/dev/null
  return 0
}

# follow WORKFLOW: poll the run the last answer named until it is done.
follow() {
  local wf=$1 loc url i
  loc=$(sed -n 's/.*"location":"\([^"]*\)".*/\1/p' "/tmp/patchbay-demo-$wf.out")
  [[ -n $loc && $cluster == local ]] || return 0
  url=http://$(kubectl get svc -n "$NAMESPACE" "$wf" -o jsonpath='{.spec.clusterIP}')$loc
  for i in $(seq 60); do
    if [[ $(curl -s -o "/tmp/patchbay-demo-$wf.out" -w '%{http_code}' "$url") == 200 ]]; then
      printf '  then GET %s answered after %d more s: %s\n' "$loc" "$i" "$(cat "/tmp/patchbay-demo-$wf.out")"
      return 0
    fi
    sleep 1
  done
  printf '  GET %s: still not done after 60 s\n' "$loc"
}

printf '\n'
for s in "${samples[@]}"; do
  wf=$(awk '$1=="name:" {print $2; exit}' "config/samples/$s.yaml")
  read -r code secs < <(request "$wf")
  printf '\033[1m%s\033[0m  workflow %s  endpoint %s\n' "$s" "$wf" "$(kubectl get workflow -n "$NAMESPACE" "$wf" -o jsonpath='{.status.endpoint}')"
  printf '  HTTP %s in %.0f ms: %s\n' "$code" "$(awk -v s="$secs" 'BEGIN {print s * 1000}')" "$(cat "/tmp/patchbay-demo-$wf.out")"
  if [[ $code == 202 ]]; then
    # The sync wrapper held the caller for entry.timeout; the run goes on and
    # its outcome is at the Location it answered.
    follow "$wf"
  fi
  printf '  topology: %s\n\n' "$(kubectl get deploy -n "$NAMESPACE" -l "patchbay.dev/workflow=$wf" -o jsonpath='{range .items[*]}{.metadata.name}({.status.readyReplicas}/{.spec.replicas}) {end}')"
  rm -f "/tmp/patchbay-demo-$wf.out"
done

kubectl get brokers,workflows -n "$NAMESPACE"
cat <<EOF

Use the cluster:   export KUBECONFIG=$KUBECONFIG
Switch a style:    kubectl patch workflow -n $NAMESPACE checkout --type merge -p '{"spec":{"style":"async-orchestrated"}}'
EOF
if [[ $cluster == local ]]; then
  echo "Clean up:          make demo-down"
else
  echo "Clean up:          kind delete cluster --name $KIND_CLUSTER"
fi
