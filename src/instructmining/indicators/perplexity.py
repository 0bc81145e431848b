"""Perplexity of the response given the instruction under the base LM (paper: PPL).

The model is indicators.perplexity_model when set (e.g. the demo's SmolLM2-135M-Instruct judge,
so the validity table can say which LM ranks quality), else the base model.
The sample is formatted and truncated exactly as finetuning and eval-loss do
(`instructmining.prompts.encode_example`: Alpaca template, response + EOS scored, prompt keeps
at most half of `max_length`), so the indicator measures the same thing the finetune sees.
PPL = exp(mean NLL over the scored response tokens). An empty response raises ScorerError (the
pool builder drops empty responses; a perplexity of the EOS alone would mean nothing)."""

from __future__ import annotations

import math
from typing import Any

from ..errors import ScorerError
from .base import SampleIndicator, check_text, sorted_batches
from .registry import register


@register("perplexity", version=1, level="sample", sign=1, model="perplexity", neural=True)
class Perplexity(SampleIndicator):
    """Perplexity of the response given the Alpaca-formatted instruction under the base LM."""

    prompt_version = "alpaca-encode_example-v1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model = self._tok = None

    def load(self) -> None:
        """Load the base tokenizer and causal LM (once)."""
        from .models import load_model, load_tokenizer

        if self._model is None:
            self._tok = load_tokenizer(self.model_spec)
            self._model = load_model(self.model_spec, kind="causal", device=self.device)

    def _score(self, df: Any) -> list[float]:
        import torch

        from ..prompts import collate, encode_example, format_prompt, token_nll

        self.load()
        enc = []
        for sid, ins, inp, out in zip(df["id"], df["instruction"], df["input"], df["output"], strict=True):
            out = check_text(sid, "output", out)
            if not out.strip():
                raise ScorerError(f"perplexity: sample {sid}: empty response (perplexity undefined)")
            prompt = format_prompt(check_text(sid, "instruction", ins), check_text(sid, "input", inp))
            e = encode_example(self._tok, prompt, out, self.max_length)
            if e.num_response_tokens == 0:
                raise ScorerError(f"perplexity: sample {sid}: no response token fits in max_length {self.max_length}")
            enc.append(e)
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else (self._tok.eos_token_id or 0)
        result = [math.nan] * len(enc)
        with torch.inference_mode():
            for idx in sorted_batches([len(e.input_ids) for e in enc], self.batch_size):
                batch = {k: v.to(self.device) for k, v in collate([enc[i] for i in idx], pad).items()}
                nll, count = token_nll(self._model, batch)
                self._count(batch["attention_mask"])
                for j, i in enumerate(idx):
                    result[i] = math.exp(float(nll[j]) / float(count[j]))
        return result
