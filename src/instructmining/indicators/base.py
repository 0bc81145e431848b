"""Shared pieces of every indicator: the scorer interface, prompt text, length-sorted batching.

A sample-level indicator takes a DataFrame with columns id, instruction, input, output and
returns one float per row. It never returns a placeholder: a row it cannot score raises
ScorerError naming the sample id."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import ScorerError
from .registry import IndicatorInfo

LOG = logging.getLogger("instructmining.indicators")

# Scorer defaults (the schema's indicators.batch_size / max_length defaults repeat them for configs).
BATCH_SIZE = 8
MAX_LENGTH = 512

# Bump when the cache layout or the identity fields change: every cache key changes with it.
CACHE_VERSION = 1


def prompt_text(instruction: str, input_: str | None) -> str:
    """The instruction as the model sees it: instruction, then the optional input after a blank line."""
    if input_:
        return f"{instruction}\n\n{input_}"
    return instruction


def check_columns(df: Any, columns: Sequence[str] = ("id", "instruction", "input", "output")) -> None:
    """Raise ScorerError when a frame lacks a column every scorer needs."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ScorerError(f"scorer input lacks column(s) {missing}; has {list(df.columns)}")


def check_text(sample_id: str, field: str, value: Any) -> str:
    """The value as a string; ScorerError naming the sample if it is not text."""
    if value is None and field == "input":
        return ""
    if not isinstance(value, str):
        raise ScorerError(f"sample {sample_id}: field {field!r} is {type(value).__name__}, not text")
    return value


def sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Row indices in batches of similar length, longest first.

    Sorting by length keeps padding (wasted FLOPs) small; longest first makes an out-of-memory
    batch fail at the start of a run rather than at the end. Ties keep input order (stable)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def progress(total: int, desc: str) -> Any:
    """A tqdm progress bar on stderr (rules send stderr to their log)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, mininterval=5.0, unit="sample")


class SampleIndicator:
    """Base of sample-level indicators.

    Subclasses set `info` (through @register), optionally `prompt_version`, and implement
    `_score(df) -> list[float]`. `model_calls` counts forward passes so tests and the cache log can
    show that cached samples are never re-scored; `tokens` counts the real (unpadded) tokens and
    `padded_tokens` the batch positions fed to the model (cost and FLOP accounting)."""

    info: IndicatorInfo
    prompt_version: str | None = None
    uses_max_length: bool = True

    def __init__(self, model: dict[str, Any] | None = None, batch_size: int = BATCH_SIZE, max_length: int = MAX_LENGTH,
                 device: str = "cpu", finetune_view: dict[str, Any] | None = None) -> None:
        if self.info.model is not None and not model:
            raise ScorerError(f"indicator {self.info.name!r} needs a model spec ({self.info.model} model)")
        if finetune_view is not None and set(finetune_view) != {"max_length", "template", "tokenizer"}:
            raise ScorerError(f"finetune_view needs exactly max_length, template, tokenizer; got {sorted(finetune_view)}")
        self.finetune_view = finetune_view
        self._view_tok: Any = None
        self.model_spec = model
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.device = device
        self.model_calls = 0
        self.tokens = 0
        self.padded_tokens = 0

    def _count(self, mask: Any) -> None:
        """Account one forward pass over a [batch, length] attention mask."""
        self.model_calls += 1
        self.tokens += int(mask.sum())
        self.padded_tokens += int(mask.numel())

    def identity(self) -> dict[str, Any]:
        """What the cached scores depend on: the cache key is stable_hash(identity)."""
        from .models import model_identity

        ident: dict[str, Any] = {
            "indicator": self.info.name,
            "version": self.info.version,
            "prompt_version": self.prompt_version,
            "max_length": self.max_length if self.uses_max_length else None,
            "cache_version": CACHE_VERSION,
        }
        ident.update(model_identity(self.model_spec) if self.model_spec else {"model": None, "revision": None})
        if self.finetune_view is not None:  # scores of the finetune's view are other scores
            view = self.finetune_view
            ident["finetune_view"] = {"max_length": view["max_length"], "template": view["template"],
                                      "tokenizer": model_identity(view["tokenizer"])}
        return ident

    def view(self, df: Any) -> Any:
        """df as the finetune sees it (prompts.finetune_view per row) when finetune_view is set:
        indicators.truncate_to_finetune, so the rule is fitted on the text the model trains on."""
        if self.finetune_view is None:
            return df
        from ..prompts import finetune_view
        from .models import load_tokenizer

        if self._view_tok is None:
            self._view_tok = load_tokenizer(self.finetune_view["tokenizer"])
        rows = [finetune_view(self._view_tok, check_text(sid, "instruction", ins), check_text(sid, "input", inp),
                              check_text(sid, "output", out), self.finetune_view["max_length"],
                              self.finetune_view["template"])
                for sid, ins, inp, out in zip(df["id"], df["instruction"], df["input"], df["output"], strict=True)]
        out = df.copy()
        out[["instruction", "input", "output"]] = rows if rows else out[["instruction", "input", "output"]]
        return out

    def score(self, df: Any) -> list[float]:
        """One float per row of df (columns id, instruction, input, output), in row order."""
        check_columns(df)
        if len(df) == 0:
            return []
        values = self._score(self.view(df))
        if len(values) != len(df):
            raise ScorerError(f"{self.info.name}: scorer returned {len(values)} values for {len(df)} rows")
        import math

        for sid, v in zip(df["id"], values, strict=True):
            if not math.isfinite(v):
                raise ScorerError(f"{self.info.name}: sample {sid}: non-finite score {v}")
        return [float(v) for v in values]

    def _score(self, df: Any) -> list[float]:
        raise NotImplementedError
