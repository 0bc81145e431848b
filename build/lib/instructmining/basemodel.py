"""Where the base model is and how it is loaded (shared by finetune and eval-loss).

QLoRA loads the frozen base through bitsandbytes (4-bit nf4 or 8-bit); eval-loss reloads it the
same way the adapter was trained, so the loss measures the model that was trained."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import model_spec
from .errors import InstructMiningError
from .io import LOG


def before_torch_import(threads: int) -> None:
    """Call before `import torch`: with several threads, let idle OpenMP workers sleep.

    OpenMP's default busy-waiting made 2-thread pretraining on a shared 2-core machine 7x slower
    per step (0.82 s vs 0.12 s with OMP_WAIT_POLICY=PASSIVE, measured); it must be set before the
    OpenMP runtime starts, i.e. before torch is imported."""
    if threads > 1:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def resolve_model(spec: dict[str, Any]) -> tuple[str, str | None]:
    """A model spec (schema `definitions.model`) -> (folder or hub id, revision); a built base
    model folder must hold config.json."""
    if spec.get("path") and not (Path(spec["path"]) / "config.json").is_file():
        raise InstructMiningError(f"model folder {spec['path']}: no config.json (is the base model built?)")
    return model_spec.resolve_model(spec)


def load_model(spec: dict[str, Any], method: str, bits: int, compute_dtype: str) -> tuple[Any, Any]:
    """Tokenizer and causal LM; quantized with bitsandbytes when method == qlora."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    name, revision = resolve_model(spec)
    dtype = getattr(torch, compute_dtype)
    quant = None
    if method == "qlora":
        quant = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
            if bits == 4 else BitsAndBytesConfig(load_in_8bit=True)
        )
    device_map = "auto" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(name, revision=revision)
    if tok.pad_token_id is None:  # LLaMA ships none; padding is masked out anyway
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        name, revision=revision, dtype=dtype, quantization_config=quant, device_map=device_map
    )
    LOG.info("loaded %s (%s%s, compute %s)", name, method, f" {bits}-bit" if quant else "", compute_dtype)
    return tok, model
