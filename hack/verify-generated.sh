#!/usr/bin/env bash
# Regenerates the CRDs, RBAC and deepcopy code, and the chart's copies of the
# CRDs and RBAC, and fails if that changed them: the committed generated files
# must match the API types and markers. It
# compares against the files as they were, not against git, so uncommitted
# work on the types is fine as long as it was regenerated.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

generated=(config/crd/bases config/rbac/role.yaml api/v1alpha1/zz_generated.deepcopy.go charts/patchbay/crds charts/patchbay/files/role.yaml)
before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
for f in "${generated[@]}"; do
  mkdir -p "$before/$(dirname "$f")"
  cp -r "$f" "$before/$f"
done

make -s manifests generate >/dev/null

stale=0
for f in "${generated[@]}"; do
  diff -ru "$before/$f" "$f" >&2 || stale=1
done
if [[ $stale -ne 0 ]]; then
  echo "Generated files were stale and have been regenerated: review and commit them (make manifests generate)." >&2
  exit 1
fi
