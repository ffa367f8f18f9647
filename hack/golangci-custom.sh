#!/usr/bin/env bash
# Builds golangci-lint with the module plugins of .custom-gcl.yml (kube-api-linter)
# with `golangci-lint custom`, needing no network but the Go module proxy.
#
# Usage: hack/golangci-custom.sh GOLANGCI_LINT DEST_DIR
#   GOLANGCI_LINT  a golangci-lint binary of the version .custom-gcl.yml names
#   DEST_DIR       where the custom binary goes
#
# `golangci-lint custom` git-clones the release tag from GitHub, adds the plugin
# imports, then builds with the Go toolchain. Here that clone is pointed (a git
# url.<base>.insteadOf, which `custom` passes through) at a local repository
# holding the same release from the Go module proxy, checked against the Go
# checksum database by `go mod download`: the build is the same, offline.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gcl=$1
dest=$2

version=$(sed -n 's/^version: *//p' "$root/.custom-gcl.yml")
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# Outside any module, so that the download records nothing in patchbay's go.sum.
src=$(cd "$work" && go mod download -json "github.com/golangci/golangci-lint/v2@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $src ]] || { echo "golangci-custom: no source for golangci-lint $version" >&2; exit 1; }
repo=$work/golangci-lint
cp -r "$src" "$repo"
chmod -R u+w "$repo"
git -C "$repo" init -q
git -C "$repo" add -A -f
git -C "$repo" -c user.name=patchbay -c user.email=patchbay@localhost \
  commit -q -m "golangci-lint $version from the Go module proxy"
git -C "$repo" tag "$version"

cd "$root"
GIT_CONFIG_COUNT=1 \
  GIT_CONFIG_KEY_0="url.file://$repo.insteadOf" \
  GIT_CONFIG_VALUE_0=https://github.com/golangci/golangci-lint.git \
  "$gcl" custom --destination "$dest"
