# Named helpers for the rules (no rules here). Planning logic lives in instructmining.plan;
# nothing here imports torch or peft, so parsing and dry runs stay fast.
import json
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(
    0, str(Path(workflow.basedir) / "src")
)  # run from a clone without installing
from instructmining import plan  # noqa: E402
from instructmining.config import check_config  # noqa: E402
from instructmining.errors import InstructMiningError  # noqa: E402

# Schema first (types, unknown keys, defaults), then what a schema cannot say (cross-references,
# sizes the sources cannot hold, indicator names, files, LoRA modules): both stop the run before
# any job starts. The message names the key, e.g. 'bins.kk'; no traceback for a bad config.
try:
    check_config(config, base=Path(workflow.basedir))
except InstructMiningError as exc:
    sys.exit(f"instructmining: bad config: {exc}")
validate(
    config, "../schemas/config.schema.yaml"
)  # the conventional check; fills the same defaults

MIXTURES = plan.mixture_names(config)
REPEATS = plan.repeat_names(config)
BINS = plan.bin_names(config)
SELECTIONS = plan.selection_names(config)
DATASETS = plan.all_datasets(config)


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


def model_stamp(spec):
    """A pip-package model's installed version (params: an upgrade reruns its jobs; cheap, no hashing)."""
    from instructmining.fingerprint import spec_stamp

    return spec_stamp(spec)


def workflow_model_dir(spec):
    """The folder of a model the workflow builds itself (under results/), else [] (hub/package)."""
    path = (spec or {}).get("path")
    return [path] if path and path.startswith("results/") else []


def get_final_output():
    """Targets of `snakemake` (the all rule) - every dataset's indicators and loss, the analysis."""
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


# --- analysis ---
# Which datasets each collected table holds (results/analysis/{group}.tsv).
# table.tsv also holds the mix-NNN-rep<s> rows: fit_rule fits on the mixtures and uses the reps to
# report seed noise (how much the loss moves when only the finetune seed changes).
ANALYSIS_GROUPS = {
    "table": MIXTURES + REPEATS,
    "bins": BINS,
    "selection_runs": SELECTIONS,
}


def collect_losses(wildcards):
    """Eval-loss files of one collected table."""
    return expand(
        "results/loss/{dataset}.json", dataset=ANALYSIS_GROUPS[wildcards.group]
    )


def collect_indicators(wildcards):
    """Indicator rows of one collected table."""
    return expand(
        "results/indicators/{dataset}.parquet", dataset=ANALYSIS_GROUPS[wildcards.group]
    )


def rule_candidates():
    """Regressors offered to the stepwise fit: analysis.candidates, else every indicator."""
    return config["analysis"].get("candidates") or config["indicators"]["names"]


def rule_models():
    """--models for fit_rule: the scorers behind the indicators, recorded in rule.json."""
    ind = config["indicators"]
    models = {
        "base": config["base_model"]["model"],
        "reward": ind.get("reward_model"),
        "embedding": ind.get("embedding_model"),
        "unieval": ind.get("unieval_model"),
    }
    return as_json({k: v for k, v in models.items() if v})


def rule_options():
    """--options for fit_rule: the scorers' truncation lengths, recorded in rule.json."""
    ind = config["indicators"]
    return as_json(
        {
            "max_length": ind["max_length"],
            "knn_model_max_length": ind["knn_model_max_length"],
        }
    )


def selection_rule_indicators():
    """Indicators the selection may use - the fitted rule's candidates (its choice is known
    only after fit_rule runs) or a shipped rule's own list."""
    from instructmining.selection import load_rule

    name = config["selection"]["rule"]
    return rule_candidates() if name == "fitted" else load_rule(name)["indicators"]


def _is_knn(name):
    """KNN-i is set-level: computed within the unseen pool from embeddings, not a score file."""
    return name.startswith("knn") and name[3:].isdigit()


def pool_embeddings():
    """The pool's sentence embeddings (+ .ids.parquet beside them), written by the indicators stage."""
    return "results/embeddings/pool.npy"


def rule_inputs():
    """What ranking the unseen pool by the selection reads - pool, rule, scores, embeddings."""
    names = selection_rule_indicators()
    inputs = {"pool": "results/pool/pool.parquet"}
    if config["selection"]["rule"] == "fitted":
        inputs["rule"] = "results/analysis/rule.json"
    inputs["scores"] = [f"results/scores/{n}.parquet" for n in names if not _is_knn(n)]
    if any(_is_knn(n) for n in names):
        inputs["embeddings"] = pool_embeddings()
    return inputs


def selection_inputs(wildcards):
    """Pool, and for rule subsets the rule, per-sample scores and pool embeddings it needs."""
    return (
        rule_inputs()
        if wildcards.method == "rule"
        else {"pool": "results/pool/pool.parquet"}
    )


def search_inputs(wildcards):
    """The size search: the rule's inputs, D_eval, and the base model when the workflow builds it."""
    inputs = {**rule_inputs(), "eval": "results/eval/eval.parquet"}
    if config["base_model"]["source"] != "hub":
        inputs["base"] = config["base_model"]["model"]["path"]
    return inputs


def search_flags():
    """--n-min/--n-max/--budget/--seed of the size search (selection.search; seed: the first of
    selection.random_seeds, so a trial at a configured n reproduces that sel-rule dataset's finetune).
    """
    search = config["selection"].get("search", {})
    flags = f"--n-min {search.get('n_min', 100)} --budget {search.get('budget', 8)}"
    flags += f" --algorithm {search.get('algorithm', 'blendsearch')}"
    flags += f" --seed {(config['selection']['random_seeds'] or [1])[0]}"
    if search.get("n_max"):
        flags += f" --n-max {search['n_max']}"
    return flags


def selection_rule_flag(wildcards):
    """--rule for rule subsets (rule.json or a shipped name); random subsets need none."""
    if getattr(wildcards, "method", "rule") != "rule":
        return ""
    name = config["selection"]["rule"]
    return f"--rule {'results/analysis/rule.json' if name == 'fitted' else name}"


def selection_sources_flag():
    """--sources: the unseen sources to select from (default: every unseen source)."""
    sources = config["selection"].get("pool")
    return f"--sources {' '.join(sources)}" if sources else ""


def selection_embeddings_flag(wildcards):
    """--embeddings for rule subsets whose rule may use KNN-i."""
    if getattr(wildcards, "method", "rule") == "rule" and any(
        _is_knn(n) for n in selection_rule_indicators()
    ):
        return f"--embeddings {pool_embeddings()}"
    return ""


def analysis_targets():
    """Files `rule all` requests from analysis.smk."""
    targets = expand(
        "results/analysis/{name}",
        name=["rule.json", "coefficients.tsv", "stepwise.tsv", "fit.png"],
    )
    if BINS:
        targets += [
            "results/analysis/univariate.tsv",
            "results/analysis/univariate.png",
        ]
    return targets


def selection_targets():
    """Files `rule all` requests from select.smk (the size search only when enabled)."""
    targets = (
        ["results/analysis/selection.tsv", "results/analysis/selection.png"]
        if SELECTIONS
        else []
    )
    if config["selection"].get("search", {}).get("enabled"):
        targets.append("results/analysis/size_search.json")
    return targets


# --- finetune ---
def base_model_dir():
    """The folder prepare_base_model writes (base_model.model.path; source pretrain or gguf)."""
    path = config["base_model"]["model"].get("path")
    if not path:
        raise ValueError(
            "config key 'base_model.model.path': needed when base_model.source is not hub"
        )
    return path


def finetune_inputs(wildcards):
    """The dataset, plus the base model folder when the workflow builds it (not for hub models)."""
    inputs = {"data": f"results/datasets/{wildcards.dataset}.parquet"}
    if config["base_model"]["source"] != "hub":
        inputs["base"] = base_model_dir()
    return inputs


def base_model_config(wildcards):
    """--base-model: the whole base_model: block as JSON."""
    return as_json(config["base_model"])


def base_model_stamp(wildcards):
    """The base model's package version (see model_stamp); finetunes rerun when it changes."""
    return model_stamp(config["base_model"]["model"])


def base_model_spec(wildcards):
    """--model: the base model's location (schema definitions.model) as JSON."""
    return as_json(config["base_model"]["model"])


def finetune_config(wildcards):
    """--config for finetune: the finetune: block (instructmining.finetune.FinetuneConfig)."""
    return as_json(config["finetune"])


def eval_loss_config(wildcards):
    """--config for eval-loss: the eval_loss: block."""
    return as_json(config["eval_loss"])


# --- indicators ---
def _indicator_info(name):
    """Registry metadata (stdlib-only import: the indicator modules load torch lazily)."""
    from instructmining.indicators.registry import info

    return info(name)


def sample_indicators():
    """Configured indicators with per-sample score files (knn<i> is set-level)."""
    return [
        n for n in config["indicators"]["names"] if _indicator_info(n).level == "sample"
    ]


def indicator_model_spec(role):
    """The model spec of a role: base (base_model.model), reward, embedding, unieval."""
    ind = config["indicators"]
    if role == "base":
        return config["base_model"]["model"]
    if role == "reward" and ind.get("reward_training", {}).get("enabled"):
        return {"path": reward_model_dir(), "kind": "reward"}
    spec = ind.get(f"{role}_model")
    if not spec:
        raise ValueError(
            f"config key 'indicators.{role}_model': needed by {config['indicators']['names']}"
        )
    return spec


def reward_model_dir():
    """Where train_reward_model writes (indicators.reward_model.path, default results/models/reward)."""
    return (config["indicators"].get("reward_model") or {}).get(
        "path"
    ) or "results/models/reward"


def scorer_regex(neural):
    """Wildcard regex of the indicators whose scorer runs a neural model (the sharded ones), or of
    all the others: score_pool and score_pool_model split the score files between them.
    """
    from instructmining.indicators.registry import all_infos

    names = "|".join(i.name for i in all_infos() if i.sharded)
    # "not one of names": a lookahead that ends where the name ends (the wildcard sits mid-path)
    return f"(?:{names})" if neural else f"(?!(?:{names})(?![a-z0-9_]))[a-z0-9_]+"


def num_shards(indicator):
    """Score jobs per indicator: indicators.shards for batched model scorers, else 1."""
    return config["indicators"]["shards"] if _indicator_info(indicator).sharded else 1


def score_shards(wildcards):
    """The shard files merge_scores joins."""
    n = num_shards(wildcards.indicator)
    return [
        f"results/scores/shards/{wildcards.indicator}/{i}-of-{n}.parquet"
        for i in range(n)
    ]


def score_inputs(wildcards):
    """The pool, plus the scorer's model folder when the workflow builds it (knn<i>: the pool
    embeddings, for binning the pool by KNN-i)."""
    info = _indicator_info(wildcards.indicator)
    if info.level == "set":
        return {
            "pool": "results/pool/pool.parquet",
            "embeddings": pool_embeddings(),
            "embedding_ids": "results/embeddings/pool.ids.parquet",
        }
    role = info.model
    return {
        "pool": "results/pool/pool.parquet",
        "model": workflow_model_dir(indicator_model_spec(role)) if role else [],
    }


def score_embedding_flag(wildcards, input):
    """--embeddings for knn<i> score files (set-level indicators score from the pool embeddings)."""
    return (
        f"--embeddings {input.embeddings}"
        if _indicator_info(wildcards.indicator).level == "set"
        else ""
    )


def score_model_json(wildcards):
    """--model: the scorer's model spec as JSON (null for model-free and set-level indicators)."""
    info = _indicator_info(wildcards.indicator)
    role = info.model if info.level == "sample" else None
    return as_json(indicator_model_spec(role) if role else None)


def score_model_stamp(wildcards):
    """The scorer model's package version (see model_stamp)."""
    info = _indicator_info(wildcards.indicator)
    return model_stamp(indicator_model_spec(info.model)) if info.model else ""


def score_model_role(wildcards):
    """--model-role: which configured model --model is."""
    return _indicator_info(wildcards.indicator).model or "base"


def indicator_version(wildcards):
    """--expect-version: a version bump changes this param, so exactly its jobs rerun."""
    return _indicator_info(wildcards.indicator).version


def uses_knn():
    """Whether any configured indicator is knn<i> (needs the pool embeddings)."""
    return any(_indicator_info(n).level == "set" for n in config["indicators"]["names"])


def dataset_indicator_inputs(wildcards):
    """A dataset's rows, the score files of its sample-level indicators, the pool embeddings."""
    inputs = {
        "dataset": f"results/datasets/{wildcards.dataset}.parquet",
        "scores": [f"results/scores/{n}.parquet" for n in sample_indicators()],
    }
    if uses_knn():
        inputs["embeddings"] = pool_embeddings()
        inputs["embedding_ids"] = "results/embeddings/pool.ids.parquet"
    return inputs


def embedding_flags(wildcards, input):
    """--embeddings/--embedding-ids when a knn<i> indicator is configured."""
    if not uses_knn():
        return ""
    return f"--embeddings {input.embeddings} --embedding-ids {input.embedding_ids}"


def reward_training_inputs(wildcards):
    """The AlpacaEval outputs files the demo reward model trains on (tie groups flattened)."""
    files = []
    for entry in config["indicators"]["reward_training"]["outputs"]:
        files += [entry] if isinstance(entry, str) else list(entry)
    return [data_path(f) for f in files]


# --- fetch ---
def fetch_items():
    """Every hub model/dataset of the (merged) config, as the JSON `instructmining fetch --items`
    takes (planning is stdlib-only: instructmining.fetch.plan_fetch)."""
    from instructmining.fetch import plan_fetch

    return as_json([item.__dict__ for item in plan_fetch(config)])
