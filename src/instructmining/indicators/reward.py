"""Reward-model score of (instruction, response) (paper: OpenAssistant/reward-model-deberta-v3-large-v2).

Any AutoModelForSequenceClassification with a single output logit (the paper's hub model), or
the demo's workflow-trained mean-pooled MiniLM reward model (results/models/reward: a folder with
reward_head.safetensors, see reward_head.py and reward_train.py).
The pair is encoded as the tokenizer's text pair (instruction [+ input], response), truncated
longest-first to `max_length`, as the OpenAssistant model card does. Score = the logit. An empty
response raises ScorerError.

The demo reward model (rule train_reward_model, `instructmining train-reward`): the first
`reward_training.layers` MiniLM layers, mean-pooled, + a scalar head, Bradley-Terry loss on every
AlpacaEval answer pair (gpt4 > text_davinci_003 > oasst-sft-pythia-12b > {falcon-7b-instruct,
alpaca-7b}), eval prompts (selfinstruct, vicuna) and pool prompts excluded, early stopping on
validation prompts, prompt-disjoint held-out prompts for the reported accuracy.
`instructmining reward-metrics results/models/reward` prints its held-out pairwise accuracy."""

from __future__ import annotations

from typing import Any

from ..errors import ScorerError
from .base import SampleIndicator, check_text, prompt_text, sorted_batches
from .registry import register


@register("reward", version=1, level="sample", sign=-1, model="reward", neural=True)
class Reward(SampleIndicator):
    """Reward-model logit of the (instruction, response) pair (higher = better response)."""

    prompt_version = "text-pair-v1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model = self._tok = None

    def load(self) -> None:
        """Load the tokenizer and the model (once): a mean-pooled reward folder, else a
        sequence-classification model."""
        from .models import load_model, load_tokenizer, resolve_model

        if self._model is None:
            self._tok = load_tokenizer(self.model_spec)
            where = resolve_model(self.model_spec)
            from .reward_head import MeanPoolReward, is_mean_pool_folder

            if is_mean_pool_folder(where):
                try:
                    self._model = MeanPoolReward.load(where, device=self.device)
                except Exception as exc:  # a damaged folder is a user-fixable scorer error
                    raise ScorerError(f"cannot load reward model from {where!r}: {exc}") from exc
                return
            self._model = load_model(self.model_spec, kind="reward", device=self.device)
            if self._model.config.num_labels != 1:
                raise ScorerError(f"reward model {self.model_spec} has {self._model.config.num_labels} "
                                  "labels; a reward model has one scalar output")

    def _score(self, df: Any) -> list[float]:
        import torch

        self.load()
        prompts, responses = [], []
        for sid, ins, inp, out in zip(df["id"], df["instruction"], df["input"], df["output"], strict=True):
            out = check_text(sid, "output", out)
            if not out.strip():
                raise ScorerError(f"reward: sample {sid}: empty response")
            prompts.append(prompt_text(check_text(sid, "instruction", ins), check_text(sid, "input", inp)))
            responses.append(out)
        enc = self._tok(prompts, responses, truncation="longest_first", max_length=self.max_length)
        ids, types = enc["input_ids"], enc.get("token_type_ids")
        result = [0.0] * len(ids)
        with torch.inference_mode():
            for idx in sorted_batches([len(x) for x in ids], self.batch_size):
                feats = [{"input_ids": ids[i], **({"token_type_ids": types[i]} if types else {})} for i in idx]
                batch = self._tok.pad(feats, return_tensors="pt").to(self.device)
                out = self._model(**batch)
                rewards = (out if isinstance(out, torch.Tensor) else out.logits[:, 0]).float()
                self._count(batch["attention_mask"])
                for j, i in enumerate(idx):
                    result[i] = float(rewards[j])
        return result
