#!/usr/bin/env bash
# Stop the cluster up.sh started and undo what it did to the host: every process it
# started (by the pids it recorded), the pods' containers, the mounts under $K8S_DIR, the
# network namespace, and the host sysctls the kubelet changed (restored to their values
# before up.sh). Safe to run when nothing is running, and more than once.
# Keeps $K8S_DIR/logs for post-mortems; removes the rest of $K8S_DIR.
# Usage: down.sh [--quiet]
set -uo pipefail   # no -e: clean up as much as possible even when a step fails
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=common.sh
. "$here/common.sh"
K=$K8S_DIR
quiet=0; [ "${1:-}" = --quiet ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "k8s down: $*"; }

if [ ! -d "$K/pids" ] && ! ip netns list | grep -qx "$K8S_NETNS\( .*\)\?" && [ ! -f "$K/sysctl.saved" ]; then
  say "no cluster in $K"
  exit 0
fi

# A process is running unless it is gone or a zombie. up.sh's daemons are reparented to
# pid 1 when up.sh exits, which may take its time to reap them: `kill -0` succeeds on a
# zombie, and would make every stop below wait for nothing.
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }           # the fields after "(comm) "; comm may hold spaces
  [ "${stat%% *}" != Z ]
}

# Stop a process up.sh started: TERM, up to 10 s, then KILL. Only if the recorded pid is
# still one of ours (its command line names $K), never a recycled pid.
stop() {
  local name=$1 pidfile=$K/pids/$1 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if running "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$K/"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then kill -KILL "$pid" 2>/dev/null && say "$name killed (no exit 10 s after SIGTERM)"; fi
  fi
  rm -f "$pidfile"
}

# The kubelet first (it would restart containers), then the control plane and forwards.
for name in kubelet scheduler controller-manager apiserver forward-host forward-netns; do stop "$name"; done

# The pods' containers: runc's state under containerd's runc root lists all of them,
# whether or not containerd is still alive. SIGKILL, then delete (which also removes
# their cgroups).
for root in "$K"/containerd/runc/*/; do
  [ -d "$root" ] || continue
  for id in $(runc --root "$root" list -q 2>/dev/null); do
    runc --root "$root" kill "$id" KILL 2>/dev/null
  done
  sleep 0.5
  for id in $(runc --root "$root" list -q 2>/dev/null); do
    runc --root "$root" delete --force "$id" 2>/dev/null || say "runc delete $id failed"
  done
done
for name in containerd etcd; do stop "$name"; done

# What is left in the namespace: containerd's shims (containerd-shim-runc-v2 outlives
# containerd by design). They were started by our containerd, inside our namespace.
if [ -e "/run/netns/$K8S_NETNS" ]; then
  for pid in $(ip netns pids "$K8S_NETNS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  sleep 0.2
fi

# Mounts under $K: containers' overlay root filesystems, the pods' network namespaces
# (netns_mounts_under_state_dir), the kubelet's volume tmpfs. Deepest first.
if [ -d "$K" ]; then
  findmnt -rn -o TARGET | grep -F "$K/" | awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- |
    while read -r target; do
      umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || say "cannot unmount $target"
    done
fi

if ip netns list | grep -q "^$K8S_NETNS\( \|$\)"; then
  ip netns del "$K8S_NETNS" && say "network namespace $K8S_NETNS removed"
fi

# Host sysctls back to their values before up.sh.
if [ -f "$K/sysctl.saved" ]; then
  while IFS='=' read -r key value; do
    [ -n "$key" ] || continue
    sysctl -q -w "$key=$value" >/dev/null || say "cannot restore $key=$value"
  done <"$K/sysctl.saved"
  rm -f "$K/sysctl.saved"
  say "sysctls restored: $(tr '\n' ' ' <<<"$(for k in $K8S_SYSCTLS; do echo "$k=$(sysctl -n "$k")"; done)")"
fi
# Host paths the cluster created (only those up.sh saw missing).
# Cgroups are removed with rmdir (once empty), children first.
if [ -f "$K/created-dirs" ]; then
  while read -r d; do
    case $d in
      "") ;;
      /sys/fs/cgroup/*) [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null ;;
      *) rm -rf "$d" ;;
    esac
  done <"$K/created-dirs"
fi

# State goes (it can be large: containerd's content store); logs stay. Not while anything
# is still mounted under $K (rm -rf would reach into it).
if [ -n "$(findmnt -rn -o TARGET | grep -F "$K/")" ]; then
  say "mounts remain under $K; state left in place"
elif [ -d "$K" ]; then
  find "$K" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null ||
    say "could not remove all of $K"
fi
say "stopped"
exit 0
