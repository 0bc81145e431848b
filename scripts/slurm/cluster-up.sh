#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on this machine from Debian 12 packages, as root, without
# systemd: munge, MariaDB + slurmdbd (so `sacct` works: the snakemake SLURM plugin polls job
# status with sacct and hangs without it), slurmctld and slurmd. Used by tests/slurm/ and by
# anyone who wants to try `snakemake --profile slurm` on a laptop or a CI runner.
#
# Usage:  sudo bash scripts/slurm/cluster-up.sh        # idempotent: running daemons are kept
#         sudo bash scripts/slurm/cluster-down.sh      # stops what this script started
#
# Every daemon this script starts is recorded (name + pid file) in $STATE/started, so
# cluster-down.sh stops exactly those, by pid, and leaves daemons someone else started alone.
# Environment: SLURM_CLUSTER_NAME (default instructmining), SLURM_DB_PASS (loopback-only
# MariaDB user; throwaway default), IM_SLURM_STATE (default /run/instructmining-slurm).
set -euo pipefail
CLUSTER=${SLURM_CLUSTER_NAME:-instructmining}
DBPASS=${SLURM_DB_PASS:-instructmining-slurm}
STATE=${IM_SLURM_STATE:-/run/instructmining-slurm}
export DEBIAN_FRONTEND=noninteractive
t0=$(date +%s)
log() { echo "cluster-up [$(( $(date +%s) - t0 ))s] $*"; }

[ "$(id -u)" = 0 ] || { echo "cluster-up: must run as root (it installs packages and starts daemons)" >&2; exit 2; }
# Never overwrite a real cluster's configuration: only a file this script wrote (or none).
MARK="# Written by instructmining scripts/slurm/cluster-up.sh"
if [ -s /etc/slurm/slurm.conf ] && ! head -1 /etc/slurm/slurm.conf | grep -qF "$MARK" && [ "${IM_SLURM_FORCE:-0}" != 1 ]; then
  echo "cluster-up: /etc/slurm/slurm.conf was not written by this script; refusing to replace it" \
       "(set IM_SLURM_FORCE=1 to overwrite it on a throwaway machine)" >&2
  exit 2
fi
install -d -m 0755 "$STATE"
touch "$STATE/started"

running() {  # pidfile -> true if the pid in it is alive
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}
record() {  # name pidfile: remember that we started it (once)
  grep -q "^$1 " "$STATE/started" || echo "$1 $2" >> "$STATE/started"
}
wait_for() {  # tries description command...: poll every 0.2 s
  local n=$1 what=$2; shift 2
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "cluster-up: timed out waiting for $what" >&2; return 1
}

# 1. Packages: Debian 12 ships Slurm 22.05, munge 0.5.15, MariaDB 10.11. Installing
#    slurm-client makes every later `snakemake` call run `scontrol` (the SLURM plugin probes the
#    cluster at import), which retries ~10 s when no controller answers: so the controller is
#    started right below, in the same script.
PKGS="slurmctld slurmd slurm-client munge slurmdbd mariadb-server"
missing=$(for p in $PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done)
if [ -n "$missing" ]; then
  log "installing: $(echo $missing)"
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
log "packages ready"

# 2. The controller and the node are this host; its short name must resolve.
HOST=$(hostname -s)
getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >> /etc/hosts
CPUS=$(nproc)
MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')

# 3. munge authenticates every Slurm RPC.
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key --force
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
if ! running /run/munge/munged.pid; then
  runuser -u munge -- /usr/sbin/munged --force   # daemonizes; writes /run/munge/munged.pid
  record munged /run/munge/munged.pid
fi
wait_for 50 munge bash -c 'munge -n </dev/null | unmunge'

# 4. slurm.conf. Why each non-default line:
#    ProctrackType=linuxproc, TaskPlugin=affinity: no cgroup/systemd needed (containers, CI).
#    SelectType=cons_tres + CR_Core_Memory: jobs share the node by cores and memory, so
#      `--mem` (Snakemake's mem_mb) is a real scheduling constraint and appears in sacct.
#    DefMemPerCPU: a job without a memory request would otherwise take the whole node.
#    MinJobAge: keep finished jobs visible to squeue/scontrol for 5 minutes.
#    AccountingStoreFlags=job_comment: sacct shows the comment the snakemake plugin puts on each
#      job (rule name + wildcards), so a retry can be traced to its rule in `sacct -o Comment`.
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf.new <<EOF
$MARK: a one-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$HOST
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
ReturnToService=2
SlurmUser=slurm
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=/var/lib/slurm/slurmctld
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
AccountingStoreFlags=job_comment
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
# A re-run under a live controller with a changed file must tell the daemons (reconfigure below).
conf_changed=0
cmp -s /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf || conf_changed=1
mv /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf

# 5. Accounting: MariaDB (loopback only) + slurmdbd.
install -d -o mysql -g mysql -m 0755 /run/mysqld
if ! mariadb-admin ping >/dev/null 2>&1; then
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  # mariadbd does not daemonize: run it in the background, detached from this shell's session.
  setsid nohup /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
    --pid-file=/run/mysqld/mysqld.pid >/var/log/slurm/mariadb.out 2>&1 < /dev/null &
  record mariadbd /run/mysqld/mysqld.pid
  wait_for 150 mariadb mariadb-admin ping
fi
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
chown slurm:slurm /etc/slurm/slurmdbd.conf
chmod 600 /etc/slurm/slurmdbd.conf
if ! running /run/slurmdbd.pid; then
  /usr/sbin/slurmdbd   # daemonizes
  record slurmdbd /run/slurmdbd.pid
fi
wait_for 100 slurmdbd sacctmgr -n list cluster
sacctmgr -n list cluster format=cluster%64 | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null

# 6. Controller, then the node daemon.
if ! running /run/slurmctld.pid; then
  /usr/sbin/slurmctld   # daemonizes
  record slurmctld /run/slurmctld.pid
fi
wait_for 100 slurmctld scontrol ping
if [ "$conf_changed" = 1 ]; then scontrol reconfigure; fi
if ! running /run/slurmd.pid; then
  /usr/sbin/slurmd      # daemonizes
  record slurmd /run/slurmd.pid
fi
node_up() {  # idle, or already running jobs (when this script is re-run under a live cluster)
  case "$(sinfo -h -N -o %T | head -1)" in idle|mixed|allocated) return 0 ;; *) return 1 ;; esac
}
if ! wait_for 150 "node $HOST to be up" node_up; then
  sinfo -R >&2
  exit 1
fi
sinfo
log "SLURM cluster '$CLUSTER' up: $CPUS CPUs, ${MEM} MB; started by this script: $(cut -d' ' -f1 "$STATE/started" | tr '\n' ' ')"
