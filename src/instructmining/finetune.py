"""QLoRA (or LoRA) finetune of the base model on one dataset: `instructmining finetune`.

A plain PyTorch loop (AdamW + linear warm-up/decay from transformers) rather than the HF Trainer:
importing Trainer costs seconds per job on CPU and the demo runs ~30 of them; the loop keeps what
Trainer gives that matters here: seeded data order, response-only loss, checkpoints every
`save_steps` with optimizer/scheduler/RNG state, and exact resume.

With --eval/--loss the job then scores D_eval with the model still in memory (evaluate.loss_record,
the code path of `eval-loss`): one base-model load per dataset instead of two. A rerun for a
changed eval setting resumes from the final checkpoint, trains 0 steps and only re-evaluates.

Phases: 1 resolve arguments · 2 load model · 3 data · 4 resume · 5 train · 6 save · 7 eval loss."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .determinism import deterministic_torch
from .errors import ConfigError, DataError, InstructMiningError, check_keys
from .evaluate import EvalJob, EvalLossConfig, loss_record, read_eval
from .fingerprint import fingerprint_id
from .io import LOG, atomic_dir, read_parquet, sha256_file, stable_hash, write_json
from .plan import finetune_seed

ADAPTER_META = "finetune_config.json"  # beside the adapter: how it was trained (eval reloads alike)
# Optimizer steps of each run left out of the timed window (allocator growth, kernel selection).
TIMING_WARMUP_STEPS = 2


@dataclass(frozen=True)
class FinetuneConfig:
    """The `finetune:` config block (src/instructmining/schemas/config.schema.yaml), one field per key."""

    method: str = "qlora"
    """qlora = bitsandbytes-quantized frozen base + LoRA; lora = full-precision base + LoRA."""
    bits: int = 8
    """QLoRA quantization: 4 (nf4, double-quantized) or 8 (LLM.int8; the paper)."""
    compute_dtype: str = "bfloat16"
    """Dtype of the matmuls: float32 on CPU (bfloat16 is 7-25x slower there)."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: float = 16
    """LoRA scaling numerator (update scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """Module names that get LoRA adapters."""
    epochs: float = 3
    """Passes over the dataset (the paper: 3); a fraction trains on a prefix of the last epoch."""
    batch_size: int = 8
    """Examples per micro-batch (the paper: 8)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    learning_rate: float = 2e-4
    """Peak learning rate (linear warm-up, then linear decay to 0)."""
    warmup_ratio: float = 0.03
    """Fraction of optimizer steps spent warming up."""
    max_length: int = 512
    """Max tokens per example, prompt + response (see prompts.encode_example)."""
    prompt_template: str = "alpaca"
    """Prompt template name (prompts.TEMPLATES)."""
    save_steps: int = 50
    """Checkpoint every N optimizer steps (the resume point after a kill)."""
    batching: str = "length_grouped"
    """length_grouped = seeded shuffle, then similar lengths batched together (little padding); random."""
    gradient_checkpointing: bool | None = None
    """Recompute activations in backward (less memory, ~30 % slower); null = on with a GPU only."""
    seed: int = 1
    """Base training seed; the dataset's seed is plan.finetune_seed(dataset, seed)."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneConfig:
        """Build from the config slice; an unknown key is an error naming it (no silent sinks)."""
        check_keys(d, [f.name for f in dataclasses.fields(cls)], "finetune")
        cfg = cls(**d)
        if cfg.method not in ("qlora", "lora"):
            raise ConfigError("finetune.method", f"{cfg.method!r} is not qlora or lora")
        if cfg.bits not in (4, 8):
            raise ConfigError("finetune.bits", f"{cfg.bits!r} is not 4 or 8")
        if cfg.batching not in ("length_grouped", "random"):
            raise ConfigError("finetune.batching", f"{cfg.batching!r} is not length_grouped or random")
        return cfg


def read_dataset(path: Path, tok: Any, cfg: FinetuneConfig) -> list[Any]:
    """The dataset's rows as encoded examples (prompt labels -100)."""
    from .prompts import encode_example, format_prompt

    df = read_parquet(path)
    for col in ("id", "instruction", "input", "output"):
        if col not in df.columns:
            raise DataError(path, None, col, "missing column")
    if df.empty:
        raise DataError(path, None, None, "dataset has no rows")
    out = []
    for row in df.itertuples(index=False):
        if not str(row.output).strip():
            raise DataError(path, f"id={row.id}", "output", "empty response")
        prompt = format_prompt(row.instruction, row.input, cfg.prompt_template)
        out.append(encode_example(tok, prompt, str(row.output), cfg.max_length))
    return out


# Examples per length-sorted group, in batches: transformers' group_by_length uses 50. Larger
# groups pad less but mix lengths less randomly across batches.
GROUP_BATCHES = 50


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int,
                  grouped: bool = True) -> list[list[int]]:
    """Batches of example indices for one epoch; the order depends only on (seed, epoch, lengths),
    so a resumed run replays exactly the batches an uninterrupted run would see.

    Random: a seeded permutation cut into batches. Length-grouped: the same permutation cut into
    groups of GROUP_BATCHES batches, each group sorted by length (longest first; ties keep the
    seeded order) and cut into batches, then the batches shuffled with the same generator. Every
    batch is padded only to its own longest example, so little compute goes to padding, and no
    example is mixed with another (per-example losses are those of the unpadded examples)."""
    import torch

    gen = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(len(lengths), generator=gen).tolist()
    if not grouped:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    group = batch_size * GROUP_BATCHES
    batches = []
    for g in range(0, len(order), group):
        chunk = sorted(order[g : g + group], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


# Bump when a change to this module changes what training computes: checkpoints made by an older
# trainer are then discarded instead of resumed.
TRAINER_VERSION = 2
CHECKPOINT_FILES = ("adapter.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt")


def _changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Why a checkpoint made with key parts `old` cannot resume a run with `new`, for the log."""
    if not old:
        return "made by an older trainer without a content key"
    what = {"base_model": "base model", "data": "dataset", "config": "finetune config",
            "seed": "seed", "trainer": "trainer version"}
    return "; ".join(f"{what.get(k, k)} changed: fingerprint {str(old.get(k))[:12]} != {str(new.get(k))[:12]}"
                     for k in sorted(new) if old.get(k) != new[k]) or "fingerprint changed"


def _checkpoint_problem(d: Path) -> str | None:
    """Why checkpoint folder d is unusable (unreadable state, missing file, checksum mismatch)."""
    try:
        state = json.loads((d / "trainer_state.json").read_text())
        if "sha256" not in state:  # an older trainer's checkpoint: the fingerprint check discards it
            return None
        sums = state["sha256"]
        for name in CHECKPOINT_FILES:
            if not (d / name).is_file():
                return f"{name} is missing"
            if sums.get(name) != sha256_file(d / name):
                return f"{name} fails its sha256 checksum"
    except (OSError, ValueError, AttributeError) as exc:
        return f"trainer_state.json is unreadable ({exc})"
    return None


def last_checkpoint(ckpt_dir: Path, fingerprint: str, parts: dict[str, Any] | None = None) -> Path | None:
    """The newest intact checkpoint made with this fingerprint. Stale ones (another base model,
    dataset, config or trainer version) and corrupt ones (unreadable, missing a file or failing a
    checksum) are logged naming the folder and removed, so training restarts from an older
    checkpoint or from step 0."""
    if not ckpt_dir.is_dir():
        return None
    found = []
    for d in ckpt_dir.glob("step-*"):
        if not d.name.split("-")[1].isdigit() or not (d / "trainer_state.json").exists():
            continue
        problem = _checkpoint_problem(d)
        if problem is not None:
            LOG.warning("corrupt checkpoint %s: %s; removing it", d, problem)
            shutil.rmtree(d)
            continue
        state = json.loads((d / "trainer_state.json").read_text())
        if state.get("fingerprint") != fingerprint:
            LOG.warning("removing stale checkpoint %s (%s); retraining from step 0",
                        d, _changed(state.get("key_parts") or {}, parts or {}))
            shutil.rmtree(d)
            continue
        found.append((int(d.name.split("-")[1]), d))
    return max(found)[1] if found else None


def finetune(data: Path, out: Path, checkpoints: Path, model: dict[str, Any], cfg: FinetuneConfig, *,
             name: str | None = None, threads: int = 1, eval: EvalJob | None = None) -> dict[str, Any]:
    """Finetune the base model `model` (a model spec) on the dataset file `data`; write the adapter
    (+ train_metrics.json, finetune_config.json) atomically to `out`, checkpoints to `checkpoints`.

    `name`: the dataset name, which seeds the training (plan.finetune_seed; default: data's stem).
    `eval`: score D_eval with the trained model still in memory and write its loss record (one
    base-model load for both). Returns the train metrics."""
    # --- 1 resolve arguments ------------------------------------------------------------
    spec, ckpt_dir = model, checkpoints
    dataset = name or data.stem
    seed = finetune_seed(dataset, cfg.seed)
    LOG.info("resolved arguments: %s", json.dumps({
        "dataset": dataset, "data": str(data), "out": str(out), "checkpoints": str(ckpt_dir),
        "model": spec, "seed": seed, "threads": threads, "config": dataclasses.asdict(cfg),
        "eval": str(eval.data) if eval else None, "eval_config": dataclasses.asdict(eval.cfg) if eval else None,
        "loss": str(eval.out) if eval else None}, sort_keys=True))
    from .basemodel import before_torch_import

    before_torch_import(threads)
    import peft
    import torch
    from transformers import get_linear_schedule_with_warmup

    from .basemodel import load_model
    from .prompts import collate, token_nll
    from .speed import Throughput, lora_step_flops, matmul_peak_flops, peak_memory_bytes, reset_peak_memory

    deterministic_torch(threads)
    torch.manual_seed(seed)
    # --- 2 load model -------------------------------------------------------------------
    tok, model = load_model(spec, cfg.method, cfg.bits, cfg.compute_dtype)
    base_fp = fingerprint_id(spec)
    LOG.info("base model fingerprint: %s (%s)", base_fp, spec)
    model = add_lora(model, cfg)
    LOG.info("method ran: %s; trainable parameters: %d", f"QLoRA {cfg.bits}-bit"
             if cfg.method == "qlora" else "LoRA (full-precision base)",
             sum(p.numel() for p in model.parameters() if p.requires_grad))
    # --- 3 data -------------------------------------------------------------------------
    examples = read_dataset(data, tok, cfg)
    eval_df = read_eval(eval.data) if eval else None  # a bad D_eval fails before training
    per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total_micro = math.ceil(cfg.epochs * per_epoch)
    total_steps = math.ceil(total_micro / cfg.grad_accum)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    sched = get_linear_schedule_with_warmup(opt, round(cfg.warmup_ratio * total_steps), total_steps)
    # --- 4 resume -----------------------------------------------------------------------
    # Keyed by content, not names: a retrained base folder at the same path, a changed dataset or
    # a newer trainer must restart from step 0, never resume someone else's optimizer state.
    parts = {"base_model": base_fp, "config": stable_hash(dataclasses.asdict(cfg)), "seed": seed,
             "data": stable_hash([e.input_ids for e in examples]), "trainer": TRAINER_VERSION}
    fingerprint = stable_hash(parts)
    step, history = 0, []
    ckpt = last_checkpoint(ckpt_dir, fingerprint, parts)
    if ckpt is not None:
        from safetensors.torch import load_file

        state = json.loads((ckpt / "trainer_state.json").read_text())
        peft.set_peft_model_state_dict(model, load_file(str(ckpt / "adapter.safetensors")))
        opt.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        sched.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
        rng = torch.load(ckpt / "rng.pt", weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        step, history = state["step"], state["loss_history"]
        LOG.info("resumed from checkpoint %s at step %d/%d", ckpt, step, total_steps)
    else:
        LOG.info("no checkpoint in %s: training from step 0/%d", ckpt_dir, total_steps)
    # --- 5 train ------------------------------------------------------------------------
    model.train()
    base_config = model.get_base_model().config
    device = str(model.get_base_model().lm_head.weight.device)
    peak_flops = matmul_peak_flops(device, cfg.compute_dtype)  # once per job: the ceiling
    reset_peak_memory(device)
    meter = Throughput(device, TIMING_WARMUP_STEPS)
    micro = step * cfg.grad_accum
    lengths = [len(e.input_ids) for e in examples]
    batches = [b for ep in range(math.ceil(cfg.epochs)) for b in
               epoch_batches(lengths, cfg.batch_size, seed, ep, cfg.batching == "length_grouped")]
    batches = batches[:total_micro]
    while step < total_steps:
        window = batches[micro : micro + cfg.grad_accum]
        meter.begin()
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for idx in window:
            batch = collate([examples[i] for i in idx], tok.pad_token_id)
            per_ex, ntok = token_nll(model, batch)
            loss = per_ex.sum() / ntok.sum().clamp(min=1)  # token-weighted within the batch
            (loss / len(window)).backward()
            loss_sum += loss.item() / len(window)
            rows = [lengths[i] for i in idx]
            meter.add(sum(rows), batch["input_ids"].numel(),
                      lora_step_flops(base_config, rows, sum(examples[i].num_response_tokens for i in idx)))
        if not math.isfinite(loss_sum):
            raise InstructMiningError(f"{dataset}: training loss is {loss_sum} at step {step + 1}")
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        meter.end_step()
        step, micro = step + 1, micro + len(window)
        history.append(round(loss_sum, 6))
        if step % cfg.save_steps == 0 or step == total_steps:
            save_checkpoint(ckpt_dir, step, model, opt, sched, {"fingerprint": fingerprint, "key_parts": parts},
                            history, peft.get_peft_model_state_dict)
        if step % 10 == 0 or step == total_steps:
            LOG.info("step %d/%d loss %.4f", step, total_steps, loss_sum)
    speed = meter.summary(peak_flops)
    speed["peak_memory_bytes"] = peak_memory_bytes(device)
    # --- 6 save -------------------------------------------------------------------------
    metrics = {"dataset": dataset, "base_model_fingerprint": base_fp, "method": cfg.method,
               "bits": cfg.bits if cfg.method == "qlora" else None, "examples": len(examples),
               "steps": total_steps, "resumed_from_step": state["step"] if ckpt is not None else 0,
               "final_loss": history[-1] if history else None, "loss_history": history,
               "gradient_checkpointing": use_gradient_checkpointing(cfg), **speed}
    meta = {"dataset": dataset, "seed": seed, "model": spec, "base_model_fingerprint": base_fp,
            "trainer_version": TRAINER_VERSION, "config": dataclasses.asdict(cfg)}
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp))
        (tmp / ADAPTER_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        write_json(metrics, tmp / "train_metrics.json")
    LOG.info("wrote %s: %s real tokens/s (%s padded) after %d warm-up steps, padding waste %s, "
             "%s of the measured matmul peak, peak memory %.2f GiB", out, speed["real_tokens_per_second"],
             speed["padded_tokens_per_second"], TIMING_WARMUP_STEPS, speed["padding_waste"],
             speed["fraction_of_matmul_peak"], speed["peak_memory_bytes"] / 2**30)
    # --- 7 eval loss --------------------------------------------------------------------
    if eval is not None:
        opt.zero_grad(set_to_none=True)  # free the last step's gradients before scoring
        write_json(loss_record(model, tok, eval_df, eval.cfg, meta, spec, base_fp, out, dataset, threads,
                               peak_flops), eval.out)
        LOG.info("wrote %s", eval.out)
    return metrics


def _cmd_finetune(args: argparse.Namespace) -> int:
    """`finetune`: parse the flags, then finetune."""
    if (args.eval is None) != (args.loss is None):
        raise InstructMiningError("finetune: give --eval and --loss together (or neither)")
    # Both configs are checked before anything loads: an unknown key fails now, not after training.
    cfg = FinetuneConfig.from_dict(json.loads(args.config))
    eval_cfg = EvalLossConfig.from_dict(json.loads(args.eval_config))
    job = EvalJob(Path(args.eval), Path(args.loss), eval_cfg) if args.eval else None
    finetune(Path(args.data), Path(args.out), Path(args.checkpoints), json.loads(args.model), cfg,
             name=args.name, threads=args.threads, eval=job)
    return 0


def use_gradient_checkpointing(cfg: FinetuneConfig) -> bool:
    """The config's choice; unset: on with a GPU (a 7B model's activations need the memory), off on
    CPU (where it only costs the recompute time)."""
    if cfg.gradient_checkpointing is not None:
        return cfg.gradient_checkpointing
    import torch

    return torch.cuda.is_available()


def add_lora(model: Any, cfg: FinetuneConfig) -> Any:
    """The base model (frozen, quantized or not) wrapped with trainable LoRA adapters.

    Not peft.prepare_model_for_kbit_training: it upcasts every non-quantized weight (embeddings,
    norms, lm_head) to float32, so all activations then run in float32 — 1.4-2.9x slower on an
    H200 and the 8-bit out-of-memory at 4 x 2048 (/work/shared/NOTES.md, issue #15). What needs
    float32 for stability has it without that: LlamaRMSNorm normalizes in float32 internally,
    prompts.token_nll takes the log-softmax of float32 logits, and peft keeps the LoRA weights in
    float32 (autocast_adapter_dtype) so small AdamW updates are not rounded away in bfloat16."""
    import peft

    for p in model.parameters():
        p.requires_grad_(False)
    if use_gradient_checkpointing(cfg):
        # Non-reentrant checkpointing back-propagates into LoRA weights even though the frozen
        # embeddings' output does not require grad (the reentrant variant needed input grads).
        # transformers 5.x: gradient_checkpointing_enable is a deprecated alias of this call (same
        # default: every layer checkpointed, activations kept on the device).
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    lora = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                           target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
    return peft.get_peft_model(model, lora)


def save_checkpoint(ckpt_dir: Path, step: int, model: Any, opt: Any, sched: Any, key: dict[str, Any],
                    history: list[float], state_dict_fn: Any, keep: int = 2) -> None:
    """Write checkpoints/step-N atomically (adapter, optimizer, scheduler, RNG, and their sha256 in
    trainer_state.json); keep the newest. `key`: the fingerprint and its parts."""
    import torch
    from safetensors.torch import save_file

    with atomic_dir(ckpt_dir / f"step-{step}") as tmp:
        save_file({k: v.contiguous() for k, v in state_dict_fn(model).items()},
                  str(tmp / "adapter.safetensors"))
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
        torch.save(sched.state_dict(), tmp / "scheduler.pt")
        # Dropout masks continue identically after a resume (the CUDA generators on a GPU).
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        torch.save({"cpu": torch.get_rng_state(), "cuda": cuda}, tmp / "rng.pt")
        sums = {name: sha256_file(tmp / name) for name in CHECKPOINT_FILES}
        (tmp / "trainer_state.json").write_text(json.dumps(
            {"step": step, **key, "sha256": sums, "loss_history": history}))
    LOG.info("checkpoint step %d -> %s", step, ckpt_dir / f"step-{step}")
    for old in sorted(ckpt_dir.glob("step-*"), key=lambda d: int(d.name.split("-")[1]))[:-keep]:
        shutil.rmtree(old)


def register(sub: Any) -> None:
    """Add the `finetune` sub-command."""
    p = sub.add_parser("finetune", help="QLoRA/LoRA finetune of the base model on one dataset",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="results/datasets/{dataset}.parquet")
    p.add_argument("--model", required=True, help="base model spec as JSON ({path|hub|package,...})")
    p.add_argument("--config", required=True, help="the finetune: config block as JSON")
    p.add_argument("--out", required=True, help="adapter folder (written atomically)")
    p.add_argument("--checkpoints", required=True, help="checkpoint folder (kept across reruns)")
    p.add_argument("--name", default=None, help="dataset name, seeds the training (default: --data's file stem)")
    p.add_argument("--eval", default=None, help="results/eval/eval.parquet: score it after training")
    p.add_argument("--eval-config", default="{}", help="the eval_loss: config block as JSON")
    p.add_argument("--loss", default=None, help="results/loss/{dataset}.json (with --eval)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=_cmd_finetune)
