#!/usr/bin/env bash
# Start a one-node Kubernetes cluster (v1.20.2, binaries from build.sh) for the tests.
#
# Everything (etcd, containerd, API server, controller manager, scheduler, kubelet) runs
# inside a network namespace this script creates, so the cluster's private addresses and
# ports never reach the host's network. The API server is forwarded to 127.0.0.1:$K8S_PORT
# of the host; the host kubeconfig is $K8S_DIR/admin.kubeconfig (printed at the end).
# Nothing can be pulled: images are imported into containerd (import-image.sh) and pods
# use imagePullPolicy: Never.
#
# Re-running it replaces a running cluster (down.sh first). Stop with down.sh, which also
# restores the host sysctls the kubelet changes. Runs as root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"

t_start=$(date +%s.%N)
elapsed() { printf '%.1fs' "$(echo "$(date +%s.%N) - $t_start" | bc)"; }
fail() { echo "k8s up: $*" >&2; exit 1; }

for c in kube-apiserver kube-controller-manager kube-scheduler kubelet pause; do
  [ -x "$K8S_BIN/$c" ] || fail "$K8S_BIN/$c is missing: run .ci/k8s/build.sh first"
done
for tool in etcd containerd runc ctr socat openssl kubectl nsenter ip bc; do
  command -v "$tool" >/dev/null || fail "$tool is missing: run .ci/k8s/build.sh (it installs the packages)"
done

# A previous cluster (a crashed run) is removed first: its processes, mounts, namespace,
# and its saved sysctls are restored before new ones are saved.
bash "$here/down.sh" --quiet
# A start that fails half-way is undone (host sysctls included); the logs stay.
trap 'status=$?; if [ "$status" != 0 ]; then bash "$here/down.sh"; echo "k8s up failed: logs in $K8S_DIR/logs" >&2; fi' EXIT

# The host side of the forward must be free (the namespace side is ours alone).
if [ -n "$(ss -Hltn "sport = :$K8S_PORT" 2>/dev/null)" ]; then
  fail "127.0.0.1:$K8S_PORT is taken on the host; set HYPERDOCK_K8S_PORT"
fi

K=$K8S_DIR
mkdir -p "$K"/{logs,pids,certs,cni,cni-ipam,kubelet,etcd,containerd,pause-image}
chmod 700 "$K"

# -- host sysctls -------------------------------------------------------------------
# Saved before anything can change them; down.sh writes them back.
for key in $K8S_SYSCTLS; do
  echo "$key=$(sysctl -n "$key")"
done >"$K/sysctl.saved"
# Host paths the cluster creates whatever its flags say: the kubelet's /var/log/pods,
# /var/log/containers and /var/lib/kubelet/device-plugins (hard-coded in v1.20), and the
# cgroups containerd puts the pods' containers under (k8s.io in every hierarchy).
# Remember which were missing so that down.sh removes only what this cluster created.
for d in /var/log/pods /var/log/containers /var/lib/kubelet; do
  [ -e "$d" ] || echo "$d"
done >"$K/created-dirs"
for hierarchy in /sys/fs/cgroup/*/; do
  [ -e "${hierarchy%/}/k8s.io" ] || echo "${hierarchy%/}/k8s.io"
done >>"$K/created-dirs"

# -- network namespace ----------------------------------------------------------------
# The node needs a non-loopback address (node IP, kubelet address, API server's advertise
# address); this kernel has no dummy interfaces, so a veth pair, both ends inside.
ip netns add "$K8S_NETNS"
ip -n "$K8S_NETNS" link set lo up
ip -n "$K8S_NETNS" link add hdk8s0 type veth peer name hdk8s1
ip -n "$K8S_NETNS" addr add "$K8S_NODE_IP/24" dev hdk8s0
ip -n "$K8S_NETNS" link set hdk8s0 up
ip -n "$K8S_NETNS" link set hdk8s1 up

# Start a daemon inside the namespace; its pid goes to pids/NAME (down.sh stops it).
start() {
  local name=$1; shift
  nohup nsenter --net="/run/netns/$K8S_NETNS" "$@" >"$K/logs/$name.log" 2>&1 &
  echo $! >"$K/pids/$name"
}
# Wait up to $1 seconds for a command to succeed; on timeout show the log of $2 and fail.
wait_for() {
  local seconds=$1 log=$2; shift 2
  local deadline=$(( $(date +%s) + seconds ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 40 "$K/logs/$log.log" >&2 || true
      fail "timed out after ${seconds}s waiting for: $*"
    fi
    sleep 0.2
  done
}
alive() { kill -0 "$(cat "$K/pids/$1")" 2>/dev/null; }

# -- certificates, tokens, kubeconfigs -------------------------------------------------
# A private CA; the API server's certificate names every address clients use: the host's
# 127.0.0.1 (through the forward), the node IP, the first service IP, kubernetes.default.
cd "$K/certs"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
  -subj "/CN=hyperdock-k8s-ca" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
  -subj "/CN=kube-apiserver" 2>/dev/null
printf '%s\n' \
  "subjectAltName=IP:127.0.0.1,IP:$K8S_NODE_IP,IP:10.203.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
  "extendedKeyUsage=serverAuth" "keyUsage=digitalSignature,keyEncipherment" >apiserver.ext
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
  -extfile apiserver.ext -out apiserver.crt 2>/dev/null
# Service account tokens are signed with this key (PKCS#1, which every v1.20 parser reads).
openssl genrsa -traditional -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
cd - >/dev/null

# Static bearer tokens (--token-auth-file): the tests' admin and the kubelet. Authorization
# is AlwaysAllow: this cluster only ever serves the tests of this machine.
admin_token=$(openssl rand -hex 24)
kubelet_token=$(openssl rand -hex 24)
cat >"$K/certs/tokens.csv" <<EOF
$admin_token,admin,admin,"system:masters"
$kubelet_token,system:node:$K8S_NODE,kubelet,"system:nodes"
EOF
chmod 600 "$K/certs/tokens.csv"

# One kubeconfig serves the host and the namespace: the API server listens on
# 127.0.0.1:$K8S_PORT in both (itself in the namespace, the forward on the host).
kubeconfig() {  # FILE USER TOKEN
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: hyperdock-k8s
  cluster:
    server: https://127.0.0.1:$K8S_PORT
    certificate-authority-data: $(base64 -w0 "$K/certs/ca.crt")
users:
- name: $2
  user:
    token: $3
contexts:
- name: hyperdock-k8s
  context:
    cluster: hyperdock-k8s
    user: $2
    namespace: default
current-context: hyperdock-k8s
EOF
  chmod 600 "$1"
}
kubeconfig "$K/admin.kubeconfig" admin "$admin_token"
kubeconfig "$K/kubelet.kubeconfig" "system:node:$K8S_NODE" "$kubelet_token"
kc() { kubectl --kubeconfig "$K/admin.kubeconfig" --request-timeout=5s "$@"; }

# -- etcd ---------------------------------------------------------------------------------
start etcd etcd --name hyperdock-k8s --data-dir "$K/etcd" \
  --listen-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((K8S_ETCD_PORT + 1))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((K8S_ETCD_PORT + 1))" \
  --initial-cluster "hyperdock-k8s=http://127.0.0.1:$((K8S_ETCD_PORT + 1))" --log-level warn

# -- containerd -----------------------------------------------------------------------
sed -e "s|@K8S_DIR@|$K|g" -e "s|@PAUSE_IMAGE@|$K8S_PAUSE_IMAGE|g" "$here/containerd.toml" >"$K/containerd.toml"
sed -e "s|@K8S_DIR@|$K|g" "$here/cni.conflist" >"$K/cni/10-hyperdock.conflist"
start containerd containerd --config "$K/containerd.toml"
wait_for 60 containerd k8s_ctr version
echo "containerd ready $(elapsed)"

# The pause image: a one-layer docker-archive around the static pause binary build.sh made.
(
  cd "$K/pause-image"
  mkdir -p rootfs && cp "$K8S_BIN/pause" rootfs/pause
  tar -C rootfs --owner=0 --group=0 --numeric-owner --mtime=@0 -cf layer.tar pause
  layer=$(sha256sum layer.tar | cut -d' ' -f1)
  mkdir -p "$layer" && mv layer.tar "$layer/layer.tar"
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$layer" >config.json
  config=$(sha256sum config.json | cut -d' ' -f1)
  mv config.json "$config.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
    "$config" "$K8S_PAUSE_IMAGE" "$layer" >manifest.json
  tar -cf pause.tar manifest.json "$config.json" "$layer/layer.tar"
)
k8s_ctr images import "$K/pause-image/pause.tar" >/dev/null

# -- API server -------------------------------------------------------------------------
wait_for 60 etcd in_netns bash -c "exec 3<>/dev/tcp/127.0.0.1/$K8S_ETCD_PORT"
# --kubelet-preferred-address-types=InternalIP: pod logs otherwise failed on a DNS lookup
# of the node's name. ServiceAccount admission is off: pods need no service account
# (and no token controller round trip). --insecure-port=0: no unauthenticated port.
start apiserver "$K8S_BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$K8S_ETCD_PORT" \
  --bind-address=0.0.0.0 --secure-port="$K8S_PORT" --insecure-port=0 --advertise-address="$K8S_NODE_IP" \
  --tls-cert-file="$K/certs/apiserver.crt" --tls-private-key-file="$K/certs/apiserver.key" \
  --client-ca-file="$K/certs/ca.crt" --token-auth-file="$K/certs/tokens.csv" --authorization-mode=AlwaysAllow \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$K/certs/sa.pub" --service-account-signing-key-file="$K/certs/sa.key" \
  --service-cluster-ip-range=10.203.0.0/24 --disable-admission-plugins=ServiceAccount --allow-privileged=true \
  --kubelet-preferred-address-types=InternalIP --profiling=false

# The forward to the host: socat in the namespace exposes the API server on a unix socket
# (a file, so visible from every network namespace), socat on the host listens on
# 127.0.0.1:$K8S_PORT and connects to that socket. Loopback only, on both sides.
rm -f "$K/apiserver.sock"
start forward-netns socat "UNIX-LISTEN:$K/apiserver.sock,fork,mode=600" "TCP:127.0.0.1:$K8S_PORT"
nohup socat "TCP-LISTEN:$K8S_PORT,bind=127.0.0.1,reuseaddr,fork,backlog=128" "UNIX-CONNECT:$K/apiserver.sock" \
  >"$K/logs/forward-host.log" 2>&1 &
echo $! >"$K/pids/forward-host"

wait_for 120 apiserver kc get --raw /readyz
echo "apiserver ready $(elapsed)"

# -- controller manager, scheduler ----------------------------------------------------------
# No node IPAM (the CNI plugin hands out pod addresses) and no CSR signing (no client
# certificates); no leader election (one instance); no insecure ports.
start controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig="$K/admin.kubeconfig" \
  --leader-elect=false --port=0 --bind-address=127.0.0.1 --secure-port=20257 \
  --service-account-private-key-file="$K/certs/sa.key" --root-ca-file="$K/certs/ca.crt" \
  --controllers='*,-nodeipam,-csrsigning' --cluster-name=hyperdock-k8s --profiling=false
start scheduler "$K8S_BIN/kube-scheduler" --kubeconfig="$K/admin.kubeconfig" \
  --leader-elect=false --port=0 --bind-address=127.0.0.1 --secure-port=20259 --profiling=false

# -- kubelet ---------------------------------------------------------------------------------
# cgroupfs driver, no QoS cgroups and no node-allocatable enforcement: no systemd, and the
# kubelet does not own the machine's cgroups. Image GC off (thresholds 100/99): an image
# it deleted could not be pulled back. Eviction only on a nearly full disk.
start kubelet "$K8S_BIN/kubelet" --kubeconfig="$K/kubelet.kubeconfig" \
  --container-runtime=remote --container-runtime-endpoint="unix://$K8S_CONTAINERD_SOCK" \
  --node-ip="$K8S_NODE_IP" --address="$K8S_NODE_IP" --hostname-override="$K8S_NODE" \
  --root-dir="$K/kubelet" --cert-dir="$K/kubelet/pki" --volume-plugin-dir="$K/kubelet/volume-plugins" \
  --seccomp-profile-root="$K/kubelet/seccomp" \
  --fail-swap-on=false --cgroup-driver=cgroupfs --cgroups-per-qos=false --enforce-node-allocatable= \
  --anonymous-auth=true --authorization-mode=AlwaysAllow --read-only-port=0 --port=20250 --healthz-port=0 \
  --pod-infra-container-image="$K8S_PAUSE_IMAGE" \
  --image-gc-high-threshold=100 --image-gc-low-threshold=99 \
  --eviction-hard='nodefs.available<1%,imagefs.available<1%' \
  --register-node=true --serialize-image-pulls=false

node_ready() {
  [ "$(kc get node "$K8S_NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for 180 kubelet node_ready
# The node controller lifts the not-ready taint a moment after Ready; until then nothing
# schedules (a test's first pod would wait for it).
no_taints() { [ -z "$(kc get node "$K8S_NODE" -o 'jsonpath={.spec.taints}')" ]; }
wait_for 60 controller-manager no_taints
for d in etcd containerd apiserver controller-manager scheduler kubelet forward-netns forward-host; do
  alive "$d" || { tail -n 40 "$K/logs/$d.log" >&2; fail "$d died"; }
done
echo "node $K8S_NODE Ready $(elapsed)"

# What the test fixture k8s_cluster reads (HYPERDOCK_K8S_DIR points at this directory).
cat >"$K/cluster.env" <<EOF
HYPERDOCK_K8S_KUBECONFIG=$K/admin.kubeconfig
HYPERDOCK_K8S_CONTAINERD=$K8S_CONTAINERD_SOCK
HYPERDOCK_K8S_NODE=$K8S_NODE
HYPERDOCK_K8S_NETNS=$K8S_NETNS
HYPERDOCK_K8S_VERSION=$K8S_VERSION
EOF
echo "k8s cluster up in $(elapsed); kubeconfig: $K/admin.kubeconfig (export HYPERDOCK_K8S_DIR=$K for the tests)"
