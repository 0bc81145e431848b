"""Eval loss of a finetuned model on D_eval: `instructmining eval-loss`.

The quality label of a dataset (the paper's regression target) is the mean token-weighted
negative log-likelihood of the D_eval references given their prompts, response tokens only, under
the base model + the dataset's adapter. Token-weighted means every reference token counts once:
loss = sum of token NLLs / number of reference tokens, over all references of all instructions.

In the workflow the finetune job scores D_eval itself with the model it just trained
(finetune.finetune -> loss_record), which saves the second base-model load per dataset (issue #15: a
7B load is ~20-43 s on an H200); this command (evaluate_adapter) scores a saved adapter (users, checks)
through the same loss_record, so both give the same losses."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .determinism import deterministic_torch
from .errors import DataError, InstructMiningError, check_keys
from .io import LOG, provenance, read_parquet, sha256_file, write_json

EVAL_COLUMNS = ("eval_id", "instruction", "input", "reference")


def read_eval(path: Path) -> Any:
    """D_eval rows (one per reference), checked for the columns and empty references."""
    df = read_parquet(path)
    for col in EVAL_COLUMNS:
        if col not in df.columns:
            raise DataError(path, None, col, "missing column")
    if df.empty:
        raise DataError(path, None, None, "no eval rows")
    for row in df.itertuples(index=False):
        if not str(row.reference).strip():
            raise DataError(path, f"eval_id={row.eval_id}", "reference", "empty reference")
    return df


@dataclass(frozen=True)
class EvalLossConfig:
    """The `eval_loss:` config block (src/instructmining/schemas/config.schema.yaml), one field per key."""

    batch_size: int = 8
    """Eval batch (references per forward pass, length-sorted)."""
    max_length: int = 512
    """Max tokens per prompt + reference."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalLossConfig:
        """Build from the config slice; an unknown key is an error naming it (no silent sinks)."""
        check_keys(d, [f.name for f in dataclasses.fields(cls)], "eval_loss")
        return cls(**{k: int(v) for k, v in d.items()})


@dataclass(frozen=True)
class EvalJob:
    """Score D_eval after training (finetune's in-job eval): the eval rows, settings, and where the
    results/loss/{dataset}.json record goes."""

    data: Path
    """results/eval/eval.parquet."""
    out: Path
    """results/loss/{dataset}.json."""
    cfg: EvalLossConfig = EvalLossConfig()
    """The eval_loss: block."""


def eval_loss(model: Any, tok: Any, df: Any, template: str, batch_size: int, max_length: int,
              threads: int = 1, peak_flops: float | None = None) -> dict[str, Any]:
    """Token-weighted NLL of every reference; per instruction: its references' tokens pooled.

    Also the scoring's throughput (speed.Throughput over every batch: eval batches are sorted
    short to long, so leaving the first ones out as warm-up would skew the rate toward long
    batches) and peak memory, under "speed". `peak_flops`: the device's measured matmul peak when
    the caller already has it (the finetune job), else measured here."""
    import torch

    from .prompts import collate, encode_example, format_prompt, token_nll
    from .speed import Throughput, lora_step_flops, matmul_peak_flops, peak_memory_bytes, reset_peak_memory

    deterministic_torch(threads)
    rows = list(df.itertuples(index=False))
    enc = [encode_example(tok, format_prompt(r.instruction, r.input, template), str(r.reference),
                          max_length) for r in rows]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].input_ids))  # length-sorted: less padding
    nll = [0.0] * len(enc)
    ntok = [0] * len(enc)
    model.eval()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    device = str(base.lm_head.weight.device)
    if peak_flops is None:
        peak_flops = matmul_peak_flops(device, str(base.lm_head.weight.dtype).removeprefix("torch."))
    reset_peak_memory(device)
    meter = Throughput(device, warmup=0)
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            meter.begin()
            batch = collate([enc[i] for i in idx], tok.pad_token_id)
            per_ex, counts = token_nll(model, batch)
            for j, i in enumerate(idx):
                nll[i], ntok[i] = float(per_ex[j]), int(counts[j])
            lengths = [len(enc[i].input_ids) for i in idx]
            meter.add(sum(lengths), batch["input_ids"].numel(),
                      lora_step_flops(base.config, lengths, sum(ntok[i] for i in idx), train=False))
            meter.end_step()
    speed = meter.summary(peak_flops)
    speed["peak_memory_bytes"] = peak_memory_bytes(device)
    per: dict[Any, list[float]] = {}
    for r, s, n in zip(rows, nll, ntok, strict=True):
        acc = per.setdefault(r.eval_id, [0.0, 0])
        acc[0], acc[1] = acc[0] + s, acc[1] + n
    total, tokens = sum(nll), sum(ntok)
    if tokens == 0:
        raise InstructMiningError("eval-loss: no reference tokens were scored")
    loss = total / tokens
    if not math.isfinite(loss):
        bad = [r.eval_id for r, s in zip(rows, nll, strict=True) if not math.isfinite(s)][:5]
        raise InstructMiningError(f"eval-loss: loss is {loss} (non-finite NLL at eval_id {bad})")
    return {
        "loss": loss, "num_tokens": tokens, "num_references": len(rows), "num_instructions": len(per),
        "per_instruction": [{"eval_id": k, "loss": v[0] / v[1], "num_tokens": v[1]}
                            for k, v in sorted(per.items(), key=lambda kv: str(kv[0]))],
        "speed": speed,
    }


def loss_record(model: Any, tok: Any, df: Any, cfg: EvalLossConfig, meta: dict[str, Any],
                spec: dict[str, Any], base_fp: str, adapter: Path | None, dataset: str | None,
                threads: int = 1, peak_flops: float | None = None) -> dict[str, Any]:
    """The results/loss/{dataset}.json record of `model` (base + adapter, already loaded): the
    loss of eval_loss plus what it measured. The one path of both `finetune` (its model still in
    memory) and `eval-loss` (reloaded from `adapter`). `meta`: the adapter's ADAPTER_META ({} for
    the bare base model); `adapter`: the saved adapter folder the loss belongs to."""
    ft = meta.get("config", {})
    res = eval_loss(model, tok, df, ft.get("prompt_template", "alpaca"), cfg.batch_size, cfg.max_length,
                    threads, peak_flops)
    LOG.info("loss %.4f over %d tokens (%d refs, %d instructions), %s real tokens/s, peak memory %.2f GiB",
             res["loss"], res["num_tokens"], res["num_references"], res["num_instructions"],
             res["speed"]["real_tokens_per_second"], res["speed"]["peak_memory_bytes"] / 2**30)
    weights = adapter / "adapter_model.safetensors" if adapter else None
    res.update({
        "dataset": dataset or (adapter.parent.name if adapter else None),
        "base_model": spec, "base_model_fingerprint": base_fp,
        "method": ft.get("method", "lora") if adapter else "base",
        "adapter": str(adapter) if adapter else None,
        "adapter_sha256": sha256_file(weights) if weights and weights.is_file() else None,
        "provenance": provenance(seed=meta.get("seed"), config={"eval_loss": dataclasses.asdict(cfg), "finetune": ft}),
    })
    return res


def evaluate_adapter(eval: Path, out: Path, cfg: EvalLossConfig, *, adapter: Path | None = None,
                     model: dict[str, Any] | None = None, name: str | None = None,
                     threads: int = 1) -> dict[str, Any]:
    """Score D_eval (`eval`) under the base model + `adapter` (None: the bare base model) and write
    the results/loss/{dataset}.json record to `out`; returns it.

    `model`: the base model spec (default: the one the adapter was trained on); `name`: the
    dataset name recorded (default: the adapter folder's parent's name). Refuses an adapter
    trained on another base-model fingerprint."""
    meta: dict[str, Any] = {}
    if adapter is not None:
        from .finetune import ADAPTER_META

        if not (adapter / ADAPTER_META).is_file():
            raise DataError(adapter, None, None, f"no {ADAPTER_META}: not an instructmining adapter")
        meta = json.loads((adapter / ADAPTER_META).read_text())
    spec = model if model is not None else meta.get("model")
    if spec is None:
        raise InstructMiningError("eval-loss: give --model or --adapter")
    ft = meta.get("config", {})
    method, bits = ft.get("method", "lora"), ft.get("bits", 8)
    dtype, template = ft.get("compute_dtype", "float32"), ft.get("prompt_template", "alpaca")
    LOG.info("resolved arguments: %s", json.dumps({
        "eval": str(eval), "adapter": str(adapter) if adapter else None, "model": spec, "method": method,
        "bits": bits, "compute_dtype": dtype, "template": template, "batch_size": cfg.batch_size,
        "max_length": cfg.max_length, "out": str(out)}, sort_keys=True))
    from .basemodel import before_torch_import

    before_torch_import(threads)
    df = read_eval(eval)
    from .basemodel import load_model
    from .fingerprint import fingerprint_id

    tok, loaded = load_model(spec, method if adapter else "lora", bits, dtype)
    base_fp = fingerprint_id(spec)
    trained_on = meta.get("base_model_fingerprint")
    if adapter is not None and trained_on != base_fp:
        # The base changed under the adapter (retrained at the same path): the loss would describe
        # a model nobody trained. Refuse instead of writing a plausible wrong number.
        raise InstructMiningError(
            f"{adapter}: adapter was trained on base model fingerprint {trained_on or 'unknown (older trainer)'}, "
            f"but {spec} now has fingerprint {base_fp}: rerun its finetune (delete {adapter}, or "
            "`snakemake --forcerun finetune`)")
    if adapter is not None:
        from peft import PeftModel

        loaded = PeftModel.from_pretrained(loaded, str(adapter))
    record = loss_record(loaded, tok, df, cfg, meta, spec, base_fp, adapter, name, threads)
    write_json(record, out)
    return record


def _cmd_eval_loss(args: argparse.Namespace) -> int:
    """`eval-loss`: parse the flags, then evaluate_adapter."""
    evaluate_adapter(Path(args.eval), Path(args.out), EvalLossConfig.from_dict(json.loads(args.config)),
                     adapter=Path(args.adapter) if args.adapter else None,
                     model=json.loads(args.model) if args.model else None, name=args.name,
                     threads=args.threads)
    return 0


def register(sub: Any) -> None:
    """Add the `eval-loss` sub-command."""
    p = sub.add_parser("eval-loss", help="token-weighted NLL of the D_eval references (finetuned model)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval", required=True, help="results/eval/eval.parquet")
    p.add_argument("--adapter", default=None, help="adapter folder from `finetune` (none: the base model)")
    p.add_argument("--model", default=None, help="base model spec as JSON (default: the adapter's)")
    p.add_argument("--config", default="{}", help="the eval_loss: config block as JSON")
    p.add_argument("--out", required=True, help="results/loss/{dataset}.json")
    p.add_argument("--name", default=None, help="dataset name recorded in the result (default: the adapter's folder)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=_cmd_eval_loss)
