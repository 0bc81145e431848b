# Named helpers for the rules (no rules here). Planning logic lives in instructmining.plan;
# nothing here imports torch or peft, so parsing and dry runs stay fast.
import json
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # run from a clone without installing
from instructmining import plan  # noqa: E402
from instructmining.config import check_config  # noqa: E402

# Schema first (types, unknown keys, defaults), then what a schema cannot say (cross-references,
# sizes the sources cannot hold, indicator names): both stop the run before any job starts.
validate(config, "../schemas/config.schema.yaml")
check_config(config, base=Path(workflow.basedir))

MIXTURES = plan.mixture_names(config)
REPEATS = plan.repeat_names(config)
BINS = plan.bin_names(config)
SELECTIONS = plan.selection_names(config)
DATASETS = plan.all_datasets(config)


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    indicator=r"[a-z0-9_]+",
    k=r"\d+",
    n=r"\d+",
    seed=r"\d+",
    method=r"rule|random",


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


def data_path(rel):
    """A data file named in config: relative to data_root unless absolute."""
    p = Path(rel)
    return str(p if p.is_absolute() else Path(config["data_root"]) / p)


def workflow_model_dir(spec):
    """The folder of a model the workflow builds itself (under results/), else [] (hub/package)."""
    path = (spec or {}).get("path")
    return [path] if path and path.startswith("results/") else []


def get_final_output():
    """What `snakemake` (rule all) builds: every dataset's indicators and loss, the analysis."""
    targets = ["results/datasets/manifest.tsv"]
    targets += expand("results/indicators/{dataset}.parquet", dataset=DATASETS)
    targets += expand("results/loss/{dataset}.json", dataset=DATASETS)
    targets += analysis_targets() + selection_targets()
    return targets


# --- data ---
def source_inputs(wildcards):
    """Local files the pool reads (hub sources have none: datasets caches them)."""
    files = []
    for src in config["pool"]["sources"]:
        if src.get("path") and not src.get("package") and not src.get("hub"):
            files.append(data_path(src["path"]))
    return sorted(set(files))


def eval_inputs(wildcards):
    """Local files of D_eval."""
    files = []
    for item in config["eval"]["sets"] + config["eval"].get("references", []):
        for key in ("path", "answers"):
            if item.get(key) and not item.get("hub"):
                files.append(data_path(item[key]))
    return sorted(set(files))


def data_root_flag():
    return config["data_root"] or "none"
