#!/usr/bin/env bash
# Build the Kubernetes control plane and kubelet that the Kubernetes tests run against.
#
# Nothing that ships a ready Kubernetes (kind, k3s, minikube, release tarballs) is reachable
# from CI machines: only Debian's, PyPI's and npm's registries are. Debian bookworm has
# kubectl (kubernetes-client) but no server binaries; its *source* package `kubernetes`
# (v1.20.2) carries the whole tree with vendor/, so it builds offline with Debian's Go.
#
# Output: $K8S_CACHE/bin/v1.20.2/{kube-apiserver,kube-controller-manager,kube-scheduler,
# kubelet,pause} (K8S_CACHE: HYPERDOCK_K8S_CACHE, default /var/cache/hyperdock-k8s).
# When they are all there the build is skipped (the build takes ~15-20 min on 2 cores,
# a cached run a few seconds).
# Also installs the Debian packages up.sh needs, so that `build.sh && up.sh` is all CI does.
# Runs as root. Log of the build: $K8S_CACHE/build-v1.20.2.log.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

version=$K8S_VERSION
cache=$K8S_CACHE
bin=$K8S_BIN
log=$cache/build-$version.log
components="kube-apiserver kube-scheduler kube-controller-manager kubelet"
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }

t_start=$(date +%s)
mkdir -p "$cache"

echo "== k8s: Debian packages"
# Runtime of the cluster (up.sh): etcd-server, containerd + runc + CNI plugins, kubectl,
# iproute2 (ip netns), socat (forwards the API server's port to the host's 127.0.0.1),
# openssl (certificates), gcc + libc6-dev (static pause binary), bc (timings).
# Build only: golang-go, rsync and make (make gen_openapi), dpkg-dev (apt-get source).
runtime_pkgs="etcd-server containerd runc containernetworking-plugins
  iproute2 socat openssl gcc libc6-dev bc procps util-linux"
build_pkgs="golang-go rsync make dpkg-dev"
# kubectl: Debian's kubernetes-client (1.20) unless some kubectl is installed already
# (e.g. Google Cloud SDK's `kubectl` package, which owns /usr/bin/kubectl: installing
# kubernetes-client over it fails in dpkg).
command -v kubectl >/dev/null || runtime_pkgs+=" kubernetes-client"
# Idempotent (a no-op when installed); `apt-get update` only when the lists are too old
# to know a package (build.sh run alone on a fresh machine).
# shellcheck disable=SC2086
apt_get install -y -q --no-install-recommends $runtime_pkgs $build_pkgs >/dev/null 2>&1 || {
  apt_get update -q >/dev/null
  apt_get install -y -q --no-install-recommends $runtime_pkgs $build_pkgs >/dev/null
}
# Debian's containerd unit is enabled on install on systemd hosts; up.sh runs its own
# containerd (own root, socket and config) inside a network namespace and never uses the host's.

have_all() { for c in $components pause; do [ -x "$bin/$c" ] || return 1; done; }
if have_all; then
  echo "== k8s: binaries cached in $bin, build skipped"
  exit 0
fi

echo "== k8s: source package (log: $log)"
# apt-get source needs a deb-src entry; bookworm's debian.sources has only `Types: deb`.
if ! grep -rqs '^[[:space:]]*\(Types:.*deb-src\|deb-src\)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat >/etc/apt/sources.list.d/hyperdock-deb-src.sources <<'EOF'
# Added by Hyperdock's .ci/k8s/build.sh: `apt-get source kubernetes` (the Kubernetes tests' cluster).
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt_get update -q >/dev/null
fi

# A scratch directory (~1.5 GB with the Go cache), removed when the build succeeded.
scratch=$(mktemp -d /var/tmp/hyperdock-k8s-build.XXXXXX)
cleanup() { [ "${keep_scratch:-0}" = 1 ] || rm -rf "$scratch"; }
trap cleanup EXIT
keep_scratch=1   # until the build succeeds: a failed build's tree helps to debug it
cd "$scratch"
apt_get source -q kubernetes >"$log" 2>&1 || { tail -n 30 "$log"; echo "apt-get source kubernetes failed"; exit 1; }
src=$(find "$scratch" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n 1)
[ -n "$src" ] && [ -f "$src/build/pause/linux/pause.c" ] || { echo "no kubernetes tree in $scratch"; exit 1; }
echo "source: $src"

# The version Kubernetes reports (kubectl version, node info); without it the tree's
# scripts try `git describe`, and there is no git repository here.
export KUBE_GIT_VERSION=$version KUBE_GIT_TREE_STATE=clean KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 \
  KUBE_GIT_COMMIT=0000000000000000000000000000000000000000
# Offline: no module proxy (everything is in vendor/); caches inside the scratch dir.
export GOPROXY=off GOFLAGS= GOCACHE=$scratch/gocache HOME=$scratch/home GOPATH=$scratch/gopath
mkdir -p "$HOME"

# Only 2 cores, shared with other work: the whole build runs at low priority.
run_nice() { nice -n 15 "$@"; }

t0=$(date +%s)
echo "== k8s: make gen_openapi"
# The tree ships without the generated OpenAPI definitions the apiserver imports.
(cd "$src" && run_nice make gen_openapi) >>"$log" 2>&1 || { tail -n 30 "$log"; echo "make gen_openapi failed"; exit 1; }
echo "gen_openapi $(( $(date +%s) - t0 ))s"

# GOPATH mode: the tree's import paths are k8s.io/kubernetes/..., resolved through
# $GOPATH/src/k8s.io/kubernetes -> the tree, and its vendor/ directory.
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$src" "$GOPATH/src/k8s.io/kubernetes"
export GO111MODULE=off CGO_ENABLED=0
ldflags="-s -w"
for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=$KUBE_GIT_COMMIT"
done
mkdir -p "$bin.tmp"
for c in $components; do
  t1=$(date +%s)
  echo "== k8s: go build $c"
  (cd "$GOPATH/src/k8s.io/kubernetes" && run_nice go build -ldflags "$ldflags" -o "$bin.tmp/$c" "./cmd/$c") >>"$log" 2>&1 \
    || { tail -n 30 "$log"; echo "go build $c failed (tree kept in $scratch)"; exit 1; }
  echo "$c $(( $(date +%s) - t1 ))s"
done

# The pod sandbox ("pause") image's one binary: from the tree, static, so that the image
# needs no libc. up.sh wraps it into an image and imports it (nothing can be pulled).
gcc -Os -static -o "$bin.tmp/pause" "$src/build/pause/linux/pause.c" -DVERSION="$version" >>"$log" 2>&1 \
  || { tail -n 30 "$log"; echo "gcc pause.c failed"; exit 1; }

rm -rf "$bin" && mv "$bin.tmp" "$bin"
keep_scratch=0
echo "== k8s: built $version into $bin in $(( $(date +%s) - t_start ))s"
