"""Eval loss of a finetuned model on D_eval: `instructmining eval-loss`.

The quality label of a dataset (the paper's regression target) is the mean token-weighted
negative log-likelihood of the D_eval references given their prompts, response tokens only, under
the base model + the dataset's adapter. Token-weighted means every reference token counts once:
loss = sum of token NLLs / number of reference tokens, over all references of all instructions."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

from .errors import DataError, InstructMiningError
from .io import LOG, provenance, read_parquet, write_json

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


def sha256_file(path: Path) -> str:
    """Content id of a file (identifies the adapter weights in the result)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def eval_loss(model: Any, tok: Any, df: Any, template: str, batch_size: int, max_length: int,
              threads: int = 1) -> dict[str, Any]:
    """Token-weighted NLL of every reference; per instruction: its references' tokens pooled."""
    import torch

    from .prompts import collate, encode_example, format_prompt, token_nll

    torch.set_num_threads(threads)
    rows = list(df.itertuples(index=False))
    enc = [encode_example(tok, format_prompt(r.instruction, r.input, template), str(r.reference),
                          max_length) for r in rows]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].input_ids))  # length-sorted: less padding
    nll = [0.0] * len(enc)
    ntok = [0] * len(enc)
    model.eval()
    t0, seen = time.perf_counter(), 0
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            batch = collate([enc[i] for i in idx], tok.pad_token_id)
            per_ex, counts = token_nll(model, batch)
            for j, i in enumerate(idx):
                nll[i], ntok[i] = float(per_ex[j]), int(counts[j])
            seen += int(batch["attention_mask"].sum())
    elapsed = time.perf_counter() - t0
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
        "eval_tokens": seen, "eval_seconds": round(elapsed, 3),
        "eval_tokens_per_second": round(seen / elapsed, 1) if elapsed > 0 else None,
    }


def run(args: argparse.Namespace) -> int:
    """Score D_eval under base model (+ adapter) and write results/loss/{dataset}.json."""
    cfg = json.loads(args.config)
    unknown = sorted(set(cfg) - {"batch_size", "max_length"})
    if unknown:
        raise InstructMiningError(f"config key 'eval_loss.{unknown[0]}': unknown key")
    batch_size, max_length = int(cfg.get("batch_size", 8)), int(cfg.get("max_length", 512))
    meta: dict[str, Any] = {}
    adapter = Path(args.adapter) if args.adapter else None
    if adapter is not None:
        from .finetune import ADAPTER_META

        if not (adapter / ADAPTER_META).is_file():
            raise DataError(adapter, None, None, f"no {ADAPTER_META}: not an instructmining adapter")
        meta = json.loads((adapter / ADAPTER_META).read_text())
    spec = json.loads(args.model) if args.model else meta.get("model")
    if spec is None:
        raise InstructMiningError("eval-loss: give --model or --adapter")
    ft = meta.get("config", {})
    method, bits = ft.get("method", "lora"), ft.get("bits", 8)
    dtype, template = ft.get("compute_dtype", "float32"), ft.get("prompt_template", "alpaca")
    LOG.info("resolved arguments: %s", json.dumps({"eval": args.eval, "adapter": args.adapter, "model": spec,
             "method": method, "bits": bits, "compute_dtype": dtype, "template": template,
             "batch_size": batch_size, "max_length": max_length, "out": args.out}, sort_keys=True))
    from .basemodel import before_torch_import

    before_torch_import(args.threads)
    df = read_eval(Path(args.eval))
    from .basemodel import load_model
    from .fingerprint import fingerprint_id

    tok, model = load_model(spec, method if adapter else "lora", bits, dtype)
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

        model = PeftModel.from_pretrained(model, str(adapter))
    res = eval_loss(model, tok, df, template, batch_size, max_length, args.threads)
    LOG.info("loss %.4f over %d tokens (%d refs, %d instructions), %.0f tokens/s", res["loss"],
             res["num_tokens"], res["num_references"], res["num_instructions"],
             res["eval_tokens_per_second"] or 0)
    weights = adapter / "adapter_model.safetensors" if adapter else None
    res.update({
        "dataset": args.dataset or (adapter.parent.name if adapter else None),
        "base_model": spec, "base_model_fingerprint": base_fp, "method": method if adapter else "base",
        "adapter": str(adapter) if adapter else None,
        "adapter_sha256": sha256_file(weights) if weights and weights.is_file() else None,
        "provenance": provenance(seed=meta.get("seed"), config={"eval_loss": cfg, "finetune": ft}),
    })
    write_json(res, args.out)
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
    p.add_argument("--dataset", default=None, help="dataset name recorded in the result")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=run)
