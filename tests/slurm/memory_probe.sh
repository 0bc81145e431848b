#!/usr/bin/env bash
# Body of the test-only rule memory_probe (retry_probe.smk): fail unless SLURM granted this job
# at least NEED_MB of memory. Reads the grant from the controller (scontrol), i.e. what
# `sbatch --mem` really asked for, not what Snakemake intended.
# Usage: memory_probe.sh NEED_MB MEM_MB_OF_THIS_ATTEMPT OUT
set -euo pipefail
need=$1 asked=$2 out=$3
mem=$(scontrol show job "${SLURM_JOB_ID:?not inside a SLURM job}" | grep -o 'MinMemoryNode=[0-9.]*[KMGT]' | cut -d= -f2)
case $mem in
  *K) granted=$(( ${mem%K} / 1024 )) ;;
  *M) granted=${mem%M} ;;
  *G) granted=$(( ${mem%G} * 1024 )) ;;
  *T) granted=$(( ${mem%T} * 1024 * 1024 )) ;;
  *) echo "memory_probe: cannot read the job's memory grant ($mem)" >&2; exit 2 ;;
esac
echo "memory_probe: job $SLURM_JOB_ID mem_mb=$asked granted=${granted}MB need=${need}MB HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-unset}" >&2
if [ "$granted" -lt "$need" ]; then
  echo "memory_probe: granted ${granted} MB < ${need} MB: failing this attempt" >&2
  exit 1
fi
echo "$granted" > "$out"
