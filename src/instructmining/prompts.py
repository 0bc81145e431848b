"""The Alpaca prompt template and the prompt/response tokenization shared by finetune and eval.

Finetuning and eval-loss must format and truncate examples identically, otherwise the eval loss
measures a format mismatch instead of data quality. Both call `encode_example`, which returns
labels of -100 on every prompt token: only response tokens carry loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Stanford Alpaca's templates (tatsu-lab/stanford_alpaca, train.py PROMPT_DICT), verbatim.
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
TEMPLATES = {"alpaca": (ALPACA_WITH_INPUT, ALPACA_NO_INPUT)}
IGNORE_INDEX = -100  # the label value torch's cross_entropy skips


def format_prompt(instruction: str, input_text: object = None, template: str = "alpaca") -> str:
    """The prompt for one example: the with-input variant when `input_text` is non-empty."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r} (known: {sorted(TEMPLATES)})")
    with_input, no_input = TEMPLATES[template]
    if isinstance(input_text, str) and input_text.strip():  # None / NaN (missing in parquet): none
        return with_input.format(instruction=instruction, input=input_text)
    return no_input.format(instruction=instruction)


@dataclass(frozen=True)
class Encoded:
    """One tokenized example: input ids, labels (-100 on prompt tokens) and response-token count."""

    input_ids: list[int]
    labels: list[int]

    @property
    def num_response_tokens(self) -> int:
        """Tokens that carry loss: every response token (each is predicted from the token before it)."""
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def encode_example(tokenizer: Any, prompt: str, response: str, max_length: int) -> Encoded:
    """Tokenize prompt + response (+ EOS) into at most `max_length` tokens, prompt labels -100.

    Prompt and response are tokenized separately so the prompt/response boundary is exact (no
    BPE merge across it). When too long, the prompt keeps at most half the budget (its *end*, which
    holds the "### Response:" cue) and the response is cut at the right, so a long prompt never
    leaves a reference with zero scored tokens."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    p_ids = bos + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        # The model must learn to stop; eval scores the EOS too (same format as training).
        r_ids = r_ids + [tokenizer.eos_token_id]
    p_keep, r_keep = kept_tokens(len(p_ids), len(r_ids), max_length)
    p_ids, r_ids = p_ids[len(p_ids) - p_keep :], r_ids[:r_keep]
    return Encoded(input_ids=p_ids + r_ids, labels=[IGNORE_INDEX] * len(p_ids) + r_ids)


def kept_tokens(prompt_len: int, response_len: int, max_length: int) -> tuple[int, int]:
    """(prompt, response) tokens encode_example keeps: all when they fit; else the prompt keeps at
    most half the budget (its end) and the response the rest (its start)."""
    if prompt_len + response_len <= max_length:
        return prompt_len, response_len
    p_keep = min(prompt_len, max(1, max_length // 2))
    r_keep = min(response_len, max_length - p_keep)
    return max_length - r_keep, r_keep


def finetune_view(tokenizer: Any, instruction: str, input_text: str, response: str, max_length: int,
                  template: str = "alpaca") -> tuple[str, str, str]:
    """(instruction, input, response) cut to what a finetune with this template and max_length
    trains on (encode_example): the response's first tokens, and the prompt's last tokens, dropped
    from the template's header first, then the instruction's start, then the input's start. Text is
    decoded from the kept tokens, so a re-tokenized side may differ from the kept count by a token
    where a BPE merge crossed the cut."""
    prompt = format_prompt(instruction, input_text, template)
    bos = 1 if tokenizer.bos_token_id is not None else 0
    eos = 1 if tokenizer.eos_token_id is not None else 0

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    r_ids = ids(response)
    p_len = bos + len(ids(prompt))
    p_keep, r_keep = kept_tokens(p_len, len(r_ids) + eos, max_length)
    if r_keep < len(r_ids) + eos:
        response = tokenizer.decode(r_ids[: min(r_keep, len(r_ids))])
    drop = p_len - p_keep
    if drop > 0:
        with_input = isinstance(input_text, str) and bool(input_text.strip())
        header = prompt[: prompt.index(instruction)] if instruction else prompt
        drop -= bos + len(ids(header))
        fields = [instruction, input_text] if with_input else [instruction]
        for k, text in enumerate(fields):
            if drop <= 0:
                break
            t_ids = ids(text)
            cut = min(drop, len(t_ids))
            fields[k] = tokenizer.decode(t_ids[cut:]).strip()
            drop -= cut + (len(ids("\n\n### Input:\n")) if k == 0 and with_input else 0)
        instruction = fields[0]
        input_text = fields[1] if with_input else input_text
    return instruction, input_text, response


def collate(batch: list[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch into tensors: input_ids, attention_mask, labels (-100 on padding)."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def token_nll(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """Per-example summed NLL and scored-token counts for a collated batch.

    Computes logits only at positions whose next token is scored (response tokens): a full
    [batch, length, vocab] logits tensor is the memory and time peak on CPU."""
    import torch

    lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # unwrap PEFT
    if not hasattr(lm, "lm_head") or not hasattr(lm, "model"):
        raise TypeError(f"{type(lm).__name__} is not a decoder-only causal LM (no .model/.lm_head)")
    dev = lm.lm_head.weight.device  # collate builds CPU tensors; a GPU model needs them moved
    out = lm.model(input_ids=batch["input_ids"].to(dev), attention_mask=batch["attention_mask"].to(dev))
    hidden = out.last_hidden_state[:, :-1]
    target = batch["labels"][:, 1:].to(dev)
    keep = target != IGNORE_INDEX
    logits = lm.lm_head(hidden[keep]).float()
    nll = torch.nn.functional.cross_entropy(logits, target[keep], reduction="none")
    rows = keep.nonzero()[:, 0]
    per_ex = torch.zeros(target.shape[0], dtype=nll.dtype, device=dev).index_add_(0, rows, nll)
    return per_ex, keep.sum(dim=1)
