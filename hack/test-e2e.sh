#!/usr/bin/env bash
# Runs the cluster e2e suite (test/e2e, build tag e2e) against a kwok cluster
# with a unique name. The suite deletes its cluster itself, also when a spec
# fails; this trap covers what it cannot: a go test timeout or a kill.
# Expects HELM, KWOKCTL, KWOK and KUBE_ASSETS (make test-e2e sets them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export E2E_CLUSTER_NAME=${E2E_CLUSTER_NAME:-patchbay-e2e-$$-$RANDOM}
E2E_WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/$E2E_CLUSTER_NAME-XXXX")
export E2E_WORKDIR

cleanup() {
  if [[ -d $E2E_WORKDIR/kwok/clusters/$E2E_CLUSTER_NAME ]]; then
    echo "test-e2e: deleting leftover cluster $E2E_CLUSTER_NAME" >&2
    KWOK_WORKDIR=$E2E_WORKDIR/kwok "$KWOKCTL" delete cluster --name "$E2E_CLUSTER_NAME" >&2 || true
    echo "test-e2e: the suite did not finish; what it left is in $E2E_WORKDIR" >&2
  fi
}
trap cleanup EXIT

go test -tags e2e -count=1 -timeout="${E2E_TIMEOUT:-20m}" ${TEST_FLAGS:-} ./test/e2e/ -ginkgo.v
