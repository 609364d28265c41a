#!/usr/bin/env bash
# A one-node Slurm cluster on 127.0.0.1 for the Slurm launcher's tests: munged,
# slurmctld and slurmd with their state, spool and logs under one folder
# ($HYPERDOCK_SLURM_DIR, default /tmp/hyperdock-slurm). Two fake GPUs (device nodes
# listed in gres.conf) give real --gres=gpu:N scheduling and CUDA_VISIBLE_DEVICES.
# Prints the SLURM_CONF to export. Idempotent: a running cluster is left as it is.
set -euo pipefail
dir=${HYPERDOCK_SLURM_DIR:-/tmp/hyperdock-slurm}
conf=$dir/slurm.conf
export SLURM_CONF=$conf
if [ -f "$dir/slurmctld.pid" ] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null \
   && scontrol ping 2>/dev/null | grep -q UP; then
  echo "$conf"; exit 0
fi
mkdir -p "$dir"/{state,spool,munge,dev}
# munged refuses a socket folder others may write to, and wants a key of its own.
chmod 0755 "$dir/munge"
[ -f "$dir/munge.key" ] || { dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none; }
chmod 0400 "$dir/munge.key"
for i in 0 1; do [ -e "$dir/dev/nvidia$i" ] || mknod "$dir/dev/nvidia$i" c 195 "$i"; done
node=$(hostname -s)
# More CPUs and memory than the machine has (config_overrides): jobs of the tests sleep
# or write a file, and the benchmark keeps 50 in flight at once.
cat > "$conf" <<CONF
ClusterName=hyperdock
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket.2
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
KillWait=5
MinJobAge=300
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 CPUs=64 RealMemory=64000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
echo "NodeName=$node Name=gpu File=$dir/dev/nvidia[0-1]" > "$dir/gres.conf"
munged --key-file "$dir/munge.key" --socket "$dir/munge/munge.socket.2" \
  --pid-file "$dir/munged.pid" --log-file "$dir/munged.log" --seed-file "$dir/munge.seed" --force
slurmctld -f "$conf"
slurmd -f "$conf" -N "$node"
for _ in $(seq 100); do
  sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)' && break
  sleep 0.2
done
sinfo -h -o '%t' | grep -qE '^(idle|mix|alloc)' || {
  tail -n 30 "$dir/slurmctld.log" "$dir/slurmd.log"; echo "Slurm did not come up"; exit 1; }
echo "$conf"
