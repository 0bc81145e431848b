"""Dataset names (the `{dataset}` wildcard): the one place they are written and read.

mix-NNN (mixture), mix-NNN-rep<s> (the mixture again with finetune seed + s), uni-<indicator>-<k>
(bin k of one indicator, k = 0 lowest), sel-<rule|random>-<n>-<seed> (a subset of the unseen pool).
Standard library only: the Snakefile imports it at parse time."""

from __future__ import annotations

import re

MIX_RE = re.compile(r"^mix-(\d{3})$")
REP_RE = re.compile(r"^mix-(\d{3})-rep(\d+)$")
BIN_RE = re.compile(r"^uni-([a-z0-9_]+)-(\d+)$")
SEL_RE = re.compile(r"^sel-(rule|random)-(\d+)-(\d+)$")
KINDS = (("mixture", MIX_RE), ("rep", REP_RE), ("bin", BIN_RE), ("selection", SEL_RE))


def mixture(i: int) -> str:
    """mix-NNN: mixture i (zero-padded so names sort in order)."""
    return f"mix-{i:03d}"


def repeat(mixture_name: str, seed_offset: int) -> str:
    """mix-NNN-rep<s>: the mixture finetuned again with seed + s."""
    return f"{mixture_name}-rep{seed_offset}"


def bin_name(indicator: str, k: int) -> str:
    """uni-<indicator>-<k>: bin k of the pool sorted by indicator (k = 0 holds the lowest values)."""
    return f"uni-{indicator}-{k}"


def selection(method: str, n: int, seed: int) -> str:
    """sel-<rule|random>-<n>-<seed>."""
    return f"sel-{method}-{n}-{seed}"


def kind(name: str) -> str:
    """mixture | rep | bin | selection (raises ValueError on an unknown name)."""
    for k, rx in KINDS:
        if rx.match(name):
            return k
    raise ValueError(f"not a dataset name: {name!r}")


def parse_selection(name: str) -> tuple[str, int, int] | None:
    """(method, n, seed) of a sel-… name, else None."""
    m = SEL_RE.match(name)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


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
    return mixture(int(m.group(1))) if m else None
