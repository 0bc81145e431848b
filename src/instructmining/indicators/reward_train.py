"""Train the demo reward model: a MiniLM (BERT) encoder, mean-pooled, with a scalar head
(reward_head.py), Bradley-Terry loss.

No reward-model weights exist offline, so the demo builds one from AlpacaEval outputs: the same
805 prompts answered by several models, ranked best first in config (e.g. gpt4 >
text_davinci_003 > oasst-sft-pythia-12b > falcon-7b-instruct ~ alpaca-7b; a nested list is a tie
group). Every pair of answers from different rank groups is a preference pair.

Leakage rules: prompts of the eval set (AlpacaEval `dataset` in {selfinstruct, vicuna}) and
prompts whose instruction occurs in the training pool are dropped. The rest is split by prompt
(split_groups, seeded): held-out prompts, whose pairwise accuracy is written to
`<out>/metrics.json` (`instructmining reward-metrics` prints it; `reward_heldout_prompts` gives
the same prompts to other stages), validation prompts for early stopping, and training prompts.
Training is deterministic for a seed and thread count (deterministic_torch).

Training is group-wise: each step encodes every answer of a few prompts once and sums the loss
over all of their pairs (9 pairs per 5 forward passes instead of 1 per 2). Word embeddings are
frozen (their Adam update would dominate a CPU step); `layers` keeps the first N encoder layers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Iterable, Iterator
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


def _split_key(seed: int, instruction: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{_norm(instruction)}".encode()).hexdigest()


def split_groups(groups: list[dict[str, Any]], heldout: float, seed: int,
                 validation: float = 0.0) -> tuple[list, list, list]:
    """(held-out, validation, train): whole prompt groups ordered by sha256(seed, instruction), so
    no prompt is on two sides and a prompt's side does not depend on file order or on which other
    prompts are present (only the counts do). Held-out prompts are never trained on nor used for
    early stopping; validation prompts decide early stopping."""
    order = sorted(groups, key=lambda g: _split_key(seed, g["instruction"]))
    n_held = max(1, round(len(order) * heldout))
    n_val = round(len(order) * validation)
    if validation > 0:
        n_val = max(1, n_val)
    return order[:n_held], order[n_held : n_held + n_val], order[n_held + n_val :]


def _encode(tok: Any, groups: list[dict[str, Any]], max_length: int, device: str) -> Any:
    prompts = [g["instruction"] for g in groups for _ in g["answers"]]
    answers = [a for g in groups for _, a in g["answers"]]
    return tok(prompts, answers, truncation="longest_first", max_length=max_length, padding=True,
               return_tensors="pt").to(device)


def _pair_diffs(rewards: Any, groups: list[dict[str, Any]]) -> Any:
    """reward(better) - reward(worse) for every pair of the groups (their answers in order)."""
    import torch

    better, worse, offset = [], [], 0
    for g in groups:
        for i, j in pairs_of(g):
            better.append(offset + i)
            worse.append(offset + j)
        offset += len(g["answers"])
    return rewards[torch.tensor(better)] - rewards[torch.tensor(worse)]


def _rewards(model: Any, tok: Any, chunk: list[dict[str, Any]], max_length: int,
             features: dict[int, Any] | None) -> Any:
    """Rewards of every answer of the chunk's groups: a full forward pass, or the head over the
    groups' cached pooled features (frozen encoder)."""
    if features is None:
        return model(**_encode(tok, chunk, max_length, model.device))
    import torch

    return model.head(torch.cat([features[id(g)] for g in chunk])).squeeze(-1)


def pooled_features(model: Any, tok: Any, groups: list[dict[str, Any]], max_length: int,
                    batch_groups: int = 8) -> dict[int, Any]:
    """{id(group): [answers, hidden]} mean-pooled encoder states (eval mode, no dropout): with a
    frozen encoder they are computed once and only the head trains."""
    import torch

    out = {}
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(groups), batch_groups):
            chunk = groups[s : s + batch_groups]
            pooled = model.pool(**_encode(tok, chunk, max_length, model.device))
            offset = 0
            for g in chunk:
                out[id(g)] = pooled[offset : offset + len(g["answers"])].clone()
                offset += len(g["answers"])
    return out


def pairwise_accuracy(model: Any, tok: Any, groups: list[dict[str, Any]], max_length: int,
                      batch_groups: int = 8, features: dict[int, Any] | None = None) -> tuple[float, int, float]:
    """(accuracy, pairs, mean Bradley-Terry loss) on groups; a tie in reward counts one half.
    features: pooled_features of the groups (frozen encoder), else full forward passes."""
    import torch
    import torch.nn.functional as F

    correct, total, loss = 0.0, 0, 0.0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(groups), batch_groups):
            chunk = groups[s : s + batch_groups]
            d = _pair_diffs(_rewards(model, tok, chunk, max_length, features), chunk)
            correct += float((d > 0).sum()) + 0.5 * float((d == 0).sum())
            loss += float(-F.logsigmoid(d).sum())
            total += len(d)
    model.train(was_training)
    if total == 0:
        raise InstructMiningError("reward training: an evaluation split has no pairs")
    return correct / total, total, loss / total


@dataclass(frozen=True)
class RewardTrainingConfig:
    """The `indicators.reward_training:` config block (src/instructmining/schemas/config.schema.yaml), one
    field per key."""

    enabled: bool = False
    """Train results/models/reward instead of loading reward_model (read by the workflow)."""
    outputs: tuple = ()
    """AlpacaEval model_outputs files (relative to data_root), best first; an inner list is a tie group."""
    epochs: int = 1
    """Most passes over the training prompts (early stopping may end sooner)."""
    max_pairs: int | None = None
    """Budget: cap on training pairs (whole prompts are kept); None = every pair the ladder offers."""
    max_length: int = 128
    """Tokens per (instruction, response) pair, truncated longest-first."""
    layers: int | None = None
    """Keep the first N encoder layers (CPU speed); None = all."""
    freeze_encoder: bool = False
    """Train only the head on mean-pooled features computed once (a probe: no backward pass)."""
    heldout: float = 0.2
    """Fraction of prompts held out for the reported pairwise accuracy (never trained on)."""
    validation: float = 0.1
    """Fraction of prompts whose pairwise accuracy decides early stopping (never trained on)."""
    eval_steps: int = 20
    """Optimizer steps between validation checks."""
    patience: int = 3
    """Stop after this many validation checks without improvement; the best checkpoint is kept."""
    learning_rate: float = 3e-4
    """AdamW peak learning rate (linear decay over `epochs`)."""
    prompts_per_step: int = 4
    """Prompts per optimizer step (all their answers form the batch)."""

    @classmethod
    def from_dict(cls, block: dict[str, Any]) -> RewardTrainingConfig:
        """Build from the config block; an unknown key fails (no silent misspellings)."""
        check_keys(block, [f.name for f in fields(cls)], "indicators.reward_training")
        return cls(**{**block, "outputs": tuple(block.get("outputs", ()))})


def _training_groups(data_root: Path, pool: Path | Iterable[str], cfg: RewardTrainingConfig,
                     seed: int) -> tuple[list, list, list]:
    """(held-out, validation, train) groups of the ladder minus eval and pool prompts."""
    if isinstance(pool, (str, Path)):
        import pandas as pd

        pool = pd.read_parquet(pool, columns=["instruction"])["instruction"]
    groups = load_groups(data_root, list(cfg.outputs), {_norm(t) for t in pool})
    return split_groups(groups, cfg.heldout, seed, cfg.validation)


def reward_heldout_prompts(data_root: str | Path, training: dict[str, Any] | RewardTrainingConfig,
                           pool: str | Path | Iterable[str], seed: int) -> list[str]:
    """The instructions of the reward model's held-out prompts: the prompts `train-reward` with the
    same arguments neither trains on nor early-stops on (never eval or pool prompts). training: the
    `indicators.reward_training` block; pool: results/pool/pool.parquet or its instructions; seed:
    the config's master seed (what the rule passes)."""
    cfg = training if isinstance(training, RewardTrainingConfig) else RewardTrainingConfig.from_dict(training)
    held, _, _ = _training_groups(Path(data_root), pool, cfg, seed)
    return [g["instruction"] for g in held]


def prompts_digest(instructions: Iterable[str]) -> str:
    """sha256 over the sorted normalized instructions (metrics.json records the held-out set's)."""
    return hashlib.sha256("\x1f".join(sorted(_norm(t) for t in instructions)).encode()).hexdigest()


@contextlib.contextmanager
def deterministic_torch(seed: int, threads: int | None) -> Iterator[None]:
    """Seeded RNGs, deterministic kernels and a fixed intra-op thread count (float sums depend on
    how work is split over threads), restored afterwards."""
    import torch

    from .models import set_threads

    before = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    set_threads(threads or 1)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.set_num_threads(before[1])


def train_reward(data_root: Path, pool: Path, encoder: dict[str, Any], cfg: RewardTrainingConfig, out: Path, *,
                 seed: int = 1, threads: int | None = None) -> dict[str, Any]:
    """Train the reward model on `cfg.outputs` (files under `data_root`) minus the instructions of
    `pool`, from the `encoder` model spec, keeping the checkpoint with the best validation
    accuracy; evaluate it on the held-out prompts; save encoder + head + tokenizer + metrics.json
    atomically to `out`. Deterministic for a given seed and thread count. Returns the metrics."""
    with deterministic_torch(seed, threads):
        return _train(data_root, pool, encoder, cfg, out, seed)


def _train(data_root: Path, pool: Path, encoder: dict[str, Any], cfg: RewardTrainingConfig, out: Path,
           seed: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    from ..io import atomic_dir, provenance
    from .models import resolve_model
    from .reward_head import MeanPoolReward

    held, val, train = _training_groups(data_root, pool, cfg, seed)
    if cfg.max_pairs:
        kept, n = [], 0
        for g in train:
            if n >= cfg.max_pairs:
                break
            kept.append(g)
            n += len(pairs_of(g))
        train = kept
    if not train:
        raise InstructMiningError("reward training: no training prompts left after exclusions")
    n_train_pairs = sum(len(pairs_of(g)) for g in train)
    where = resolve_model(encoder)
    extra = {"num_hidden_layers": cfg.layers} if cfg.layers else {}
    tok = AutoTokenizer.from_pretrained(where)
    model = MeanPoolReward(AutoModel.from_pretrained(where, add_pooling_layer=False, **extra))
    for name, p in model.named_parameters():
        if "word_embeddings" in name or (cfg.freeze_encoder and name.startswith("encoder.")):
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    t0 = time.perf_counter()
    feats = pooled_features(model, tok, held + val + train, cfg.max_length) if cfg.freeze_encoder else None
    if feats is not None:
        LOG.info("frozen encoder: pooled features of %d prompts in %.0f s", len(feats), time.perf_counter() - t0)
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.01)
    per_step = cfg.prompts_per_step
    steps = cfg.epochs * ((len(train) + per_step - 1) // per_step)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(1, steps))
    LOG.info("reward training: %d train prompts (%d pairs), %d validation, %d held-out prompts, at most %d "
             "steps, encoder %s%s", len(train), n_train_pairs, len(val), len(held), steps, where,
             f" (first {cfg.layers} layers)" if cfg.layers else "")
    step = 0
    best = {"key": (-1.0, 0.0), "step": 0, "state": None, "accuracy": None}
    misses = 0

    def check() -> bool:
        """Validate; keep the best state; True when patience is exhausted."""
        nonlocal misses
        if not val:
            return False
        acc, _, loss = pairwise_accuracy(model, tok, val, cfg.max_length, features=feats)
        LOG.info("step %d: validation accuracy %.4f loss %.4f (%.0f s)", step, acc, loss, time.perf_counter() - t0)
        if (acc, -loss) > best["key"]:
            best.update(key=(acc, -loss), step=step, accuracy=acc,
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})
            misses = 0
        else:
            misses += 1
        return misses >= cfg.patience

    stop = False
    for epoch in range(cfg.epochs):
        model.train()
        order = list(range(len(train)))
        random.Random(seed + epoch).shuffle(order)
        for s in range(0, len(order), per_step):
            chunk = [train[k] for k in order[s : s + per_step]]
            loss = -F.logsigmoid(_pair_diffs(_rewards(model, tok, chunk, cfg.max_length, feats), chunk)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % cfg.eval_steps == 0 and (stop := check()):
                break
        if stop:
            LOG.info("early stop at step %d (best step %d)", step, best["step"])
            break
    if not stop and step % cfg.eval_steps:
        check()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    acc, n_pairs, _ = pairwise_accuracy(model, tok, held, cfg.max_length, features=feats)
    metrics = {
        "heldout_accuracy": acc, "heldout_pairs": n_pairs, "heldout_prompts": len(held),
        "heldout_prompts_sha256": prompts_digest(g["instruction"] for g in held),
        "validation_accuracy": best["accuracy"], "validation_prompts": len(val),
        "train_pairs": n_train_pairs, "train_prompts": len(train), "steps": step, "best_step": best["step"],
        "threads": torch.get_num_threads(),
        **provenance(seed=seed, config={**asdict(cfg), "encoder": encoder}),
    }
    # Wall time goes to the log only: metrics.json must be byte-identical for the same seed.
    LOG.info("held-out pairwise accuracy %.4f on %d pairs (%.0f s)", acc, n_pairs, time.perf_counter() - t0)
    with atomic_dir(out) as tmp:
        model.save(tmp)
        tok.save_pretrained(tmp)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
