#!/usr/bin/env bash
# Import images from the host's Docker engine into the test cluster's containerd, where
# the kubelet finds them (namespace k8s.io). Nothing can be pulled on CI machines, so this
# is how test images reach the cluster; pods must use imagePullPolicy: Never.
# A Docker tag NAME:TAG becomes docker.io/library/NAME:TAG, which is what a pod's
# `image: NAME:TAG` means.
# Usage: import-image.sh IMAGE...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
[ $# -gt 0 ] || { echo "usage: $0 IMAGE..." >&2; exit 2; }
[ -S "$K8S_CONTAINERD_SOCK" ] || { echo "no cluster containerd at $K8S_CONTAINERD_SOCK: run .ci/k8s/up.sh" >&2; exit 1; }
for image in "$@"; do
  docker save "$image" | k8s_ctr images import -
done
