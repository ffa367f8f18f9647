#!/usr/bin/env bash
# A one-node Kubernetes cluster with a real kubelet on this machine, in the
# manner of Kubernetes' own hack/local-up-cluster.sh, with no Docker and no
# internet beyond the Go module proxy and Debian's packages.
#
#   hack/local-cluster.sh up       start it (idempotent: a running cluster is kept)
#   hack/local-cluster.sh down     stop it and remove every trace of it
#   hack/local-cluster.sh status   say what runs
#   hack/local-cluster.sh leftovers list what of a cluster is still here (fails if anything)
#   hack/local-cluster.sh env      print the export KUBECONFIG=... line
#   hack/local-cluster.sh load F.. import OCI/docker image archives into the node
#
# What runs, each as a host process: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet and kube-proxy (built from
# the wrapper module hack/assets/kubernetes), containerd + runc + the CNI
# bridge (Debian), CoreDNS (cluster names only: nothing is forwarded out of the
# cluster), kube-router as the NetworkPolicy enforcer (its firewall only:
# iptables + ipset, no routing, no service proxy), and the
# local-path-provisioner behind the default StorageClass.
#
# Addresses: pods and Services come from the benchmarking range 198.18.0.0/15,
# the node's own address is an extra address on lo, the bridge does no
# masquerade, and a FORWARD guard drops anything from a pod to an address
# outside that range, so no packet leaves the machine.
#
# State lives under $PATCHBAY_CLUSTER_DIR (default
# ~/.local/state/patchbay/cluster); `down` removes it, and every process,
# mount, network namespace, bridge, address, iptables chain, ipset and cgroup
# the cluster made. Built tools are cached by version in $PATCHBAY_CACHE
# (default ~/.cache/patchbay), outside the clone.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${PATCHBAY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/patchbay}
STATE=${PATCHBAY_CLUSTER_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/patchbay/cluster}

# Pinned versions of what is built from the Go module proxy (Kubernetes and
# etcd are pinned by the wrapper modules in hack/assets).
COREDNS_VERSION=v1.15.0
KUBE_ROUTER_VERSION=v2.1.0
LOCAL_PATH_VERSION=v0.0.30
CRICTL_VERSION=v1.37.0

# Addresses, all inside 198.18.0.0/15.
CLUSTER_RANGE=198.18.0.0/15
POD_CIDR=198.18.0.0/16        # the cluster's pods; the node gets the first /24
NODE_POD_CIDR=198.18.0.0/24
BRIDGE=pb0
BRIDGE_IP=198.18.0.1
SERVICE_CIDR=198.19.0.0/17
API_SERVICE_IP=198.19.0.1
NODE_IP=${PATCHBAY_NODE_IP:-198.19.128.1}
NODE_NAME=patchbay-node
CLUSTER_DOMAIN=cluster.local

PAUSE_IMG=${PAUSE_IMG:-ghcr.io/patchbay-dev/pause:0.1.0}
LOCAL_PATH_HELPER_IMG=${LOCAL_PATH_HELPER_IMG:-ghcr.io/patchbay-dev/local-path-helper:0.1.0}

PKI=$STATE/pki
LOGS=$STATE/logs
RUN=$STATE/run
CONTAINERD_SOCK=$STATE/containerd/containerd.sock
KUBECONFIG_ADMIN=$STATE/kubeconfig

log() { echo "local-cluster: $*" >&2; }
# has PATTERN: grep that reads all its input. grep -q stops at the first match,
# and under pipefail the writer's SIGPIPE would turn a match into a failure.
has() { grep "$@" >/dev/null; }
die() { log "$*"; exit 1; }

# --- tools --------------------------------------------------------------------

kube_dir() { "$root/hack/cluster-assets.sh"; }

# go_tool NAME VERSION PACKAGE: a binary built with go install, cached by version.
go_tool() {
  local dir=$CACHE/tools/$1-$2
  if [[ ! -x $dir/$1 ]]; then
    log "building $1 $2 (once; cached in $dir)"
    GOBIN=$dir CGO_ENABLED=0 GOFLAGS=-trimpath go install "$3@$2" >&2
  fi
  echo "$dir/$1"
}

ensure_packages() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v ipset >/dev/null || missing+=(ipset)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v findmnt >/dev/null || missing+=(util-linux)
  if ((${#missing[@]})); then
    log "installing ${missing[*]} with apt-get"
    [[ $(id -u) == 0 ]] || die "installing packages needs root"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
}

ensure_tools() {
  ensure_packages
  KUBE=$(kube_dir)
  COREDNS=$(go_tool coredns "$COREDNS_VERSION" github.com/coredns/coredns)
  KUBE_ROUTER=$(go_tool kube-router "$KUBE_ROUTER_VERSION" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router)
  LOCAL_PATH=$(go_tool local-path-provisioner "$LOCAL_PATH_VERSION" github.com/rancher/local-path-provisioner)
  CRICTL=$(go_tool crictl "$CRICTL_VERSION" sigs.k8s.io/cri-tools/cmd/crictl)
}

# --- processes ----------------------------------------------------------------

pidfile() { echo "$RUN/$1.pid"; }
alive() { local p; p=$(cat "$(pidfile "$1")" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }

# start NAME CMD...: a host process in its own session, logging to $LOGS/NAME.log.
start() {
  local name=$1
  shift
  alive "$name" && return 0
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

stop() {
  local name=$1 pid i
  pid=$(cat "$(pidfile "$name")" 2>/dev/null) || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")"
}

# wait_for WHAT SECONDS CMD...: poll CMD until it succeeds.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 2; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "$what did not come up within ${secs}s; see $LOGS"
}

kc() { "$KUBE/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy coredns kube-router local-path-provisioner)

# --- certificates and configs -------------------------------------------------

cert() { # NAME CN O SANS
  local name=$1 cn=$2 o=$3 sans=$4
  [[ -f $PKI/$name.crt ]] && return 0
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/$name.key" \
    -subj "/CN=$cn${o:+/O=$o}" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -out "$PKI/$name.crt" \
    -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n%s' "${sans:+subjectAltName=$sans}") 2>/dev/null
  rm -f "$PKI/$name.csr"
}

kubeconfig() { # FILE CERTNAME
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: patchbay-local
  cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$PKI/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$PKI/$2.crt", client-key: "$PKI/$2.key"}
contexts:
- name: patchbay-local
  context: {cluster: patchbay-local, user: $2}
current-context: patchbay-local
EOF
}

write_configs() {
  mkdir -p "$PKI" "$LOGS" "$RUN" "$STATE/cni/net.d" "$STATE/cni/ipam" "$STATE/local-path" "$STATE/pod-logs"
  if [[ ! -f $PKI/ca.crt ]]; then
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/ca.key" \
      -subj "/CN=patchbay-local-ca" -days 3650 -out "$PKI/ca.crt" 2>/dev/null
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  cert apiserver kube-apiserver "" "IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ""
  cert admin patchbay-admin system:masters ""
  cert kubelet "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME"
  kubeconfig "$KUBECONFIG_ADMIN" admin
  kubeconfig "$STATE/kubelet.kubeconfig" kubelet

  cat >"$STATE/admission.yaml" <<EOF
# Every namespace enforces the restricted Pod Security Standard unless it is
# exempt here: kube-system (nothing runs there) and local-path-storage, whose
# helper pods create volume directories on the node as root.
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults: {enforce: restricted, enforce-version: latest, audit: restricted, audit-version: latest, warn: restricted, warn-version: latest}
    exemptions: {namespaces: [kube-system, local-path-storage]}
EOF

  cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$STATE/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMG"
  # This machine refuses a negative oom_score_adj; without this every sandbox
  # fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF

  cat >"$STATE/cni/net.d/10-patchbay.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "patchbay",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam",
               "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$BRIDGE_IP"}]],
               "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: $NODE_IP
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
# This machine has the cgroup v1 hierarchy and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
clusterDNS: [$NODE_IP]
clusterDomain: $CLUSTER_DOMAIN
# No host resolv.conf: pods resolve cluster names only.
resolvConf: ""
podLogsDir: $STATE/pod-logs
# The images are imported, never pulled: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
serializeImagePulls: false
EOF

  cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: $NODE_IP:10256
metricsBindAddress: $NODE_IP:10249
# NodePorts answer on the node address only, never on the machine's own.
nodePortAddresses: [$NODE_IP/32]
clientConnection: {kubeconfig: $KUBECONFIG_ADMIN}
# Leave the machine's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF

  cat >"$STATE/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    health $NODE_IP:8181
    ready $NODE_IP:8182
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG_ADMIN
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOF

  cat >"$STATE/local-path.json" <<EOF
{
  "nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["$STATE/local-path"]}],
  "setupCommand": "/local-path-helper",
  "teardownCommand": "/local-path-helper"
}
EOF
  cat >"$STATE/local-path-helper-pod.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: helper-pod}
spec:
  containers:
  - name: helper-pod
    image: $LOCAL_PATH_HELPER_IMG
    imagePullPolicy: IfNotPresent
EOF
}

# --- host networking ----------------------------------------------------------

sysctl_set() { # KEY VALUE: set, remembering the first value seen for down
  local f=/proc/sys/${1//./\/}
  [[ -f $f ]] || die "$f is missing (is br_netfilter loaded?)"
  grep -q "^$1 " "$STATE/sysctl.orig" 2>/dev/null || echo "$1 $(cat "$f")" >>"$STATE/sysctl.orig"
  echo "$2" >"$f"
}

host_network_up() {
  sysctl_set net.ipv4.ip_forward 1
  sysctl_set net.bridge.bridge-nf-call-iptables 1
  ip addr show dev lo | has " $NODE_IP/32 " || ip addr add "$NODE_IP/32" dev lo
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$BRIDGE_IP/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  # Service addresses without an endpoint stay on the bridge instead of
  # following the default route out of the machine.
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
  # The guard: pods reach the cluster range and the node, nothing else.
  if ! iptables -S PATCHBAY-FORWARD >/dev/null 2>&1; then
    iptables -N PATCHBAY-FORWARD
    iptables -A PATCHBAY-FORWARD -s "$CLUSTER_RANGE" -d "$CLUSTER_RANGE" -j RETURN
    iptables -A PATCHBAY-FORWARD -s "$CLUSTER_RANGE" -j DROP
    iptables -A PATCHBAY-FORWARD -d "$CLUSTER_RANGE" ! -s "$CLUSTER_RANGE" -j DROP
    iptables -I FORWARD 1 -j PATCHBAY-FORWARD
  fi
}

# --- up -----------------------------------------------------------------------

healthy() {
  local c
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
  kc get --raw /readyz >/dev/null 2>&1
}

up() {
  [[ $(id -u) == 0 ]] || die "the kubelet, containerd and the host network need root"
  ensure_tools
  if [[ -d $STATE ]] && healthy; then
    log "already up"
    print_env
    return 0
  fi
  [[ -d $STATE ]] && { log "a previous cluster is incomplete; removing it first"; down; }
  mkdir -p "$STATE/containerd"
  write_configs
  host_network_up

  start etcd "$KUBE/etcd" --name patchbay-local --data-dir "$STATE/etcd" \
    --listen-client-urls "http://$NODE_IP:2379" --advertise-client-urls "http://$NODE_IP:2379" \
    --listen-peer-urls "http://$NODE_IP:2380" --initial-advertise-peer-urls "http://$NODE_IP:2380" \
    --initial-cluster "patchbay-local=http://$NODE_IP:2380" --listen-metrics-urls "" \
    --unsafe-no-fsync --quota-backend-bytes 4294967296
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for etcd 60 curl -fsS "http://$NODE_IP:2379/health"
  start kube-apiserver "$KUBE/kube-apiserver" --etcd-servers "http://$NODE_IP:2379" \
    --bind-address "$NODE_IP" --secure-port 6443 --advertise-address "$NODE_IP" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --authorization-mode Node,RBAC \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
    --admission-control-config-file "$STATE/admission.yaml" --profiling=false
  wait_for kube-apiserver 120 kc get --raw /readyz

  start kube-controller-manager "$KUBE/kube-controller-manager" --kubeconfig "$KUBECONFIG_ADMIN" \
    --authentication-kubeconfig "$KUBECONFIG_ADMIN" --authorization-kubeconfig "$KUBECONFIG_ADMIN" \
    --bind-address "$NODE_IP" --leader-elect=false --allocate-node-cidrs \
    --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials --profiling=false
  start kube-scheduler "$KUBE/kube-scheduler" --kubeconfig "$KUBECONFIG_ADMIN" \
    --authentication-kubeconfig "$KUBECONFIG_ADMIN" --authorization-kubeconfig "$KUBECONFIG_ADMIN" \
    --bind-address "$NODE_IP" --leader-elect=false --profiling=false

  wait_for containerd 60 "$CRICTL" --runtime-endpoint "unix://$CONTAINERD_SOCK" version
  load_images "$PAUSE_IMG" "$LOCAL_PATH_HELPER_IMG"
  start kubelet "$KUBE/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
    --root-dir "$STATE/kubelet" --cert-dir "$PKI" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
  start kube-proxy "$KUBE/kube-proxy" --config "$STATE/kube-proxy.yaml"
  start coredns "$COREDNS" -conf "$STATE/Corefile"
  wait_for "node $NODE_NAME" 120 kc get node "$NODE_NAME"
  start kube-router "$KUBE_ROUTER" --kubeconfig "$KUBECONFIG_ADMIN" --hostname-override "$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --service-cluster-ip-range "$SERVICE_CIDR" --health-port 20244 --metrics-port 0

  kc apply --server-side --field-manager patchbay-local -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: local-path-storage}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: local-path-provisioner, namespace: local-path-storage}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-path
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
EOF
  start local-path-provisioner "$LOCAL_PATH" --debug start --kubeconfig "$KUBECONFIG_ADMIN" \
    --namespace local-path-storage --service-account-name local-path-provisioner \
    --config "$STATE/local-path.json" --helper-pod-file "$STATE/local-path-helper-pod.yaml" \
    --helper-image "$LOCAL_PATH_HELPER_IMG" --provisioner-name rancher.io/local-path

  wait_for "node $NODE_NAME Ready" 180 kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
  wait_for "the default ServiceAccount" 60 kc get serviceaccount default -n default
  wait_for coredns 60 curl -fsS "http://$NODE_IP:8182/ready"
  log "up: node $NODE_NAME at $NODE_IP"
  print_env
}

# load FILE...: import image archives into the node's containerd.
load() {
  local f
  for f in "$@"; do
    [[ -f $f ]] || die "no image archive $f"
    ctr --address "$CONTAINERD_SOCK" --namespace k8s.io images import --no-unpack=false "$f" >/dev/null
    log "loaded $(basename "$f")"
  done
}

# load_images NAME...: the archives that make images wrote for these names.
load_images() {
  local n f
  for n in "$@"; do
    f=$root/bin/images/$(basename "${n%%:*}").tar
    [[ -f $f ]] || die "no image archive for $n at $f: run 'make images' first"
    load "$f"
  done
}

# --- down ---------------------------------------------------------------------

down() {
  [[ $(id -u) == 0 ]] || die "down needs root"
  local c kube_proxy kube_router crictl
  KUBE=$("$root/hack/envtest-assets.sh" 2>/dev/null) || KUBE=
  crictl=$CACHE/tools/crictl-$CRICTL_VERSION/crictl
  kube_proxy=$KUBE/kube-proxy
  kube_router=$CACHE/tools/kube-router-$KUBE_ROUTER_VERSION/kube-router

  for c in local-path-provisioner kube-router coredns kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop "$c"
  done
  # Stop and remove every pod through the CRI, so that the CNI plugins release
  # their addresses and delete their veths and network namespaces. A cluster
  # whose processes were killed (a machine's session ended) still has its
  # containers: start its containerd again to remove them.
  if ! alive containerd && [[ -f $STATE/containerd/config.toml && -x $crictl ]]; then
    mkdir -p "$LOGS" "$RUN"
    start containerd containerd --config "$STATE/containerd/config.toml"
    for _ in $(seq 60); do "$crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" version >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  if alive containerd && [[ -x $crictl ]]; then
    # crictl's default timeout (2 s) is too short to stop forty pods at once.
    local cri=("$crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --timeout 120s)
    for _ in 1 2 3; do
      "${cri[@]}" rmp --all --force >/dev/null 2>&1 || true
      [[ -z $("${cri[@]}" pods -q 2>/dev/null) ]] && break
    done
  fi
  stop containerd
  # Shims outlive containerd by design; they belong to this cluster's socket.
  pkill -KILL -f "containerd-shim.*-address $CONTAINERD_SOCK" 2>/dev/null || true

  # Network namespaces the CRI made (cni-*), the bridge and its veths.
  for c in $(ip netns list 2>/dev/null | awk '$1 ~ /^cni-/ {print $1}'); do ip netns delete "$c" 2>/dev/null || true; done
  ip link delete "$BRIDGE" 2>/dev/null || true
  ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true

  # iptables: kube-proxy and kube-router remove their own rules; then sweep
  # every chain of ours that is left (KUBE-*, CNI-* from portmap, PATCHBAY-*).
  [[ -x $kube_proxy ]] && "$kube_proxy" --cleanup >/dev/null 2>&1 || true
  [[ -x $kube_router ]] && "$kube_router" --cleanup-config >/dev/null 2>&1 || true
  local ipt
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null || continue
    if "$ipt-save" | has -E 'KUBE-|CNI-|PATCHBAY-'; then
      "$ipt-save" | grep -vE 'KUBE-|CNI-|PATCHBAY-' | "$ipt-restore"
    fi
  done
  if command -v nft >/dev/null; then
    for c in $(nft list tables 2>/dev/null | awk '$3 ~ /^kube-/ {print $2 "/" $3}'); do nft delete table "${c%/*}" "${c#*/}" || true; done
  fi
  if command -v ipset >/dev/null; then
    for c in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-|kube-router)'); do ipset destroy "$c" 2>/dev/null || true; done
  fi

  # Mounts under the state directory (overlay roots, shm, secrets, volumes).
  if [[ -d $STATE ]]; then
    local m
    while read -r m; do umount -l "$m" 2>/dev/null || true; done < <(findmnt -rn -o TARGET | grep -F "$STATE" | sort -r)
  fi
  # The kubelet's cgroups (cgroupfs driver), leaves first. A container whose
  # shim was killed before the CRI could stop it lives on in its cgroup: kill
  # what is left there, so that nothing of the cluster keeps running.
  local ctl p
  for ctl in $(find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods -name cgroup.procs 2>/dev/null); do
    for p in $(cat "$ctl" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  done
  # A killed process leaves its cgroup a moment later.
  for _ in $(seq 20); do
    for ctl in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
      [[ -d $ctl ]] && find "$ctl" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    compgen -G '/sys/fs/cgroup/*/kubepods' >/dev/null || break
    sleep 0.5
  done

  if [[ -f $STATE/sysctl.orig ]]; then
    local key val
    while read -r key val; do echo "$val" >"/proc/sys/${key//./\/}" 2>/dev/null || true; done <"$STATE/sysctl.orig"
  fi
  rm -rf "$STATE"
  if ! leftovers; then
    die "down: the above is left of the cluster"
  fi
  log "down: nothing of the cluster is left"
}

# leftovers lists what of the cluster is still on this machine, and fails if
# anything is.
leftovers() {
  local left=() c
  # Every process of the cluster names a file under $STATE on its command
  # line: a config, a kubeconfig, a data directory or containerd's socket.
  for c in $(pgrep -f -- "$STATE/" 2>/dev/null); do left+=("process $c: $(tr '\0' ' ' </proc/"$c"/cmdline 2>/dev/null | cut -c1-100)"); done
  findmnt -rn -o TARGET | has -F "$STATE" && left+=("mounts under $STATE")
  ip netns list 2>/dev/null | has '^cni-' && left+=("network namespaces cni-*")
  ip link show "$BRIDGE" >/dev/null 2>&1 && left+=("bridge $BRIDGE")
  ip addr show dev lo | has " $NODE_IP/32 " && left+=("address $NODE_IP on lo")
  for c in iptables ip6tables; do
    command -v "$c-save" >/dev/null && "$c-save" | has -E 'KUBE-|CNI-|PATCHBAY-' && left+=("$c chains")
  done
  command -v ipset >/dev/null && ipset list -n 2>/dev/null | has -E '^(KUBE-|kube-router)' && left+=("ipsets")
  compgen -G '/sys/fs/cgroup/*/kubepods' >/dev/null && left+=("kubelet cgroups")
  [[ -e $STATE ]] && left+=("$STATE")
  ((${#left[@]} == 0)) && return 0
  for c in "${left[@]}"; do log "left: $c"; done
  return 1
}

# --- status -------------------------------------------------------------------

status() {
  local c rc=0
  if [[ ! -d $STATE ]]; then
    echo "local cluster: down"
    return 3
  fi
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then printf '%-24s running (pid %s)\n' "$c" "$(cat "$(pidfile "$c")")"; else printf '%-24s stopped\n' "$c"; rc=1; fi
  done
  KUBE=$("$root/hack/envtest-assets.sh" 2>/dev/null) && kc get nodes -o wide 2>/dev/null || rc=1
  return $rc
}

print_env() { echo "export KUBECONFIG=$KUBECONFIG_ADMIN"; }

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
leftovers) leftovers ;;
env) print_env ;;
load) shift; load "$@" ;;
*) echo "usage: $0 up|down|status|leftovers|env|load ARCHIVE..." >&2; exit 2 ;;
esac
