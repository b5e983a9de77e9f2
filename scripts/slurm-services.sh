#!/usr/bin/env bash
# Test services for the Slurm executor and the nftables renderer, sourced by scripts/test.sh (or
# run directly: `bash scripts/slurm-services.sh` starts them and prints the variables to export).
#
# start_slurm: a single-host Slurm (Debian slurm-wlm) with two partitions, `gpu` (default) and
# `burst`, on one node named `localhost` that declares `gpu:h100:8` through gres.conf. There are
# no GPUs here: each GRES `File=` is a symlink to /dev/null (Slurm wants character devices; a
# `Count=` without files drains the node). No systemd: munged runs as the munge user, slurmctld
# and slurmd are started by hand, each with a bounded readiness wait that also checks that the
# daemon's PID is alive. There is no slurmdbd: finished jobs are read with `scontrol show job`
# (kept MinJobAge seconds) and `sacct -c` (jobcomp/filetxt). Scheduler parameters are tuned for
# fast turnover of short test jobs. Exports TIDEGATE_TEST_SLURM=1 when ready.
#
# start_nftables: installs nft and ip for the nftables test (it runs as root in a network
# namespace); exports nothing.

slurm_log() { printf '== %s\n' "$*" >&2; }

# Waits up to $1 seconds for the command "${@:3}" to succeed while the process in pidfile $2 lives.
slurm_wait_ready() {
  local secs=$1 pidfile=$2; shift 2
  local deadline=$((SECONDS + secs))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if [ -s "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      slurm_log "daemon of $pidfile died"; return 1
    fi
    if timeout 3 "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  slurm_log "timed out after ${secs}s waiting for: $*"; return 1
}

start_slurm() {
  local started=$SECONDS
  if declare -F apt_install >/dev/null; then apt_install slurm-wlm munge; fi
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    slurm_log "slurm-wlm/munge are not installed"; return 1
  fi
  local etc=/etc/slurm state=/var/lib/tidegate-slurm run=/run/tidegate-slurm
  mkdir -p "$etc" "$state/ctld" "$state/d" "$state/gpus" "$run" /var/log/slurm
  chown -R slurm:slurm "$state" "$run" /var/log/slurm
  # Eight stand-in GPU device files.
  for i in 0 1 2 3 4 5 6 7; do ln -sf /dev/null "$state/gpus/nvidia$i"; done
  local cpus
  cpus=$(nproc)
  # Job slots are CPUs: declare more than the machine has so that short jobs run side by side.
  local slots=$((cpus * 8))
  cat >"$etc/slurm.conf" <<EOF
ClusterName=tidegate-test
SlurmctldHost=localhost
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$run/slurmctld.pid
SlurmdPidFile=$run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000,default_queue_depth=200
SlurmdParameters=config_overrides
MinJobAge=300
KillWait=2
InactiveLimit=0
MaxJobCount=100000
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$slots Gres=gpu:h100:8 State=UNKNOWN
PartitionName=gpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=burst Nodes=localhost MaxTime=INFINITE State=UP
EOF
  cat >"$etc/gres.conf" <<EOF
AutoDetect=off
NodeName=localhost Name=gpu Type=h100 File=$state/gpus/nvidia[0-7]
EOF
  # munge: key created at install; run as the munge user.
  mkdir -p /run/munge && chown munge:munge /run/munge
  if ! { [ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; }; then
    su -s /bin/sh munge -c "munged" || { slurm_log "munged failed to start"; return 1; }
  fi
  slurm_wait_ready 10 /run/munge/munged.pid sh -c 'munge -n | unmunge' || return 1
  if ! { [ -s "$run/slurmctld.pid" ] && kill -0 "$(cat "$run/slurmctld.pid")" 2>/dev/null; }; then
    slurmctld || { slurm_log "slurmctld failed to start (see /var/log/slurm/slurmctld.log)"; return 1; }
  fi
  slurm_wait_ready 15 "$run/slurmctld.pid" scontrol ping || return 1
  if ! { [ -s "$run/slurmd.pid" ] && kill -0 "$(cat "$run/slurmd.pid")" 2>/dev/null; }; then
    slurmd -N localhost || { slurm_log "slurmd failed to start (see /var/log/slurm/slurmd.log)"; return 1; }
  fi
  # A drain left in the state dir by an earlier run persists: resume the node.
  scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
  slurm_wait_ready 20 "$run/slurmd.pid" sh -c 'sinfo -h -N -o %T -n localhost | grep -Eq "^(idle|mixed|allocated)"' || {
    sinfo -N -l >&2 || true; return 1; }
  export TIDEGATE_TEST_SLURM=1
  slurm_log "Slurm ready in $((SECONDS - started)) s (partitions gpu, burst; gres gpu:h100:8)"
}

start_nftables() {
  if declare -F apt_install >/dev/null; then apt_install nftables iproute2; fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  start_slurm
  start_nftables
  echo "export TIDEGATE_TEST_SLURM=1"
fi
