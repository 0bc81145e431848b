"""Score jobs: for each indicator, how the pool is scored (level, which model and where it is, how
many shard jobs, version, whether the job runs a neural model). common.smk reads this table
instead of asking the registry itself. Standard library only (registry metadata imports no torch)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .indicators import registry

POOL = "results/pool/pool.parquet"
EMBEDDINGS = "results/embeddings/pool.npy"
EMBEDDING_IDS = "results/embeddings/pool.ids.parquet"
DEFAULT_REWARD_DIR = "results/models/reward"


@dataclass(frozen=True)
class ScoreJob:
    """How one indicator's pool score file is made.

    level: "sample" (a model-free or model scorer per sample) or "set" (from the pool embeddings);
    role: the configured model the indicator needs (base, reward, embedding, unieval; None: none);
    spec: that model's spec when the score job loads it (None for model-free and set-level);
    model_dirs: the model folder when the workflow builds it ([] for hub and package models);
    shards: score jobs over the pool; version: the registry version (a bump reruns the job);
    neural: the score job runs a neural model (rule score_pool_model, which gets a GPU on SLURM)."""

    indicator: str
    level: str
    role: str | None
    spec: dict[str, Any] | None
    model_dirs: list[str]
    shards: int
    version: int
    neural: bool

    @property
    def rule(self) -> str:
        """The Snakemake rule that writes the shard files."""
        return score_rule(self.level, self.neural)

    def shard_files(self) -> list[str]:
        """The shard files merge_scores joins."""
        return [f"results/scores/shards/{self.indicator}/{i}-of-{self.shards}.parquet" for i in range(self.shards)]


def score_file(indicator: str) -> str:
    """The merged per-sample score file of an indicator over the pool."""
    return f"results/scores/{indicator}.parquet"


def set_level(indicator: str) -> bool:
    """Whether an indicator is computed within a set from the pool embeddings (e.g. knn<i>)."""
    return registry.info(indicator).level == "set"


def uses_embeddings(names: list[str]) -> bool:
    """Whether any of the indicators is set-level (so the pool embeddings are needed)."""
    return any(set_level(n) for n in names)


def sample_indicators(names: list[str]) -> list[str]:
    """The names that have per-sample score files."""
    return [n for n in names if not set_level(n)]


def reward_model_dir(config: dict[str, Any]) -> str:
    """Where train_reward_model writes (indicators.reward_model.path, default results/models/reward)."""
    return (config["indicators"].get("reward_model") or {}).get("path") or DEFAULT_REWARD_DIR


def model_spec(config: dict[str, Any], role: str) -> dict[str, Any]:
    """The model spec of a role: base (base_model.model), reward (the trained one when
    reward_training is enabled), embedding, unieval, perplexity (indicators.perplexity_model, else
    the base model)."""
    ind = config["indicators"]
    if role == "base" or (role == "perplexity" and not ind.get("perplexity_model")):
        return config["base_model"]["model"]
    if role == "reward" and ind.get("reward_training", {}).get("enabled"):
        return {"path": reward_model_dir(config), "kind": "reward"}
    spec = ind.get(f"{role}_model")
    if not spec:
        raise ValueError(f"config key 'indicators.{role}_model': needed by {ind['names']}")
    return spec


def workflow_model_dirs(spec: dict[str, Any] | None) -> list[str]:
    """The folder of a model the workflow builds itself (under results/), else [] (hub/package)."""
    path = (spec or {}).get("path")
    return [path] if path and path.startswith("results/") else []


def finetune_view(config: dict[str, Any]) -> dict[str, Any] | None:
    """{max_length, template}: what the finetune keeps of each sample, when indicators are scored
    on it (indicators.truncate_to_finetune); None: scorers see the full text (the paper)."""
    if not config["indicators"].get("truncate_to_finetune"):
        return None
    ft = config["finetune"]
    return {"max_length": ft["max_length"], "template": ft.get("prompt_template", "alpaca")}


def score_view(config: dict[str, Any]) -> dict[str, Any] | None:
    """--finetune-view of a sample-level score job: finetune_view plus the finetune's tokenizer."""
    view = finetune_view(config)
    return None if view is None else {**view, "tokenizer": model_spec(config, "base")}


MODEL_ROLES = ("reward", "embedding", "unieval", "perplexity")  # indicators.<role>_model
GGUF_DIR = "results/models/"
GGUF_DIR_RE = r"results/models/[A-Za-z0-9_.-]+"


def gguf_models(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{path: spec} of the indicator models the workflow converts from a packaged GGUF (rule
    convert_model): specs with `gguf_file`, whose `path` must be results/models/<name>."""
    found: dict[str, dict[str, Any]] = {}
    for role in MODEL_ROLES:
        spec = config["indicators"].get(f"{role}_model") or {}
        if spec.get("gguf_file"):
            path = spec.get("path") or ""
            if not re.fullmatch(GGUF_DIR_RE, path) or not spec.get("package"):
                raise ValueError(f"config key 'indicators.{role}_model': a gguf_file needs `package` and a "
                                 f"`path` results/models/<name> to convert it into, got {spec}")
            if found.get(path, spec) != spec:
                raise ValueError(f"config key 'indicators.{role}_model': {path} is also another GGUF model's path")
            found[path] = spec
    return found


def gguf_model_pattern(config: dict[str, Any]) -> str:
    """Wildcard regex matching exactly the <name>s of gguf_models' results/models/<name> folders
    (rule convert_model's output)."""
    return "|".join(re.escape(p.removeprefix(GGUF_DIR)) for p in gguf_models(config))


def score_job(config: dict[str, Any], indicator: str) -> ScoreJob:
    """The score job of one indicator name (any registry name, configured or not)."""
    info = registry.info(indicator)
    spec = model_spec(config, info.model) if info.model and info.level == "sample" else None
    dirs = workflow_model_dirs(spec)
    if info.level == "sample" and finetune_view(config):  # the view reads the base tokenizer
        dirs = list(dict.fromkeys(dirs + workflow_model_dirs(model_spec(config, "base"))))
    return ScoreJob(indicator=indicator, level=info.level, role=info.model, spec=spec,
                    model_dirs=dirs, version=info.version, neural=info.neural,
                    shards=config["indicators"]["shards"] if info.neural else 1)


def score_jobs(config: dict[str, Any]) -> dict[str, ScoreJob]:
    """The score jobs of every configured indicator (indicators.names and bins.indicators)."""
    names = dict.fromkeys(config["indicators"]["names"] + config.get("bins", {}).get("indicators", []))
    return {n: score_job(config, n) for n in names}


def score_rule(level: str, neural: bool) -> str:
    """score_pool_set: set-level indicators, from the pool embeddings; score_pool_model: scorers
    that run a neural model (a GPU on SLURM); score_pool: the model-free rest."""
    return "score_pool_set" if level == "set" else "score_pool_model" if neural else "score_pool"


def scorer_pattern(rule: str) -> str:
    """Wildcard regex of the indicator names whose score files `rule` writes (any registry name,
    configured or not: the three score rules split the names between them)."""
    return "|".join(registry.name_pattern(i.name) for i in registry.all_infos()
                    if score_rule(i.level, i.neural) == rule)


def quality_rule_models(config: dict[str, Any]) -> dict[str, Any]:
    """The scorers behind the indicators, recorded in rule.json so `instructmining select` reuses them."""
    ind = config["indicators"]
    models = {"base": config["base_model"]["model"], "reward": ind.get("reward_model"),
              "embedding": ind.get("embedding_model"), "unieval": ind.get("unieval_model"),
              "perplexity": ind.get("perplexity_model")}
    return {k: v for k, v in models.items() if v}


def quality_rule_options(config: dict[str, Any]) -> dict[str, Any]:
    """The scorers' truncation lengths (and the finetune view when indicators are scored on it),
    recorded in rule.json so `instructmining select` scores new data the same way."""
    ind = config["indicators"]
    out: dict[str, Any] = {"max_length": ind["max_length"], "knn_model_max_length": ind["knn_model_max_length"]}
    if finetune_view(config):
        out["finetune_view"] = finetune_view(config)
    return out
