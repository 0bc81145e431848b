"""Which modules LoRA can target, known before any weight is loaded.

`finetune.target_modules` names the linear layers peft wraps with adapters; a typo used to surface
as a peft traceback at the first finetune, hours into a run. The base model's architecture is
found cheaply (its config.json `model_type`, the GGUF header's `general.architecture`, or the
project's own Llama for `source: pretrain`) and the names are checked against that architecture's
linear modules (the names in transformers' modeling files). An architecture not listed here, or
a hub model whose config.json is not in the local cache, is not checked: peft reports it then.
Standard library only (the Snakefile calls this at parse time)."""

from __future__ import annotations

import difflib
import json
import struct
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .model_spec import installed_package_dir

_LLAMA = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_NEOX = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")
LINEAR_MODULES: dict[str, tuple[str, ...]] = {
    "llama": _LLAMA, "mistral": _LLAMA, "mixtral": ("q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3"),
    "qwen2": _LLAMA, "qwen3": _LLAMA, "gemma": _LLAMA, "gemma2": _LLAMA, "gemma3": _LLAMA,
    "gemma3_text": _LLAMA, "smollm3": _LLAMA,
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    "gpt2": ("c_attn", "c_proj", "c_fc"), "gpt_neox": _NEOX, "falcon": _NEOX, "bloom": _NEOX,
    "opt": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
}
# Every causal LM also has its output projection.
COMMON = ("lm_head",)


def gguf_architecture(path: Path) -> str | None:
    """`general.architecture` from a GGUF header (read directly: gguf.GGUFReader takes ~5 s here).
    The header is magic, version, tensor count, key/value count, then key/value pairs; writers put
    general.architecture first. None if it is not among the leading string-valued keys."""
    string_type = 8
    try:
        with path.open("rb") as fh:
            magic, _version, _tensors, kv_count = struct.unpack("<4sIQQ", fh.read(24))
            if magic != b"GGUF":
                return None
            for _ in range(min(kv_count, 16)):
                (klen,) = struct.unpack("<Q", fh.read(8))
                key = fh.read(klen).decode("utf-8", "replace")
                (vtype,) = struct.unpack("<I", fh.read(4))
                if vtype != string_type:
                    return None
                (vlen,) = struct.unpack("<Q", fh.read(8))
                value = fh.read(vlen).decode("utf-8", "replace")
                if key == "general.architecture":
                    return value
    except (OSError, struct.error):
        return None
    return None


def _config_json_type(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def base_architecture(base_model: dict[str, Any], base: Path) -> tuple[str | None, str]:
    """(model_type or None if unknown offline, where it was read) of the configured base model."""
    source, spec = base_model["source"], base_model.get("model") or {}
    if source == "pretrain":
        return "llama", "source: pretrain builds a Llama (instructmining.pretrain)"
    if source == "gguf":
        folder = installed_package_dir(spec["package"]) if spec.get("package") else None
        if folder is not None and base_model.get("gguf_file"):
            gguf = folder / (spec.get("subdir") or "") / base_model["gguf_file"]
            return gguf_architecture(gguf), str(gguf)
        return None, "gguf"
    if spec.get("path"):
        path = Path(spec["path"])
        cfg = (path if path.is_absolute() else base / path) / "config.json"
        return _config_json_type(cfg), str(cfg)
    if spec.get("package"):
        folder = installed_package_dir(spec["package"])
        cfg = folder / (spec.get("subdir") or "") / "config.json" if folder else None
        return (_config_json_type(cfg), str(cfg)) if cfg else (None, spec["package"])
    if spec.get("hub"):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec["hub"], "config.json", revision=spec.get("revision"))
        return (_config_json_type(Path(cached)), spec["hub"]) if isinstance(cached, str) else (None, spec["hub"])
    return None, "unknown"


def check_target_modules(config: dict[str, Any], base: Path) -> None:
    """ConfigError naming finetune.target_modules[j] when a name is no linear module of the base
    model's architecture (peft matches a name against the last dotted part of module paths)."""
    arch, where = base_architecture(config["base_model"], base)
    known = LINEAR_MODULES.get(arch or "")
    if known is None:
        return
    allowed = known + COMMON
    for j, name in enumerate(config["finetune"]["target_modules"]):
        last = name.rsplit(".", 1)[-1]
        if last not in allowed:
            close = difflib.get_close_matches(last, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"finetune.target_modules[{j}]",
                              f"{name!r} is not a linear module of the base model ({arch}, from {where}); "
                              f"{hint}choose from {', '.join(allowed)}")
