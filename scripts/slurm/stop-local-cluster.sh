#!/usr/bin/env bash
# Stop the single-node SLURM that start-local-cluster.sh started: jobs are cancelled, then
# the daemons stop, each by its pid file (never by name: other slurm or mariadb processes
# on the machine are not ours). The job state and accounting database are kept, so job ids
# keep counting up and sacct never mistakes a new job for an old one.
#   --slurm-only   stop slurmctld and slurmd only (a configuration change)
set -uo pipefail
SLURM_ONLY=0
[ "${1:-}" = "--slurm-only" ] && SLURM_ONLY=1
log() { echo "[stop-local-cluster] $*" >&2; }
[ "$(id -u)" = 0 ] || { echo "stop-local-cluster: must run as root (sudo)" >&2; exit 2; }
pid_of() { [ -s "$1" ] && cat "$1"; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
stop_pid() {  # stop_pid NAME PID: SIGTERM, up to 20 s, then SIGKILL
  local name=$1 pid=${2:-}
  alive "$pid" || return 0
  log "stopping $name ($pid)"
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 40); do alive "$pid" || return 0; sleep 0.5; done
  log "$name did not stop: SIGKILL"
  kill -KILL "$pid" 2>/dev/null
  sleep 0.5
}

CTLD=$(pid_of /run/slurm/slurmctld.pid)
SLURMD=$(pid_of /run/slurm/slurmd.pid)
if alive "$CTLD"; then
  jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    log "cancelling jobs $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    for _ in $(seq 30); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  scontrol shutdown >/dev/null 2>&1  # slurmctld and slurmd both, saving state
  for _ in $(seq 40); do alive "$CTLD" || alive "$SLURMD" || break; sleep 0.5; done
fi
stop_pid slurmctld "$CTLD"
stop_pid slurmd "$SLURMD"
# A job step whose job survived the cancel: its daemon belongs to slurmd, which is gone.
for pid in $(pgrep -x slurmstepd 2>/dev/null); do stop_pid slurmstepd "$pid"; done
[ "$SLURM_ONLY" = 1 ] && exit 0

stop_pid slurmdbd "$(pid_of /run/slurm/slurmdbd.pid)"
MYSQLD=$(pid_of /run/mysqld/mysqld.pid)
if alive "$MYSQLD"; then
  log "stopping mariadb ($MYSQLD)"
  mysqladmin shutdown >/dev/null 2>&1 || kill -TERM "$MYSQLD" 2>/dev/null
  # mysqld_safe, its watchdog, exits by itself after a clean shutdown
  for _ in $(seq 60); do alive "$MYSQLD" || break; sleep 0.5; done
fi
stop_pid munged "$(pid_of /run/munge/munged.pid)"
log "stopped"
