"""Planning for the workflow: which datasets a config makes, which files `rule all` asks for, which
local data files a stage reads, and what the selection stage reads. common.smk reads these tables;
they are unit-tested here instead of through dry runs. Standard library only, because the Snakefile
calls it at parse time (dry runs of the paper config must stay fast)."""

from __future__ import annotations

from typing import Any

from . import dataset_names
from .dataset_names import finetune_seed  # noqa: F401  (finetune imports it from here)
from .records import local_path
from .score_plan import EMBEDDING_IDS, EMBEDDINGS, POOL, model_spec, score_file, set_level, uses_embeddings

EVAL = "results/eval/eval.parquet"
EVAL_ALL = "results/eval/eval_all.parquet"
QUALITY_RULE = "results/analysis/rule.json"
VALIDITY = "results/analysis/indicator_validity.tsv"


def mixture_names(config: dict[str, Any]) -> list[str]:
    """mix-000 … mix-(n-1): the datasets the quality rule is fitted on."""
    return [dataset_names.mixture(i) for i in range(config.get("mixtures", {}).get("n", 78))]


def repeat_names(config: dict[str, Any]) -> list[str]:
    """mix-000-rep<s>: mix-000 finetuned with seed offset s, to measure seed noise."""
    mixtures = mixture_names(config)
    if not mixtures:
        return []
    return [dataset_names.repeat(mixtures[0], s) for s in config.get("mixtures", {}).get("repeats", [1])]


def heldout_names(config: dict[str, Any]) -> list[str]:
    """held-000 … : held-out random mixtures (validation.py); never in table.tsv, so never fitted on."""
    return [dataset_names.heldout(i) for i in range(config.get("mixtures", {}).get("heldout", 0))]


def bin_names(config: dict[str, Any], indicator: str | None = None) -> list[str]:
    """uni-<indicator>-<k> for every binned indicator (k = 0 holds the lowest values)."""
    bins = config.get("bins", {})
    names = [indicator] if indicator else bins.get("indicators", [])
    return [dataset_names.bin_name(ind, k) for ind in names for k in range(bins.get("k", 8))]


def selection_names(config: dict[str, Any], method: str | None = None) -> list[str]:
    """sel-<rule|random>-<n>-<seed>: rule-selected and random subsets of the unseen pool."""
    sel = config.get("selection", {})
    methods = [method] if method else ["rule", "random"]
    return [dataset_names.selection(m, n, seed) for m in methods for n in sel.get("n", [])
            for seed in sel.get("random_seeds", [1, 2, 3])]


def all_datasets(config: dict[str, Any]) -> list[str]:
    """Every dataset of the experiment, in data-flow order."""
    return (mixture_names(config) + repeat_names(config) + heldout_names(config) + bin_names(config)
            + selection_names(config))


def analysis_groups(config: dict[str, Any]) -> dict[str, list[str]]:
    """The datasets of each collected table results/analysis/{group}.tsv. table.tsv also holds the
    mix-NNN-rep<s> rows: fit_rule fits on the mixtures and uses the reps for seed noise. The held-out
    mixtures have a table of their own (heldout.tsv), which only validate_rule reads."""
    return {"table": mixture_names(config) + repeat_names(config), "heldout": heldout_names(config),
            "bins": bin_names(config), "selection_runs": selection_names(config)}


def targets(config: dict[str, Any]) -> list[str]:
    """What `rule all` asks for: every dataset's indicators and loss, the manifest, the analysis."""
    datasets = all_datasets(config)
    out = ["results/datasets/manifest.tsv"]
    out += [f"results/indicators/{d}.parquet" for d in datasets]
    out += [f"results/loss/{d}.json" for d in datasets]
    out += [f"results/analysis/{n}" for n in ("rule.json", "coefficients.tsv", "stepwise.tsv", "fit.png",
                                               "validation.json")]
    if validity_outputs(config):
        out.append(VALIDITY)
    if bin_names(config):
        out += ["results/analysis/univariate.tsv", "results/analysis/univariate.png"]
    if selection_names(config):
        out += ["results/analysis/selection.tsv", "results/analysis/selection.png",
                "results/analysis/selection_study.json"]
    if config["selection"].get("search", {}).get("enabled"):
        out.append("results/analysis/size_search.json")
    return out


def validation_files(config: dict[str, Any]) -> dict[str, Any]:
    """Inputs of validate_rule: the fitted rule, the table it was fitted on, and the held-out
    mixtures' table (none when mixtures.heldout is 0)."""
    return {"rule": QUALITY_RULE, "table": "results/analysis/table.tsv",
            "heldout": ["results/analysis/heldout.tsv"] if heldout_names(config) else []}


# --- local data files (relative to data_root unless absolute) ---
def _local(config: dict[str, Any], rel: str) -> str:
    return str(local_path(rel, config.get("data_root")))


def pool_files(config: dict[str, Any]) -> list[str]:
    """Local files the pool reads (hub sources have none: the datasets library caches them;
    package sources live in site-packages)."""
    return sorted({_local(config, s["path"]) for s in config["pool"]["sources"]
                   if s.get("path") and not s.get("package") and not s.get("hub")})


def eval_files(config: dict[str, Any]) -> list[str]:
    """Local files of D_eval (instruction sets, their answers, reference outputs)."""
    items = config["eval"]["sets"] + config["eval"].get("references", [])
    return sorted({_local(config, item[key]) for item in items for key in ("path", "answers")
                   if item.get(key) and not item.get("hub")})


def _flat(outputs: list[Any]) -> list[str]:
    files: list[str] = []
    for entry in outputs:
        files += [entry] if isinstance(entry, str) else list(entry)
    return files


def reward_training_files(config: dict[str, Any]) -> list[str]:
    """The AlpacaEval outputs files the demo reward model trains on (tie groups flattened)."""
    return [_local(config, f) for f in _flat(config["indicators"]["reward_training"]["outputs"])]


# --- indicator validity (instructmining.validity) ---
def validity_outputs(config: dict[str, Any]) -> list[Any]:
    """The answer-set ladder the indicators are validated on, best first: validity.outputs, else
    the reward-training ladder (one ladder, one place); [] when neither is configured."""
    return (config.get("validity") or {}).get("outputs") or config["indicators"].get("reward_training", {}).get(
        "outputs") or []


def validity_split(config: dict[str, Any]) -> dict[str, Any] | None:
    """The reward model's training split ({heldout, seed}, as train_reward_model gets it) when the
    workflow trains it: validity then uses its held-out prompts only. None: no trained reward model."""
    training = config["indicators"].get("reward_training") or {}
    if not training.get("enabled"):
        return None
    return {"heldout": training.get("heldout", 0.2), "seed": config["seed"]}


def validity_models(config: dict[str, Any]) -> dict[str, Any]:
    """{role: model spec} of the configured indicators' scorers: the specs the pool scores use
    (score_plan.model_spec), so validity judges the same models."""
    from .indicators import registry

    roles = {registry.info(n).model for n in config["indicators"]["names"]} - {None}
    return {role: model_spec(config, role) for role in sorted(roles)}


def validity_options(config: dict[str, Any]) -> dict[str, int]:
    """The scorers' batch and truncation options, as the pool scores and rule.json use them."""
    from .score_plan import quality_rule_options

    return {**quality_rule_options(config), "batch_size": config["indicators"]["batch_size"]}


def validity_files(config: dict[str, Any]) -> dict[str, list[str] | str]:
    """Inputs of validate_indicators: pool and every eval instruction (both excluded), the ladder
    files, and the scorer model folders the workflow builds."""
    from .score_plan import workflow_model_dirs

    dirs = sorted({d for spec in validity_models(config).values() for d in workflow_model_dirs(spec)})
    contrasts = [c[side] for c in (config.get("validity") or {}).get("contrasts") or [] for side in ("better", "worse")]
    return {"pool": POOL, "eval_all": EVAL_ALL, "outputs": [_local(config, f) for f in _flat(validity_outputs(config))],
            "contrasts": [_local(config, f) for f in contrasts], "models": dirs}


def fit_rule_files(config: dict[str, Any]) -> dict[str, list[str] | str]:
    """fit_rule's inputs: the mixture table, and the validity table when
    analysis.require_valid_indicators is on (its chance and inverted scorers leave the candidates)."""
    required = (config.get("analysis") or {}).get("require_valid_indicators", True)
    return {"table": "results/analysis/table.tsv", "validity": [VALIDITY] if required else []}


# --- the quality rule and the selection ---
def quality_rule_candidates(config: dict[str, Any]) -> list[str]:
    """Regressors offered to the stepwise fit: analysis.candidates, else every indicator."""
    return config["analysis"].get("candidates") or config["indicators"]["names"]


def quality_rule(config: dict[str, Any]) -> str:
    """--rule of the selection: the fitted rule's file, or a shipped rule's name."""
    name = config["selection"]["rule"]
    return QUALITY_RULE if name == "fitted" else name


def selection_indicators(config: dict[str, Any]) -> list[str]:
    """Indicators the selection may use: the fitted rule's candidates (its choice is known only
    after it is fitted) or a shipped rule's own list."""
    from .selection import load_rule

    name = config["selection"]["rule"]
    return quality_rule_candidates(config) if name == "fitted" else load_rule(name)["indicators"]


def ranking_files(config: dict[str, Any]) -> dict[str, Any]:
    """What ranking the unseen pool by the quality rule reads: pool, rule file (when fitted),
    per-sample score files, and the pool embeddings when a set-level indicator is used."""
    names = selection_indicators(config)
    files: dict[str, Any] = {"pool": POOL}
    if config["selection"]["rule"] == "fitted":
        files["rule"] = QUALITY_RULE
    files["scores"] = [score_file(n) for n in names if not set_level(n)]
    files["embeddings"], files["embedding_ids"] = ([EMBEDDINGS], [EMBEDDING_IDS]) if uses_embeddings(names) else ([], [])
    return files


def selection_files(config: dict[str, Any], method: str) -> dict[str, Any]:
    """Inputs of one select_dataset job: the ranking files for rule subsets, the pool for random."""
    return ranking_files(config) if method == "rule" else {"pool": POOL, "scores": [], "embeddings": [],
                                                             "embedding_ids": []}


def search_files(config: dict[str, Any]) -> dict[str, Any]:
    """The size search: the ranking files, D_eval, and the base model when the workflow builds it."""
    files = {**ranking_files(config), "eval": EVAL}
    if config["base_model"]["source"] != "hub":
        files["base"] = base_model_dir(config)
    return files


def search_settings(config: dict[str, Any]) -> dict[str, Any]:
    """n_min, n_max ('none': the unseen pool size), budget, algorithm and seed of the size search.
    seed: the first of selection.random_seeds, so a trial at a configured n reproduces that
    sel-rule dataset's finetune."""
    search = config["selection"].get("search", {})
    return {"n_min": search.get("n_min", 100), "n_max": search.get("n_max") or "none",
            "budget": search.get("budget", 8), "algorithm": search.get("algorithm", "blendsearch"),
            "seed": (config["selection"]["random_seeds"] or [1])[0]}


# --- the base model ---
def base_model_dir(config: dict[str, Any]) -> str:
    """The folder prepare_base_model writes (base_model.model.path; source pretrain or gguf)."""
    path = config["base_model"]["model"].get("path")
    if not path:
        raise ValueError("config key 'base_model.model.path': needed when base_model.source is not hub")
    return path


def finetune_files(config: dict[str, Any], dataset: str) -> dict[str, str]:
    """A finetune job's dataset, plus the base model folder when the workflow builds it."""
    files = {"data": f"results/datasets/{dataset}.parquet"}
    if config["base_model"]["source"] != "hub":
        files["base"] = base_model_dir(config)
    return files

