#!/usr/bin/env bash
# A single-node Slurm for test/sweep.test.ts (needs root and Debian's slurm-wlm and munge, which
# .ci/run installs): munge, slurmctld and slurmd on this machine, configuration and state in $1.
# Prints the SLURM_CONF to use; `bash test/slurm/start.sh DIR stop` stops the daemons again. Its
# own ports (6917, 6918), so a Slurm already running on the machine is left alone.
set -euo pipefail
root=${1:-/tmp/pimc-slurm}
host=$(hostname -s)
# A cluster left running here by an earlier run is stopped first (ports below are pimc's own).
for d in slurmd slurmctld; do
  if [ -s "$root/$d.pid" ]; then kill "$(cat "$root/$d.pid")" 2>/dev/null || true; rm -f "$root/$d.pid"; fi
done
[ "${2:-}" = stop ] && exit 0
sleep 0.2
mkdir -p "$root"/{state,spool,log,etc} /run/munge /var/log/munge /var/lib/munge /etc/munge
if [ ! -s /etc/munge/munge.key ]; then dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || munged --force 2>/dev/null
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
cat > "$root/etc/slurm.conf" <<CONF
ClusterName=pimc
SlurmctldPort=6917
SlurmdPort=6918
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$root/state
SlurmdSpoolDir=$root/spool
SlurmctldPidFile=$root/slurmctld.pid
SlurmdPidFile=$root/slurmd.pid
SlurmctldLogFile=$root/log/slurmctld.log
SlurmdLogFile=$root/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SchedulerType=sched/builtin
SchedulerParameters=kill_invalid_depend,sched_interval=1
MessageTimeout=10
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$root/etc/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 50); do
  if sinfo -h -o %t 2>/dev/null | grep -qx idle; then echo "$SLURM_CONF"; exit 0; fi
  sleep 0.2
done
echo "slurm did not come up:" >&2; sinfo >&2 || true; tail -5 "$root/log/slurmctld.log" "$root/log/slurmd.log" >&2; exit 1
