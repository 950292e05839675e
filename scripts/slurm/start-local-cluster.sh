#!/usr/bin/env bash
# A real single-node SLURM on this machine (Debian's slurm-wlm, no systemd needed), for
# trying `hydra/launcher=slurm` on a laptop and for the tests in tests/cluster/.
#   sudo bash scripts/slurm/start-local-cluster.sh        # last line of stdout: the partition
#   sudo bash scripts/slurm/stop-local-cluster.sh
# Idempotent: installs what is missing (apt), writes the configs, starts only the daemons
# that are not running, and returns once the node takes jobs.
# Environment:
#   MER_SLURM_PARTITION   partition name (debug), the same default as conf/hydra/launcher/slurm.yaml
#   MER_SLURM_CPUS        CPUs the node offers (all); more than the machine has oversubscribes it
#   MER_SLURM_RESET=1     wipe the controller's state and the accounting database first
# Exit status: 0 ready, 2 not root, 3 packages could not be installed, 1 anything else.
set -euo pipefail
PARTITION=${MER_SLURM_PARTITION:-debug}
NPROC=$(nproc)
CPUS=${MER_SLURM_CPUS:-$NPROC}
RESET=${MER_SLURM_RESET:-0}
NODE=$(hostname -s)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
APT_LOG=/var/log/mer-slurm-apt.log
log() { echo "[start-local-cluster] $*" >&2; }
wait_for() {  # wait_for SECONDS COMMAND...: until COMMAND succeeds
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -ge $end ] && return 1; sleep 0.5; done
}
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
[ "$(id -u)" = 0 ] || { echo "start-local-cluster: must run as root (sudo)" >&2; exit 2; }

# Accounting (slurmdbd on mariadb) is not optional here: without it `sacct` fails, and
# submitit waits forever for a job that died without its result (scancel, timeout, OOM)
# instead of raising UncompletedJobError.
packages=(slurm-wlm munge slurmdbd mariadb-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "start-local-cluster: ${missing[*]} missing and no apt-get" >&2; exit 3; }
  log "installing ${missing[*]} (log: $APT_LOG)"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists of a fresh machine may be stale or absent: update only when needed.
  if ! apt-get install -y --no-install-recommends "${missing[@]}" >"$APT_LOG" 2>&1; then
    { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; } >>"$APT_LOG" 2>&1 \
      || { echo "start-local-cluster: apt-get could not install ${missing[*]}; see $APT_LOG" >&2; exit 3; }
  fi
fi

if [ "$RESET" = 1 ]; then
  log "MER_SLURM_RESET=1: stopping and wiping the job state and the accounting database"
  bash "$HERE/stop-local-cluster.sh" >&2 || true
  # Both or neither: a wiped controller restarts job ids at 1, and sacct would then answer
  # a new job's id with an old job's final state.
  rm -rf /var/spool/slurmctld /var/spool/slurmd
  DROP_DB=1
fi
mkdir -p /run/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/slurm

# munge authenticates every daemon and client; Debian's postinst cannot start it without systemd.
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
if ! (munge -n | unmunge) >/dev/null 2>&1; then
  log "starting munged"
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock /run/munge/munged.pid  # a crashed munged's leftovers
  runuser -u munge -- /usr/sbin/munged
  wait_for 15 sh -c 'munge -n | unmunge' || { echo "munged did not start; see /var/log/munge/munged.log" >&2; exit 1; }
fi

MEMORY=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
OVERRIDES=""
[ "$CPUS" != "$NPROC" ] && OVERRIDES="SlurmdParameters=config_overrides"
# CR_Core: jobs share the node's memory; with CR_Core_Memory and no DefMemPerCPU every job
# would take all of it and the sweep's jobs would run one at a time.
# EnforcePartLimits=ALL: a job asking for more CPUs than the node has is refused by sbatch,
# where it would otherwise pend forever.
# batch_sched_delay=0: a job starts within a second of sbatch, not after up to 3 s.
# RealMemory at 90 % of what slurmd sees: above it the node drains itself (Low RealMemory).
CONF=$(cat <<EOF
# written by mer's scripts/slurm/start-local-cluster.sh
ClusterName=merlocal
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
EnforcePartLimits=ALL
ReturnToService=2
MailProg=/bin/true
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
${OVERRIDES}
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=$((MEMORY * 9 / 10)) State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$CONF" ]; then
  if alive /run/slurm/slurmctld.pid || alive /run/slurm/slurmd.pid; then
    log "configuration changed: restarting slurmctld and slurmd"
    bash "$HERE/stop-local-cluster.sh" --slurm-only >&2
  fi
  printf '%s\n' "$CONF" >/etc/slurm/slurm.conf
fi

mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if ! mysqladmin ping >/dev/null 2>&1; then
  log "starting mariadb"
  setsid /usr/bin/mysqld_safe --user=mysql >/var/log/slurm/mysqld_safe.out 2>&1 </dev/null &
  wait_for 60 mysqladmin ping || { echo "mariadb did not start; see /var/log/slurm/mysqld_safe.out" >&2; exit 1; }
fi
[ "${DROP_DB:-0}" = 1 ] && mysql -u root -e "DROP DATABASE IF EXISTS slurm_acct_db;"
# The database listens on localhost only; the password guards nothing beyond this machine.
mysql -u root <<'EOF'
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
cat >/etc/slurm/slurmdbd.conf <<'EOF'
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
chmod 0600 /etc/slurm/slurmdbd.conf  # slurmdbd refuses a configuration others can read
if ! alive /run/slurm/slurmdbd.pid; then log "starting slurmdbd"; slurmdbd; fi
wait_for 30 sacctmgr -n -P show cluster || { echo "slurmdbd does not answer; see /var/log/slurm/slurmdbd.log" >&2; exit 1; }

if ! alive /run/slurm/slurmctld.pid; then log "starting slurmctld"; slurmctld; fi
wait_for 30 scontrol ping || { echo "slurmctld does not answer; see /var/log/slurm/slurmctld.log" >&2; exit 1; }
if ! alive /run/slurm/slurmd.pid; then log "starting slurmd"; slurmd -N "$NODE"; fi
end=$((SECONDS + 60))
while :; do
  state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1)
  case "$state" in
    idle | mixed | allocated | completing) break ;;
    # A node restarted with jobs lost, or with a changed configuration, comes back DOWN.
    down* | drain*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  [ $SECONDS -ge $end ] && { echo "node $NODE is not ready (state '$state'); see /var/log/slurm/" >&2; exit 1; }
  sleep 0.5
done
log "node $NODE is $state, partition $PARTITION, $CPUS CPUs"
echo "$PARTITION"
