#!/usr/bin/env bash
# The README's demo figures and docs/demo_*.png|svg, regenerated from the demo run:
#   FRESH=1 bash scripts/figures.sh   # rerun every demo job first (--forceall), then copy the figures
#   bash scripts/figures.sh           # reuse an up-to-date demo run (Snakemake reruns only what changed)
# Extra arguments go to snakemake (e.g. --cores 8). After a fresh run, update the numbers in the
# README's "What the demo found" from results/analysis/rule.html and univariate.html.
set -euo pipefail
cd "$(dirname "$0")/.."
force=()
if [[ "${FRESH:-0}" == 1 ]]; then force=(--forceall); fi
bash scripts/demo.sh "${force[@]}" "$@"
for name in fit coefficients univariate selection; do
  for ext in png svg; do
    cp "results/analysis/$name.$ext" "docs/demo_$name.$ext"
  done
done
echo "figures copied to docs/: $(cd docs && ls demo_*.png demo_*.svg | tr '\n' ' ')"
