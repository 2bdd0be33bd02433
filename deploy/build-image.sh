#!/usr/bin/env bash
# Build the seifer image from deploy/Dockerfile without a Docker daemon or Docker Hub: buildah
# (Debian package) builds it, and when no debian:bookworm-slim image is at hand, one is made from
# Debian's own mirror with debootstrap (minbase, documentation and apt lists removed). Run as
# root from the repository root:
#
#   deploy/build-image.sh [TAG]        # default localhost/seifer:0.1.0
#   buildah push localhost/seifer:0.1.0 oci-archive:seifer.tar   # e.g. for `k3s ctr images import`
#
# Installs buildah and debootstrap with apt-get when missing. Storage driver vfs (works without
# overlay support), isolation chroot (works without user namespaces).
set -euo pipefail
TAG=${1:-localhost/seifer:0.1.0}
BASE=docker.io/library/debian:bookworm-slim
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
[ -f deploy/Dockerfile ] || { echo "run from the repository root" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (buildah, debootstrap)" >&2; exit 2; }
missing=()
for p in buildah debootstrap; do command -v "$p" >/dev/null || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null
fi
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1 && ! buildah pull -q "$BASE" >/dev/null 2>&1; then
  echo "no $BASE: making one with debootstrap from $MIRROR" >&2
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >&2
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
  ctr=$(buildah from scratch)
  buildah copy "$ctr" "$root" / >/dev/null
  buildah config --cmd bash "$ctr"
  buildah commit -q "$ctr" "$BASE" >/dev/null
  buildah rm "$ctr" >/dev/null
fi
buildah bud --isolation chroot -f deploy/Dockerfile -t "$TAG" .
ctr=$(buildah from -q "$TAG")
buildah run --isolation chroot "$ctr" -- /usr/local/bin/seifer --version
buildah rm "$ctr" >/dev/null
buildah images "$TAG"
