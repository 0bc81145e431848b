"""Train the demo reward model: a MiniLM (BERT) encoder with a scalar head, Bradley-Terry loss.

No reward-model weights exist offline, so the demo builds one from AlpacaEval outputs: the same
805 prompts answered by several models, ranked best first in config (e.g. gpt4 >
text_davinci_003 > oasst-sft-pythia-12b > falcon-7b-instruct ~ alpaca-7b; a nested list is a tie
group). Every pair of answers from different rank groups is a preference pair.

Leakage rules: prompts of the eval set (AlpacaEval `dataset` in {selfinstruct, vicuna}) and
prompts whose instruction occurs in the training pool are dropped. A seeded, prompt-disjoint
split is held out; its pairwise accuracy is written to `<out>/metrics.json`
(`instructmining reward-metrics` prints it).

Training is group-wise: each step encodes every answer of a few prompts once and sums the loss
over all of their pairs (9 pairs per 5 forward passes instead of 1 per 2). Word embeddings are
frozen (their Adam update would dominate a CPU step); `layers` keeps the first N encoder layers."""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import DataError, InstructMiningError, check_keys

LOG = logging.getLogger("instructmining.indicators")
EVAL_DATASETS = {"selfinstruct", "vicuna"}


def _norm(text: str) -> str:
    return " ".join(str(text).split())


def load_groups(data_root: str | Path, outputs: list[Any], exclude: set[str]) -> list[dict[str, Any]]:
    """One group per usable prompt: {instruction, answers: [(rank, text)]}, in file order.

    outputs: files relative to data_root, best first; an inner list is a tie group. exclude:
    normalized instructions to drop (the training pool)."""
    ranked: list[tuple[int, Path]] = []
    for rank, entry in enumerate(outputs):
        for name in [entry] if isinstance(entry, str) else list(entry):
            ranked.append((rank, Path(data_root) / name))
    if len({r for r, _ in ranked}) < 2:
        raise InstructMiningError("reward_training.outputs needs at least two rank groups")
    by_prompt: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for rank, path in ranked:
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(path, None, None, f"cannot read AlpacaEval outputs: {exc}") from exc
        for k, rec in enumerate(records):
            for field in ("instruction", "output", "dataset"):
                if not isinstance(rec.get(field), str):
                    raise DataError(path, f"record {k}", field, "missing or not text")
            key = _norm(rec["instruction"])
            if key not in by_prompt:
                by_prompt[key] = {"instruction": rec["instruction"], "dataset": rec["dataset"], "answers": []}
                order.append(key)
            if rec["output"].strip():
                by_prompt[key]["answers"].append((rank, rec["output"]))
    groups = []
    dropped = {"eval": 0, "pool": 0}
    for key in order:
        g = by_prompt[key]
        if g["dataset"] in EVAL_DATASETS:
            dropped["eval"] += 1
        elif key in exclude:
            dropped["pool"] += 1
        elif len({r for r, _ in g["answers"]}) >= 2:
            groups.append(g)
    LOG.info("reward data: %d prompts usable; dropped %d eval prompts, %d pool prompts",
             len(groups), dropped["eval"], dropped["pool"])
    return groups


def pairs_of(group: dict[str, Any]) -> list[tuple[int, int]]:
    """(better, worse) answer indices of a group: different ranks, different texts."""
    ans = group["answers"]
    return [(i, j) for i in range(len(ans)) for j in range(len(ans))
            if ans[i][0] < ans[j][0] and _norm(ans[i][1]) != _norm(ans[j][1])]


def split_groups(groups: list[dict[str, Any]], heldout: float, seed: int) -> tuple[list, list]:
    """(held-out, train): a seeded shuffle of whole prompt groups, so no prompt is on both sides."""
    order = list(groups)
    random.Random(seed).shuffle(order)
    n_held = max(1, round(len(order) * heldout))
    return order[:n_held], order[n_held:]


def _encode(tok: Any, groups: list[dict[str, Any]], max_length: int, device: str) -> Any:
    prompts = [g["instruction"] for g in groups for _ in g["answers"]]
    answers = [a for g in groups for _, a in g["answers"]]
    return tok(prompts, answers, truncation="longest_first", max_length=max_length, padding=True,
               return_tensors="pt").to(device)


def _group_loss(rewards: Any, groups: list[dict[str, Any]]) -> tuple[Any, int]:
    import torch.nn.functional as F

    terms, offset = [], 0
    for g in groups:
        for i, j in pairs_of(g):
            terms.append(rewards[offset + i] - rewards[offset + j])
        offset += len(g["answers"])
    import torch

    diff = torch.stack(terms)
    return -F.logsigmoid(diff).mean(), len(terms)


def heldout_accuracy(model: Any, tok: Any, groups: list[dict[str, Any]], max_length: int,
                     batch_groups: int = 8) -> tuple[float, int]:
    """Pairwise accuracy on held-out groups (a tie in reward counts one half)."""
    import torch

    correct, total = 0.0, 0
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(groups), batch_groups):
            chunk = groups[s : s + batch_groups]
            r = model(**_encode(tok, chunk, max_length, model.device)).logits[:, 0]
            offset = 0
            for g in chunk:
                for i, j in pairs_of(g):
                    d = float(r[offset + i] - r[offset + j])
                    correct += 1.0 if d > 0 else (0.5 if d == 0 else 0.0)
                    total += 1
                offset += len(g["answers"])
    if total == 0:
        raise InstructMiningError("reward training: the held-out split has no pairs")
    return correct / total, total


@dataclass(frozen=True)
class RewardTrainingConfig:
    """The `indicators.reward_training:` config block (src/instructmining/schemas/config.schema.yaml), one
    field per key."""

    enabled: bool = False
    """Train results/models/reward instead of loading reward_model (read by the workflow)."""
    outputs: tuple = ()
    """AlpacaEval model_outputs files (relative to data_root), best first; an inner list is a tie group."""
    epochs: int = 1
    """Passes over the training prompts."""
    max_pairs: int | None = None
    """Cap on training pairs (whole prompts are kept)."""
    max_length: int = 128
    """Tokens per (instruction, response) pair, truncated longest-first."""
    layers: int | None = None
    """Keep the first N encoder layers (CPU speed); None = all."""
    heldout: float = 0.2
    """Fraction of prompts held out for the pairwise accuracy."""
    learning_rate: float = 3e-4
    """AdamW peak learning rate (linear decay)."""
    prompts_per_step: int = 4
    """Prompts per optimizer step (all their answers form the batch)."""

    @classmethod
    def from_dict(cls, block: dict[str, Any]) -> RewardTrainingConfig:
        """Build from the config block; an unknown key fails (no silent misspellings)."""
        check_keys(block, [f.name for f in fields(cls)], "indicators.reward_training")
        return cls(**{**block, "outputs": tuple(block.get("outputs", ()))})


def train_reward(data_root: Path, pool: Path, encoder: dict[str, Any], cfg: RewardTrainingConfig, out: Path, *,
                 seed: int = 1, threads: int | None = None) -> dict[str, Any]:
    """Train the reward model on `cfg.outputs` (files under `data_root`) minus the instructions of
    `pool`, from the `encoder` model spec; evaluate on the held-out prompts; save model + tokenizer
    + metrics.json atomically to `out`. Returns the metrics."""
    import pandas as pd
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..io import atomic_dir, provenance
    from .models import resolve_model, set_threads

    set_threads(threads)
    torch.manual_seed(seed)
    pool = pd.read_parquet(pool, columns=["instruction"])
    exclude = {_norm(t) for t in pool["instruction"]}
    groups = load_groups(data_root, list(cfg.outputs), exclude)
    held, train = split_groups(groups, cfg.heldout, seed)
    if cfg.max_pairs:
        kept, n = [], 0
        for g in train:
            if n >= cfg.max_pairs:
                break
            kept.append(g)
            n += len(pairs_of(g))
        train = kept
    n_train_pairs = sum(len(pairs_of(g)) for g in train)
    if not train:
        raise InstructMiningError("reward training: no training prompts left after exclusions")
    where = resolve_model(encoder)
    extra = {"num_hidden_layers": cfg.layers} if cfg.layers else {}
    tok = AutoTokenizer.from_pretrained(where)
    model = AutoModelForSequenceClassification.from_pretrained(where, num_labels=1, **extra)
    for name, p in model.named_parameters():
        if "word_embeddings" in name:
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.01)
    per_step = cfg.prompts_per_step
    steps = cfg.epochs * ((len(train) + per_step - 1) // per_step)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(1, steps))
    LOG.info("reward training: %d train prompts (%d pairs), %d held-out prompts, %d steps, encoder %s%s",
             len(train), n_train_pairs, len(held), steps, where, f" (first {cfg.layers} layers)" if cfg.layers else "")
    t0, step = time.perf_counter(), 0
    for epoch in range(cfg.epochs):
        model.train()
        order = list(range(len(train)))
        random.Random(seed + epoch).shuffle(order)
        for s in range(0, len(order), per_step):
            chunk = [train[k] for k in order[s : s + per_step]]
            rewards = model(**_encode(tok, chunk, cfg.max_length, "cpu")).logits[:, 0]
            loss, _ = _group_loss(rewards, chunk)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 20 == 0 or step == steps:
                LOG.info("step %d/%d epoch %d loss %.4f (%.0f s)", step, steps, epoch, float(loss.detach()),
                         time.perf_counter() - t0)
    acc, n_pairs = heldout_accuracy(model, tok, held, cfg.max_length)
    metrics = {
        "heldout_accuracy": acc, "heldout_pairs": n_pairs, "heldout_prompts": len(held),
        "train_pairs": n_train_pairs, "train_prompts": len(train), "steps": steps,
        **provenance(seed=seed, config={**asdict(cfg), "encoder": encoder}),
    }
    # Wall time goes to the log only: metrics.json must be byte-identical for the same seed.
    LOG.info("held-out pairwise accuracy %.4f on %d pairs (%.0f s)", acc, n_pairs, time.perf_counter() - t0)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
