# Settings shared by .ci/k8s/{build,up,down,import-image}.sh (sourced, not run).
# Every one can be overridden from the environment.

# The Kubernetes release of Debian bookworm's source package `kubernetes`.
K8S_VERSION=v1.20.2
# Where build.sh caches the binaries (kept between CI runs on the same machine).
K8S_CACHE=${HYPERDOCK_K8S_CACHE:-/var/cache/hyperdock-k8s}
K8S_BIN=$K8S_CACHE/bin/$K8S_VERSION
# The running cluster's state, logs and kubeconfig (wiped by the next up.sh). The test
# fixture k8s_cluster reads $K8S_DIR/cluster.env.
K8S_DIR=${HYPERDOCK_K8S_DIR:-/tmp/hyperdock-k8s}
# The network namespace everything runs in: the cluster's private addresses (node
# 10.202.0.1, services 10.203.0.0/24, pods 10.204.0.0/24) exist only in there.
K8S_NETNS=${HYPERDOCK_K8S_NETNS:-hyperdock-k8s}
# The API server's port: inside the namespace, and forwarded to 127.0.0.1 of the host.
K8S_PORT=${HYPERDOCK_K8S_PORT:-26443}
# etcd's client and peer ports (inside the namespace only).
K8S_ETCD_PORT=22379
K8S_NODE=hyperdock-node
K8S_NODE_IP=10.202.0.1
# The pod sandbox image, built from the tree's pause.c and imported by up.sh.
K8S_PAUSE_IMAGE=docker.io/library/hyperdock-pause:$K8S_VERSION
K8S_CONTAINERD_SOCK=$K8S_DIR/containerd/containerd.sock
# The host sysctls the kubelet sets (pkg/kubelet/cm setupKernelTunables): up.sh saves
# them, down.sh restores them. Values such as kernel.panic=10 / kernel.panic_on_oops=1
# must not outlive the tests on a shared machine.
K8S_SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes"

# Run a command inside the cluster's network namespace (only the network: the
# filesystem is the host's, which is what makes hostPath volumes shared with the host).
in_netns() { nsenter --net="/run/netns/$K8S_NETNS" "$@"; }

# ctr talking to the cluster's containerd, in the namespace the CRI plugin uses.
k8s_ctr() { ctr --address "$K8S_CONTAINERD_SOCK" --namespace k8s.io "$@"; }
