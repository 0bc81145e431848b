# Input functions (wildcards -> paths) and the tables they read. Planning lives in the package
# (instructmining.plan, instructmining.score_plan: unit-tested, standard library only), so parsing
# and dry runs stay fast.
import json
import shlex
import sys
from pathlib import Path

from snakemake.io import apply_wildcards

sys.path.insert(
    0, str(Path(workflow.basedir) / "src")
)  # run from a clone without installing
from instructmining import design, plan, score_plan  # noqa: E402
from instructmining import resources as job_resources  # noqa: E402
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
HELDOUT = plan.heldout_names(config)
DATASETS = plan.all_datasets(config)
ANALYSIS_GROUPS = plan.analysis_groups(config)
SCORE_JOBS = score_plan.score_jobs(config)


# --- resources (instructmining.resources: attempt scaling, caps, config overrides, retry guard) ---
def _job_log(wildcards, rulename):
    """The job's log: its failure record (a failure a retry cannot fix) lies next to it."""
    return apply_wildcards(workflow.get_rule(rulename).log[0], wildcards)


def scaled_mem_mb(base_mb):
    """mem_mb: the rule's base (or config resources.rules.<rule>.mem_mb) x attempt, capped at
    resources.max_mem_mb; 1 GB on a retry of a failure a retry cannot fix."""

    def mem_mb(wildcards, attempt, rulename):
        log = _job_log(wildcards, rulename)
        return job_resources.job_size(config, rulename, "mem_mb", base_mb, attempt, log)

    return mem_mb


def scaled_runtime(base_minutes):
    """runtime (minutes): base x attempt, capped at resources.max_runtime."""

    def runtime(wildcards, attempt, rulename):
        log = _job_log(wildcards, rulename)
        return job_resources.job_size(
            config, rulename, "runtime", base_minutes, attempt, log
        )

    return runtime


def job_threads(base):
    """threads: the rule's, or config resources.rules.<rule>.threads (the CPUs per GPU)."""

    def threads(wildcards, attempt, rulename):
        log = _job_log(wildcards, rulename)
        return job_resources.job_size(config, rulename, "threads", base, attempt, log)

    return threads


def gpus(n):
    """gpu: declared in the rule, so `snakemake -c16 --resources gpu=2` caps concurrent GPU jobs;
    the SLURM plugin turns it into --gpus=n. 0 on a retry of a failure a retry cannot fix.
    """

    def gpu(wildcards, attempt, rulename):
        return job_resources.gpus(n, attempt, _job_log(wildcards, rulename))

    return gpu


def attempt_number(wildcards, attempt):
    """The attempt, for the CLI's --attempt (retry guard)."""
    return attempt


def as_json(obj):
    """A config slice as compact JSON for one CLI flag (quote it with {params.x:q})."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def data_root(wildcards):
    """--data-root: what relative data paths in the config are relative to ("none": not set)."""
    return config["data_root"] or "none"


def design_options(wildcards):
    """make-mixtures' design flags: --design random, or spanning with the indicators it spreads."""
    mix = config["mixtures"]
    if not design.spanning(config):
        return "--design random"
    names = shlex.quote(as_json(design.design_indicators(config)))
    return (
        f"--design spanning --indicators {names} --candidates {mix['candidates']}"
        f" --max-tilt {mix['max_tilt']}"
    )


# --- analysis ---
def group_losses(wildcards):
    """Eval-loss files of one collected table."""
    return [f"results/loss/{d}.json" for d in ANALYSIS_GROUPS[wildcards.group]]


def group_indicators(wildcards):
    """Indicator rows of one collected table."""
    return [f"results/indicators/{d}.parquet" for d in ANALYSIS_GROUPS[wildcards.group]]


def validation_inputs(wildcards):
    """The rule, its table and the held-out table (none without held-out mixtures)."""
    return plan.validation_files(config)


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


def indicator_group(wildcards):
    """group: dataset_indicators jobs of one dataset kind share SLURM group jobs (see profile)."""
    return job_resources.indicator_group(wildcards.dataset)
