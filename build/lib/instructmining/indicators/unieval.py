"""UniEval dialogue dimensions: naturalness, coherence, understandability (Zhong et al. 2022).

UniEval scores a dimension as Boolean QA: the evaluator reads "question: <dimension question>
</s> response: <response> [</s> dialogue history: <instruction>]" and the score is
P(Yes) / (P(Yes) + P(No)) for the first answer token, i.e. sigmoid(logit_Yes - logit_No).
The questions and input layout are UniEval's `add_question(task="dialogue")` verbatim; the
instruction (with its input) plays the dialogue history, ending in a blank line as in UniEval.

Two judge kinds, one scorer:
- seq2seq (paper: MingZhong/unieval-dialog, T5): one decoder step from the decoder start token;
  "Yes"/"No" are the first token ids of tokenizer("Yes") / tokenizer("No") as in UniEval.
- causal (demo: the base LM): the same text followed by "\nAnswer:" and the next-token logits of
  " Yes" / " No". The text is cut before the cue so the cue is never truncated away.
If the answers share leading tokens (a small BPE splits " Yes" as " ", "Y", "es"), the shared
prefix is fed after the cue and the first differing tokens are compared (see yes_no_ids).
An empty response raises ScorerError."""

from __future__ import annotations

from typing import Any

from ..errors import ScorerError
from .base import SampleIndicator, check_text, prompt_text, sorted_batches
from .registry import register

QUESTIONS = {
    "naturalness": "question: Is this a natural response in the dialogue? </s> response: {output}",
    "coherence": "question: Is this a coherent response given the dialogue history? </s> response: {output}"
    " </s> dialogue history: {history}",
    "understandability": "question: Is this an understandable response in the dialogue? </s> response: {output}",
}
CAUSAL_CUE = "\nAnswer:"


def unieval_input(dimension: str, instruction: str, input_: str, output: str) -> str:
    """UniEval's dialogue input text for one sample and dimension."""
    history = prompt_text(instruction, input_) + "\n\n"
    return QUESTIONS[dimension].format(output=output, history=history)


def yes_no_ids(tokenizer: Any, causal: bool) -> tuple[list[int], int, int]:
    """(shared prefix, Yes id, No id): the answers' token ids after their common prefix.

    With a real judge tokenizer "Yes"/" Yes" is one token and the prefix is empty (UniEval's
    recipe exactly). A small BPE vocabulary may split " Yes" into [" ", "Y", "es"]; the judge then
    reads the shared prefix [" "] and chooses between the first differing tokens ("Y" vs "N")."""
    words = (" Yes", " No") if causal else ("Yes", "No")
    yes, no = (tokenizer(w, add_special_tokens=False)["input_ids"] for w in words)
    k = 0
    while k < min(len(yes), len(no)) and yes[k] == no[k]:
        k += 1
    if k == len(yes) or k == len(no):
        raise ScorerError(f"judge tokenizer cannot tell {words[0]!r} from {words[1]!r}: {yes} vs {no}")
    return yes[:k], yes[k], no[k]


class _UniEval(SampleIndicator):
    """Base: P(Yes)/(P(Yes)+P(No)) for the dimension's UniEval question."""

    dimension = ""
    prompt_version = "unieval-dialogue-v1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model = self._tok = None
        self.kind = (self.model_spec or {}).get("kind") or "seq2seq"
        if self.kind not in ("seq2seq", "causal"):
            raise ScorerError(f"{self.info.name}: judge kind must be seq2seq or causal, got {self.kind!r}")

    def identity(self) -> dict[str, Any]:
        """The cache identity: the judge kind changes the prompt, so it is part of the key."""
        return {**super().identity(), "judge_kind": self.kind}

    def load(self) -> None:
        """Load the judge (once)."""
        from .models import load_model, load_tokenizer

        if self._model is None:
            self._tok = load_tokenizer(self.model_spec)
            self._model = load_model(self.model_spec, kind=self.kind, device=self.device)
            self._prefix, self._yes, self._no = yes_no_ids(self._tok, self.kind == "causal")

    def _texts(self, df: Any) -> list[str]:
        texts = []
        for sid, ins, inp, out in zip(df["id"], df["instruction"], df["input"], df["output"], strict=True):
            out = check_text(sid, "output", out)
            if not out.strip():
                raise ScorerError(f"{self.info.name}: sample {sid}: empty response")
            texts.append(unieval_input(self.dimension, check_text(sid, "instruction", ins),
                                       check_text(sid, "input", inp), out))
        return texts

    def _encode(self, texts: list[str]) -> list[list[int]]:
        if self.kind == "seq2seq":
            return self._tok(texts, truncation=True, max_length=self.max_length)["input_ids"]
        cue = self._tok(CAUSAL_CUE, add_special_tokens=False)["input_ids"]
        bos = [self._tok.bos_token_id] if self._tok.bos_token_id is not None else []
        body = self._tok(texts, add_special_tokens=False)["input_ids"]
        keep = self.max_length - len(cue) - len(bos)
        if keep < 1:
            raise ScorerError(f"{self.info.name}: max_length {self.max_length} leaves no room for the text")
        keep -= len(self._prefix)
        # Keep the start (the question and the response head) and cut the tail (the history).
        return [bos + ids[:keep] + cue + self._prefix for ids in body]

    def _score(self, df: Any) -> list[float]:
        import torch

        self.load()
        ids = self._encode(self._texts(df))
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else (self._tok.eos_token_id or 0)
        result = [0.0] * len(ids)
        with torch.inference_mode():
            for idx in sorted_batches([len(x) for x in ids], self.batch_size):
                width = max(len(ids[i]) for i in idx)
                inp = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for j, i in enumerate(idx):
                    inp[j, : len(ids[i])] = torch.tensor(ids[i])
                    mask[j, : len(ids[i])] = 1
                inp, mask = inp.to(self.device), mask.to(self.device)
                logits = self._answer_logits(inp, mask)
                self._count(mask)
                p = torch.sigmoid(logits[:, self._yes] - logits[:, self._no])
                for j, i in enumerate(idx):
                    result[i] = float(p[j])
        return result

    def _answer_logits(self, inp: Any, mask: Any) -> Any:
        import torch

        m = self._model
        if self.kind == "seq2seq":
            start = m.config.decoder_start_token_id
            if start is None:
                raise ScorerError(f"{self.info.name}: seq2seq judge has no decoder_start_token_id")
            dec = torch.tensor([[start, *self._prefix]] * inp.shape[0], dtype=torch.long, device=inp.device)
            return m(input_ids=inp, attention_mask=mask, decoder_input_ids=dec).logits[:, -1].float()
        last = mask.sum(dim=1) - 1  # right padding: the cue's last token
        rows = torch.arange(inp.shape[0], device=inp.device)
        if hasattr(m, "model") and hasattr(m, "lm_head"):
            # Only the last position's logits: the full [batch, length, vocab] tensor is the CPU peak.
            hidden = m.model(input_ids=inp, attention_mask=mask).last_hidden_state
            return m.lm_head(hidden[rows, last]).float()
        return m(input_ids=inp, attention_mask=mask).logits[rows, last].float()


@register("unieval_naturalness", version=1, level="sample", sign=-1, model="unieval", neural=True)
class UniEvalNaturalness(_UniEval):
    """UniEval naturalness: P(Yes) for "Is this a natural response in the dialogue?"."""

    dimension = "naturalness"


@register("unieval_coherence", version=1, level="sample", sign=-1, model="unieval", neural=True)
class UniEvalCoherence(_UniEval):
    """UniEval coherence: P(Yes) for "Is this a coherent response given the dialogue history?"."""

    dimension = "coherence"


@register("unieval_understandability", version=1, level="sample", sign=-1, model="unieval", neural=True)
class UniEvalUnderstandability(_UniEval):
    """UniEval understandability: P(Yes) for "Is this an understandable response in the dialogue?"."""

    dimension = "understandability"
