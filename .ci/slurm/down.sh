#!/usr/bin/env bash
# Stops what .ci/slurm/up.sh started (by the pid files it wrote).
dir=${HYPERDOCK_SLURM_DIR:-/tmp/hyperdock-slurm}
export SLURM_CONF=$dir/slurm.conf
scancel --quiet --user=root 2>/dev/null || true
for name in slurmd slurmctld munged; do
  [ -f "$dir/$name.pid" ] && kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
done
exit 0
