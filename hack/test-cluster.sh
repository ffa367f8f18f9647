#!/usr/bin/env bash
# Runs the cluster tier (test/cluster, build tag cluster) on the local
# real-node cluster: brings it up if it is down (and takes it down again at the
# end unless KEEP_CLUSTER=1), loads the image archives of `make images`, and
# runs the suite, which installs the chart itself.
# Expects HELM, VERSION, NATS_IMG and PROBE_IMG (make test-cluster sets them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=
if ! hack/local-cluster.sh status >/dev/null 2>&1; then
  started=1
  if [[ -z ${KEEP_CLUSTER:-} ]]; then
    trap 'hack/local-cluster.sh down' EXIT
  fi
fi
hack/local-cluster.sh up >/dev/null
KUBECONFIG=$(hack/local-cluster.sh env | sed 's/^export KUBECONFIG=//')
export KUBECONFIG
hack/local-cluster.sh load bin/images/*.tar
[[ -n $started ]] && echo "test-cluster: started the local cluster for this run" >&2

go test -v -tags cluster -count=1 -timeout="${CLUSTER_TIMEOUT:-30m}" ${TEST_FLAGS:-} ./test/cluster/ -ginkgo.v
