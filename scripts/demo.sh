#!/usr/bin/env bash
# The offline demo on a CPU laptop: install, run every stage with 2 cores, build the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cores=${CORES:-2}
start=$(date +%s)
snakemake --cores "$cores" --configfile config/config.yaml "$@"
snakemake --cores 1 --configfile config/config.yaml --report results/report.html
echo "demo finished in $(( $(date +%s) - start )) s; open results/report.html"
