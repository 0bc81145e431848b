#!/usr/bin/env bash
# The test command (README, .ci/run): installs what it needs, lints, runs every test.
# The SLURM test runs last (it installs Debian's slurm packages and brings up a real cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ruff check src tests benchmarks
snakefmt --check Snakefile workflow/
python -m pytest --durations=12 "$@"
