"""Input and output length in tokens of the base model's tokenizer (paper: Len_in, Len_out)."""

from __future__ import annotations

from typing import Any

from .base import SampleIndicator, check_text, prompt_text
from .registry import register


class _Length(SampleIndicator):
    """Token count of one side of the sample under the base tokenizer (no truncation, no special
    tokens). An empty side has length 0: a real value, not a placeholder. With
    indicators.truncate_to_finetune the sample is first cut to what the finetune keeps
    (SampleIndicator.view), so the count is of the tokens it trains on."""

    uses_max_length = False  # lengths are counted in full, so max_length is not part of the key
    side = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tok = None

    def _score(self, df: Any) -> list[float]:
        from .models import load_tokenizer

        if self._tok is None:
            self._tok = load_tokenizer(self.model_spec)
        texts = []
        for sid, ins, inp, out in zip(df["id"], df["instruction"], df["input"], df["output"], strict=True):
            if self.side == "input":
                texts.append(prompt_text(check_text(sid, "instruction", ins), check_text(sid, "input", inp)))
            else:
                texts.append(check_text(sid, "output", out))
        self.model_calls += 1  # one tokenizer call (no model forward pass)
        enc = self._tok(texts, add_special_tokens=False)["input_ids"]
        return [float(len(ids)) for ids in enc]


@register("input_length", version=1, level="sample", sign=0, model="base")
class InputLength(_Length):
    """Tokens of instruction + input under the base model's tokenizer."""

    side = "input"


@register("output_length", version=1, level="sample", sign=1, model="base")
class OutputLength(_Length):
    """Tokens of the response under the base model's tokenizer (empty response: 0)."""

    side = "output"
