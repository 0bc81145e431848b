# Input functions (wildcards -> paths) and the tables they read. Planning lives in the package
# (instructmining.plan, instructmining.score_plan: unit-tested, standard library only), so parsing
# and dry runs stay fast.
import json
import sys
from pathlib import Path

sys.path.insert(
    0, str(Path(workflow.basedir) / "src")
)  # run from a clone without installing
from instructmining import plan, score_plan  # noqa: E402
from instructmining.config import check_config, resolve_data_root  # noqa: E402
from instructmining.errors import InstructMiningError  # noqa: E402
from instructmining.fetch import plan_fetch  # noqa: E402
from instructmining.fingerprint import spec_stamp  # noqa: E402
from instructmining.pretrain import input_stamp as base_model_input_stamp  # noqa: E402

# Validated once, before any job starts: the schema (types, unknown keys, defaults; messages name
# the key, e.g. 'bins.kk'), then what a schema cannot say (cross-references, sizes the sources
# cannot hold, indicator names, files, LoRA modules). The same check as `instructmining
# validate-config`; a bad config prints the message, not a traceback.
try:
    check_config(config, base=Path(workflow.basedir))
except InstructMiningError as exc:
    sys.exit(f"instructmining: bad config: {exc}")
# Resolved once, against the workflow's folder as the check did: jobs run in the working directory
# (`--directory`), where a relative data_root would point somewhere else.
if config.get("data_root"):
    config["data_root"] = str(
        resolve_data_root(config["data_root"], Path(workflow.basedir))
    )

MIXTURES = plan.mixture_names(config)
REPEATS = plan.repeat_names(config)
DATASETS = plan.all_datasets(config)
ANALYSIS_GROUPS = plan.analysis_groups(config)
SCORE_JOBS = score_plan.score_jobs(config)


def scaled_mem_mb(base_mb):
    """mem_mb that grows with the retry attempt (1x, 2x, 3x), so an OOM-killed job gets more."""

    def mem(wildcards, attempt):
        return int(base_mb * attempt)

    return mem


def scaled_runtime(base_minutes):
    """runtime in minutes that grows with the retry attempt (a timed-out job gets longer)."""

    def runtime(wildcards, attempt):
        return int(base_minutes * attempt)

    return runtime


def as_json(obj):
    """A config slice as compact JSON for one CLI flag (quote it with {params.x:q})."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def data_root(wildcards):
    """--data-root: what relative data paths in the config are relative to ("none": not set)."""
    return config["data_root"] or "none"


# --- analysis ---
def group_losses(wildcards):
    """Eval-loss files of one collected table."""
    return [f"results/loss/{d}.json" for d in ANALYSIS_GROUPS[wildcards.group]]


def group_indicators(wildcards):
    """Indicator rows of one collected table."""
    return [f"results/indicators/{d}.parquet" for d in ANALYSIS_GROUPS[wildcards.group]]


# --- selection ---
def selection_inputs(wildcards):
    """Pool, and for rule subsets the rule file, per-sample scores and pool embeddings it reads."""
    return plan.selection_files(config, wildcards.method)


def selection_rule(wildcards):
    """--rule: rule.json or a shipped rule's name; nothing for random subsets."""
    return (
        plan.quality_rule(config) if wildcards.get("method", "rule") == "rule" else ""
    )


# --- finetune ---
def finetune_inputs(wildcards):
    """The dataset, plus the base model folder when the workflow builds it (not for hub models)."""
    return plan.finetune_files(config, wildcards.dataset)


# --- indicators ---
def score_job(wildcards):
    """The score job of {indicator} (configured or not: any registry name can be requested)."""
    name = wildcards.indicator
    return SCORE_JOBS.get(name) or score_plan.score_job(config, name)


def score_model_stamp(wildcards):
    """The scorer model's package version (params: a package upgrade reruns its scores)."""
    return spec_stamp(score_job(wildcards).spec)


def gguf_model(wildcards):
    """The indicator model spec that rule convert_model converts into results/models/{gguf_model}."""
    return score_plan.gguf_models(config)[f"results/models/{wildcards.gguf_model}"]


def gguf_model_stamp(wildcards):
    """The installed version of the package holding that GGUF (params: an upgrade reconverts)."""
    return spec_stamp({"package": gguf_model(wildcards)["package"]})


def score_inputs(wildcards):
    """The pool, plus the scorer's model folder when the workflow builds it."""
    return {"pool": score_plan.POOL, "model": score_job(wildcards).model_dirs}


def score_shards(wildcards):
    """The shard files merge_scores joins."""
    return score_job(wildcards).shard_files()


def dataset_indicator_inputs(wildcards):
    """A dataset's rows, the score files of its sample-level indicators, the pool embeddings."""
    names = config["indicators"]["names"]
    embeddings = score_plan.uses_embeddings(names)
    return {
        "data": f"results/datasets/{wildcards.dataset}.parquet",
        "scores": [
            score_plan.score_file(n) for n in score_plan.sample_indicators(names)
        ],
        "embeddings": [score_plan.EMBEDDINGS] if embeddings else [],
        "embedding_ids": [score_plan.EMBEDDING_IDS] if embeddings else [],
    }
