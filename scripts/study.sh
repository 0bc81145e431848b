#!/usr/bin/env bash
# Random vs designed mixtures (issue 16, part 6; README "Random vs designed mixtures (study)"):
# the same config, held-out mixtures and finetune budget, once with mixtures.design=spanning and
# once with mixtures.design=random; then instructmining compare-designs. Not run by CI.
#   bash scripts/study.sh [extra snakemake arguments]
#   STUDY_CONFIG=config/study.yaml (an overlay on config/config.yaml) STUDY_DIR=results-study CORES=2
#   STUDY_SEED=1 (config seed: pool sample, mixtures, held-out set, finetune seeds; another value is an
#   independent replicate of the whole study) STUDY_TILTS="0" (further spanning arms, one per
#   mixtures.max_tilt value, in spanning-tilt<value>; "" for none)   (the defaults)
# The random run starts as a copy of the spanning run (results, logs and .snakemake metadata, mtimes
# kept), so the pool, the per-sample scores, the reward and base models and the held-out finetunes
# are reused: Snakemake reruns make_mixtures (its design parameter changed) and what depends on it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bash scripts/setup-env.sh  # as scripts/demo.sh: the pinned venv, then its snakemake
# shellcheck disable=SC1091
. .venv/bin/activate
# The study config is an overlay on the demo config (config/study.yaml says what it changes).
config=$(realpath "${STUDY_CONFIG:-config/study.yaml}")
demo=$(realpath config/config.yaml)
out=${STUDY_DIR:-results-study}
mkdir -p "$out"
out=$(realpath "$out")
cores=${CORES:-2}
seed=${STUDY_SEED:-1}
tilts=${STUDY_TILTS-0}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
# Targets before --configfile (it takes several values); --directory keeps each run's results apart.
# Each arm's mixtures settings go in an overlay file of its own: --config "mixtures={max_tilt: 0}"
# would hand the schema the string '0', and a second --config would replace the first.
run() {  # run DIR MIXTURES-SETTINGS [extra args]
    local dir=$1 settings=$2
    shift 2
    mkdir -p "$dir"
    printf 'mixtures: {%s}\n' "$settings" > "$dir/arm.yaml"
    snakemake --cores "$cores" --directory "$dir" --snakefile "$repo/Snakefile" \
        --configfile "$demo" "$config" "$dir/arm.yaml" --config "seed=$seed" "$@"
}
copy_of_spanning() {  # the pool, scores, models and held-out finetunes are reused; mixtures rerun
    if [ ! -d "$1/results" ]; then
        cp -a "$out/spanning" "$1"
        rm -rf "$1/.snakemake/locks" "$1/.snakemake/incomplete"
        # The spanning design's report; a random make_mixtures writes none, so a copy would be stale.
        rm -f "$1/results/datasets/design.json"
    fi
}
run "$out/spanning" "design: spanning" "$@"
spanning_s=$(( $(date +%s) - start ))
copy_of_spanning "$out/random"
run "$out/random" "design: random" "$@"
arms=()
for t in $tilts; do
    copy_of_spanning "$out/spanning-tilt$t"
    run "$out/spanning-tilt$t" "design: spanning, max_tilt: $t" "$@"
    arms+=(--arm "tilt$t=$out/spanning-tilt$t")
done
instructmining compare-designs --random "$out/random" --designed "$out/spanning" "${arms[@]}" \
    --out "$out/comparison.json" --markdown "$out/comparison.md"
echo "study finished in $(( $(date +%s) - start )) s (spanning run ${spanning_s} s); see $out/comparison.md"
