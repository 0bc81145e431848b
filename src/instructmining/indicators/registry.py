"""The indicator registry: names -> classes, with metadata, and no heavy imports.

`LAZY` maps each registry name to "module:Class". Looking a name up imports only that module;
the module's `@register(...)` decorator records the class and its metadata. Indicator modules
import torch/transformers inside functions only, so `instructmining ls indicators` (which imports
every indicator module to read its metadata) never imports torch.

`knn<i>` is a family: any `knn` followed by a positive integer resolves to the KNN class with
that `i` (the paper's rule uses knn6)."""

from __future__ import annotations

import difflib
import importlib
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InstructMiningError

LAZY: dict[str, str] = {
    "input_length": "instructmining.indicators.lengths:InputLength",
    "output_length": "instructmining.indicators.lengths:OutputLength",
    "reward": "instructmining.indicators.reward:Reward",
    "perplexity": "instructmining.indicators.perplexity:Perplexity",
    "mtld": "instructmining.indicators.mtld:MTLD",
    "knn<i>": "instructmining.indicators.knn:KNN",
    "unieval_naturalness": "instructmining.indicators.unieval:UniEvalNaturalness",
    "unieval_coherence": "instructmining.indicators.unieval:UniEvalCoherence",
    "unieval_understandability": "instructmining.indicators.unieval:UniEvalUnderstandability",
}

KNN_RE = re.compile(r"^knn([1-9][0-9]*)$")
LEVELS = ("sample", "set")
MODELS = (None, "base", "reward", "embedding", "unieval", "perplexity")
# A role without its own model falls back to another (perplexity: the base model).
FALLBACK_ROLES = {"perplexity": "base"}


class UnknownIndicatorError(InstructMiningError):
    """An indicator name that is not in the registry (message: did-you-mean + the list)."""


class DuplicateIndicatorError(InstructMiningError):
    """Two classes registered under one name."""


@dataclass(frozen=True)
class IndicatorInfo:
    """Registry metadata of one indicator.

    name: registry name (`knn<i>` for the KNN family); version: bump it when scores change (it is
    part of the cache key, so a bump re-scores exactly this indicator); level: "sample" (one score
    per sample, cached over the pool, dataset value = mean) or "set" (computed within a dataset);
    sign: expected sign of the correlation with eval loss (-1: higher is better data, +1: higher is
    worse, 0: unknown); model: which configured model it needs (None, "base", "reward",
    "embedding", "unieval", "perplexity" = indicators.perplexity_model or else the base model); neural: its pool score job runs a neural model in batches (that job
    fans out over `indicators.shards` jobs and gets a GPU on SLURM); summary: one line for `ls`."""

    name: str
    version: int
    level: str
    sign: int
    model: str | None
    summary: str
    target: str
    neural: bool = False


_REGISTRY: dict[str, tuple[type, IndicatorInfo]] = {}


def register(name: str, *, version: int, level: str, sign: int, model: str | None, neural: bool = False):
    """Class decorator: add an indicator class to the registry under `name`.

    Raises DuplicateIndicatorError when another class already holds the name."""
    if level not in LEVELS:
        raise ValueError(f"indicator {name!r}: level must be one of {LEVELS}")
    if model not in MODELS:
        raise ValueError(f"indicator {name!r}: model must be one of {MODELS}")
    if sign not in (-1, 0, 1):
        raise ValueError(f"indicator {name!r}: sign must be -1, 0 or 1")

    def deco(cls: type) -> type:
        target = f"{cls.__module__}:{cls.__qualname__}"
        old = _REGISTRY.get(name)
        # Re-importing the same module (importlib.reload) re-registers the same target: allowed.
        if old is not None and old[1].target != target:
            raise DuplicateIndicatorError(
                f"indicator {name!r} is already registered by {old[1].target}; cannot register {target}"
            )
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        info = IndicatorInfo(name, version, level, sign, model, summary, target, neural)
        cls.info = info
        _REGISTRY[name] = (cls, info)
        return cls

    return deco


def family(name: str) -> str:
    """The registry key of a name: `knn6` -> `knn<i>`; other names map to themselves."""
    return "knn<i>" if KNN_RE.match(name) else name


def name_pattern(key: str) -> str:
    """A regex matching the names of a registry key (`knn<i>` -> every knn<i> name KNN_RE takes)."""
    return "knn[1-9][0-9]*" if key == "knn<i>" else re.escape(key)


def known_names() -> list[str]:
    """Every registry key (including the `knn<i>` family), sorted."""
    return sorted(set(LAZY) | set(_REGISTRY))


def _unknown(name: str) -> UnknownIndicatorError:
    choices = known_names()
    close = difflib.get_close_matches(name, [c.replace("<i>", "6") for c in choices], n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UnknownIndicatorError(
        f"unknown indicator {name!r}.{hint} Known indicators: {', '.join(choices)} "
        "(knn<i>: any i >= 1, e.g. knn6)"
    )


def lookup(name: str) -> tuple[type, IndicatorInfo]:
    """The (class, metadata) of an indicator name; imports its module on first use."""
    key = family(name)
    if key not in _REGISTRY:
        target = LAZY.get(key)
        if target is None:
            raise _unknown(name)
        importlib.import_module(target.split(":")[0])
        if key not in _REGISTRY:
            raise InstructMiningError(f"module {target} did not register indicator {key!r}")
    return _REGISTRY[key]


def info(name: str) -> IndicatorInfo:
    """Metadata of one indicator name."""
    return lookup(name)[1]


def create(name: str, **kwargs: Any) -> Any:
    """An instance of the indicator `name` (for `knn<i>`, with `i` parsed from the name)."""
    cls, _ = lookup(name)
    if m := KNN_RE.match(name):
        return cls(int(m.group(1)), **kwargs)
    return cls(**kwargs)


def validate_names(names: list[str]) -> None:
    """Raise UnknownIndicatorError (with did-you-mean and the list) for the first unknown name,
    or InstructMiningError for a duplicate name."""
    seen: set[str] = set()
    for name in names:
        lookup(name)
        if name in seen:
            raise InstructMiningError(f"indicator {name!r} is listed twice")
        seen.add(name)


def all_infos() -> list[IndicatorInfo]:
    """Metadata of every registered indicator (imports every indicator module: stdlib only)."""
    for key in LAZY:
        lookup(key.replace("<i>", "6") if key == "knn<i>" else key)
    return [_REGISTRY[k][1] for k in sorted(_REGISTRY)]
