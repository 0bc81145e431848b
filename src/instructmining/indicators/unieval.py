"""UniEval dialogue dimensions: naturalness, coherence, understandability (Zhong et al. 2022).

UniEval scores a dimension as Boolean QA: the score is P(Yes) / (P(Yes) + P(No)) for the first
answer token, i.e. sigmoid(logit_Yes - logit_No). Two judge kinds, one scorer:

- seq2seq (paper: MingZhong/unieval-dialog, T5): UniEval's own input, verbatim from its
  `add_question(task="dialogue")`: "question: <dimension question> </s> response: <response>
  [</s> dialogue history: <instruction>]" (the instruction with its input plays the dialogue history,
  ending in a blank line as in UniEval); one decoder step from the decoder start token; "Yes"/"No"
  are the first token ids of tokenizer("Yes") / tokenizer("No") as in UniEval.
- causal (demo: SmolLM2-135M-Instruct, or any decoder LM): the sample comes first and the question
  after, so the three dimensions share one prefix: "Instruction: ... Response: ..." is read once
  (one forward pass, its key/value cache kept) and each dimension's question + answer cue is a short
  continuation of that cache (shared_prefix_scores). With a chat template (an instruct model) the
  prompt is one user turn, the question ends "Answer Yes or No." and the answers are "Yes"/"No"
  after the assistant header; without one (a base LM) the cue is "\\nAnswer:" and the answers
  " Yes"/" No". The sample is cut at its tail so the question and cue always fit `max_length`.
If the answers share leading tokens (a small BPE splits " Yes" as " ", "Y", "es"), the shared
prefix is fed after the cue and the first differing tokens are compared (see yes_no_ids).
An empty response raises ScorerError.

Changelog: version 2 (2026-11-29): causal judges read the sample first and the question after
(shared prefix); version 1 put UniEval's question first for causal judges too."""

from __future__ import annotations

from typing import Any

from ..errors import ScorerError
from .base import SampleIndicator, check_text, prompt_text, sorted_batches
from .registry import register

DIMENSIONS = ("naturalness", "coherence", "understandability")
QUESTION_TEXT = {
    "naturalness": "Is this a natural response in the dialogue?",
    "coherence": "Is this a coherent response given the dialogue history?",
    "understandability": "Is this an understandable response in the dialogue?",
}
QUESTIONS = {
    "naturalness": "question: " + QUESTION_TEXT["naturalness"] + " </s> response: {output}",
    "coherence": "question: " + QUESTION_TEXT["coherence"] + " </s> response: {output} </s> dialogue history: {history}",
    "understandability": "question: " + QUESTION_TEXT["understandability"] + " </s> response: {output}",
}
CAUSAL_CUE = "\nAnswer:"
CAUSAL_SAMPLE = "Dialogue history:\n{history}\n\nResponse:\n{output}\n\n"
CHAT_ASK = " Answer Yes or No."
_SLOT = "\x00"  # splits the chat template around the user turn's text


def unieval_input(dimension: str, instruction: str, input_: str, output: str) -> str:
    """UniEval's dialogue input text for one sample and dimension (seq2seq judges)."""
    history = prompt_text(instruction, input_) + "\n\n"
    return QUESTIONS[dimension].format(output=output, history=history)


def causal_sample(instruction: str, input_: str, output: str) -> str:
    """The shared prefix text of a causal judge: the sample, before any question."""
    return CAUSAL_SAMPLE.format(history=prompt_text(instruction, input_), output=output)


def yes_no_ids(tokenizer: Any, causal: bool, chat: bool = False) -> tuple[list[int], int, int]:
    """(shared prefix, Yes id, No id): the answers' token ids after their common prefix.

    With a real judge tokenizer "Yes"/" Yes" is one token and the prefix is empty (UniEval's
    recipe exactly). A small BPE vocabulary may split " Yes" into [" ", "Y", "es"]; the judge then
    reads the shared prefix [" "] and chooses between the first differing tokens ("Y" vs "N").
    A causal judge answers after a space ("Answer: Yes") unless it is a chat model, whose answer
    starts the assistant turn ("Yes")."""
    words = (" Yes", " No") if causal and not chat else ("Yes", "No")
    yes, no = (tokenizer(w, add_special_tokens=False)["input_ids"] for w in words)
    k = 0
    while k < min(len(yes), len(no)) and yes[k] == no[k]:
        k += 1
    if k == len(yes) or k == len(no):
        raise ScorerError(f"judge tokenizer cannot tell {words[0]!r} from {words[1]!r}: {yes} vs {no}")
    return yes[:k], yes[k], no[k]


def causal_parts(tok: Any, dims: tuple[str, ...] = DIMENSIONS) -> tuple[list[int], dict[str, list[int]], bool]:
    """(head ids, {dimension: question + cue + answer-prefix ids}, chat): the token ids around the
    sample. head: the chat template's opening (system + user header) or BOS; a chat model's
    question ends with CHAT_ASK and the template's assistant header."""
    chat = bool(getattr(tok, "chat_template", None))
    prefix, _, _ = yes_no_ids(tok, causal=True, chat=chat)
    if chat:
        text = tok.apply_chat_template([{"role": "user", "content": _SLOT}], tokenize=False,
                                       add_generation_prompt=True)
        head, tail = text.split(_SLOT)
        head_ids = tok(head, add_special_tokens=False)["input_ids"]
        suffixes = {d: QUESTION_TEXT[d] + CHAT_ASK + tail for d in dims}
    else:
        head_ids = [tok.bos_token_id] if tok.bos_token_id is not None else []
        suffixes = {d: QUESTION_TEXT[d] + CAUSAL_CUE for d in dims}
    return head_ids, {d: tok(s, add_special_tokens=False)["input_ids"] + prefix for d, s in suffixes.items()}, chat


def shared_prefix_scores(model: Any, prefixes: list[list[int]], suffixes: dict[str, list[int]],
                         yes: int, no: int, batch_size: int, pad: int,
                         count: Any = None) -> dict[str, list[float]]:
    """P(Yes)/(P(Yes)+P(No)) per dimension: each batch of prefixes is read once (right padded, its
    key/value cache kept); each dimension's suffix continues that cache at the true positions and
    the cache is cropped back to the prefix for the next one. Equal to one full pass per
    (prefix, suffix) up to float rounding (tests/indicators/test_unieval.py)."""
    import torch
    from transformers import DynamicCache

    dev = model.device
    out = {d: [0.0] * len(prefixes) for d in suffixes}
    with torch.inference_mode():
        for idx in sorted_batches([len(x) for x in prefixes], batch_size):
            width = max(len(prefixes[i]) for i in idx)
            inp = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for j, i in enumerate(idx):
                inp[j, : len(prefixes[i])] = torch.tensor(prefixes[i])
                mask[j, : len(prefixes[i])] = 1
            inp, mask = inp.to(dev), mask.to(dev)
            cache = DynamicCache()
            model(input_ids=inp, attention_mask=mask, past_key_values=cache, use_cache=True, logits_to_keep=1)
            if count is not None:
                count(mask)
            lengths = mask.sum(dim=1, keepdim=True)
            for d, suffix in suffixes.items():
                s = torch.tensor([suffix] * len(idx), dtype=torch.long, device=dev)
                positions = lengths + torch.arange(len(suffix), device=dev)
                full_mask = torch.cat([mask, torch.ones_like(s)], dim=1)
                logits = model(input_ids=s, attention_mask=full_mask, position_ids=positions, past_key_values=cache,
                               use_cache=True, logits_to_keep=1).logits[:, -1].float()
                cache.crop(-len(suffix))  # back to the prefix (a negative count removes tokens)
                p = torch.sigmoid(logits[:, yes] - logits[:, no])
                for j, i in enumerate(idx):
                    out[d][i] = float(p[j])
    return out


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
        if self.kind == "causal":
            self.prompt_version = "sample-first-shared-prefix-v1"

    def identity(self) -> dict[str, Any]:
        """The cache identity: the judge kind changes the prompt, so it is part of the key."""
        return {**super().identity(), "judge_kind": self.kind}

    def load(self) -> None:
        """Load the judge (once)."""
        from .models import load_model, load_tokenizer

        if self._model is None:
            self._tok = load_tokenizer(self.model_spec)
            self._model = load_model(self.model_spec, kind=self.kind, device=self.device)
            if self.kind == "causal":
                self._head, self._suffixes, chat = causal_parts(self._tok)
                _, self._yes, self._no = yes_no_ids(self._tok, True, chat)
            else:
                self._prefix, self._yes, self._no = yes_no_ids(self._tok, False)

    def _rows(self, df: Any) -> list[tuple[str, str, str]]:
        rows = []
        for sid, ins, inp, out in zip(df["id"], df["instruction"], df["input"], df["output"], strict=True):
            out = check_text(sid, "output", out)
            if not out.strip():
                raise ScorerError(f"{self.info.name}: sample {sid}: empty response")
            rows.append((check_text(sid, "instruction", ins), check_text(sid, "input", inp), out))
        return rows

    def _pad(self) -> int:
        tok = self._tok
        return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    def score_dimensions(self, df: Any, dims: tuple[str, ...] = DIMENSIONS) -> dict[str, list[float]]:
        """Scores of several dimensions at once: a causal judge reads each sample once for all of
        them (shared prefix); a seq2seq judge needs one pass per dimension (UniEval's input puts
        the question first)."""
        self.load()
        rows = self._rows(df)
        if self.kind == "seq2seq":
            return {d: self._seq2seq([unieval_input(d, *r) for r in rows]) for d in dims}
        # Room for the longest question of all three dimensions, asked or not: a sample is cut the
        # same way whichever dimensions are scored together.
        keep = self.max_length - len(self._head) - max(len(s) for s in self._suffixes.values())
        if keep < 1:
            raise ScorerError(f"{self.info.name}: max_length {self.max_length} leaves no room for the sample")
        # Keep the start (the instruction and the response head) and cut the tail.
        prefixes = [self._head + ids[:keep] for ids in
                    self._tok([causal_sample(*r) for r in rows], add_special_tokens=False)["input_ids"]]
        return shared_prefix_scores(self._model, prefixes, {d: self._suffixes[d] for d in dims}, self._yes,
                                    self._no, self.batch_size, self._pad(), count=self._count)

    def _score(self, df: Any) -> list[float]:
        return self.score_dimensions(df, (self.dimension,))[self.dimension]

    def _seq2seq(self, texts: list[str]) -> list[float]:
        import torch

        ids = self._tok(texts, truncation=True, max_length=self.max_length)["input_ids"]
        result = [0.0] * len(ids)
        m = self._model
        start = m.config.decoder_start_token_id
        if start is None:
            raise ScorerError(f"{self.info.name}: seq2seq judge has no decoder_start_token_id")
        with torch.inference_mode():
            for idx in sorted_batches([len(x) for x in ids], self.batch_size):
                width = max(len(ids[i]) for i in idx)
                inp = torch.full((len(idx), width), self._pad(), dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for j, i in enumerate(idx):
                    inp[j, : len(ids[i])] = torch.tensor(ids[i])
                    mask[j, : len(ids[i])] = 1
                inp, mask = inp.to(self.device), mask.to(self.device)
                dec = torch.tensor([[start, *self._prefix]] * len(idx), dtype=torch.long, device=self.device)
                logits = m(input_ids=inp, attention_mask=mask, decoder_input_ids=dec).logits[:, -1].float()
                self._count(mask)
                p = torch.sigmoid(logits[:, self._yes] - logits[:, self._no])
                for j, i in enumerate(idx):
                    result[i] = float(p[j])
        return result


@register("unieval_naturalness", version=2, level="sample", sign=-1, model="unieval", neural=True)
class UniEvalNaturalness(_UniEval):
    """UniEval naturalness: P(Yes) for "Is this a natural response in the dialogue?"."""

    dimension = "naturalness"


@register("unieval_coherence", version=2, level="sample", sign=-1, model="unieval", neural=True)
class UniEvalCoherence(_UniEval):
    """UniEval coherence: P(Yes) for "Is this a coherent response given the dialogue history?"."""

    dimension = "coherence"


@register("unieval_understandability", version=2, level="sample", sign=-1, model="unieval", neural=True)
class UniEvalUnderstandability(_UniEval):
    """UniEval understandability: P(Yes) for "Is this an understandable response in the dialogue?"."""

    dimension = "understandability"
