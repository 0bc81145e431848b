"""Planning: which datasets exist for a config. Standard library only, because the Snakefile
calls it at parse time (dry runs of the paper config must stay fast)."""

from __future__ import annotations

import re
from typing import Any

MIX_RE = re.compile(r"^mix-(\d{3})$")
REP_RE = re.compile(r"^mix-(\d{3})-rep(\d+)$")
BIN_RE = re.compile(r"^uni-([a-z0-9_]+)-(\d+)$")
SEL_RE = re.compile(r"^sel-(rule|random)-(\d+)-(\d+)$")


def mixture_names(config: dict[str, Any]) -> list[str]:
    """mix-000 … mix-(n-1): the datasets the rule is fitted on."""
    return [f"mix-{i:03d}" for i in range(config.get("mixtures", {}).get("n", 78))]


def repeat_names(config: dict[str, Any]) -> list[str]:
    """mix-000-rep<s>: mix-000 finetuned with seed offset s, to measure seed noise."""
    mixtures = mixture_names(config)
    if not mixtures:
        return []
    return [f"{mixtures[0]}-rep{s}" for s in config.get("mixtures", {}).get("repeats", [1])]


def bin_names(config: dict[str, Any], indicator: str | None = None) -> list[str]:
    """uni-<indicator>-<k> for every binned indicator (k = 0 holds the lowest values)."""
    bins = config.get("bins", {})
    names = [indicator] if indicator else bins.get("indicators", [])
    return [f"uni-{ind}-{k}" for ind in names for k in range(bins.get("k", 8))]


def selection_names(config: dict[str, Any], method: str | None = None) -> list[str]:
    """sel-<rule|random>-<n>-<seed>: rule-selected and random subsets of the unseen pool."""
    sel = config.get("selection", {})
    methods = [method] if method else ["rule", "random"]
    return [
        f"sel-{m}-{n}-{seed}"
        for m in methods
        for n in sel.get("n", [])
        for seed in sel.get("random_seeds", [1, 2, 3])
    ]


def all_datasets(config: dict[str, Any]) -> list[str]:
    """Every dataset of the experiment, in data-flow order."""
    return mixture_names(config) + repeat_names(config) + bin_names(config) + selection_names(config)


def dataset_kind(name: str) -> str:
    """mixture | rep | bin | selection (raises on an unknown name)."""
    for kind, rx in (("mixture", MIX_RE), ("rep", REP_RE), ("bin", BIN_RE), ("selection", SEL_RE)):
        if rx.match(name):
            return kind
    raise ValueError(f"not a dataset name: {name!r}")


def finetune_seed(name: str, base_seed: int) -> int:
    """The training seed of a dataset: base seed, + s for mix-NNN-rep<s>, + seed for selections."""
    if m := REP_RE.match(name):
        return base_seed + int(m.group(2))
    if m := SEL_RE.match(name):
        return base_seed + int(m.group(3))
    return base_seed


def repeat_source(name: str) -> str | None:
    """The mixture a rep dataset repeats (None if not a rep)."""
    m = REP_RE.match(name)
    return f"mix-{m.group(1)}" if m else None
