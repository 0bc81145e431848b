#!/usr/bin/env bash
# Stop the SLURM daemons that scripts/slurm/cluster-up.sh started, each by the pid in its pid
# file (never by process name: other daemons of the same name may belong to someone else), in
# reverse start order. Daemons that were already running when cluster-up.sh ran are left alone.
#
# Note: after this, slurm-client is still installed, so every `snakemake` call pays ~10 s of
# `scontrol` retries (the SLURM plugin probes the cluster at import). Stop the cluster only when
# no more snakemake calls follow, or remove the packages (apt-get purge slurm-client ...).
set -euo pipefail
STATE=${IM_SLURM_STATE:-/run/instructmining-slurm}
[ -s "$STATE/started" ] || { echo "cluster-down: nothing recorded in $STATE/started"; exit 0; }

stop() {  # name pidfile
  local name=$1 f=$2 p
  [ -s "$f" ] || { echo "cluster-down: $name: no pid file $f (already stopped)"; return 0; }
  p=$(cat "$f")
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p"
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      echo "cluster-down: $name ($p) ignored TERM for 15 s, sending KILL"
      kill -KILL "$p"
    fi
    echo "cluster-down: stopped $name ($p)"
  fi
  rm -f "$f"
}

# Reverse order of start: slurmd, slurmctld, slurmdbd, mariadbd, munged.
tac "$STATE/started" | while read -r name pidfile; do
  stop "$name" "$pidfile"
done
rm -f "$STATE/started"
