"""Model specs -> loadable models. One loader for every scorer.

A spec is the config object {hub, revision, path, package, subdir, kind, gguf_file}: a hub id
(paper), a local folder (e.g. the workflow-built results/models/base, or a GGUF the workflow
converted into `path`), or a folder inside an installed pip package (the demo's MiniLM). Load failures raise ScorerError naming the spec."""

from __future__ import annotations

from typing import Any

from ..errors import InstructMiningError, ScorerError
from ..model_spec import package_dir  # noqa: F401  (tests and scorers import it from here)
from ..model_spec import resolve_model as _resolve

SPEC_KEYS = {"hub", "revision", "path", "package", "subdir", "kind", "gguf_file"}


def check_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Reject unknown keys and specs that name no model (misspellings must fail)."""
    if not isinstance(spec, dict):
        raise ScorerError(f"model spec must be an object, got {spec!r}")
    extra = set(spec) - SPEC_KEYS
    if extra:
        raise ScorerError(f"model spec has unknown key(s) {sorted(extra)}: {spec}")
    if not (spec.get("hub") or spec.get("path") or spec.get("package")):
        raise ScorerError(f"model spec names no model (set hub, path or package): {spec}")
    return spec


def resolve_model(spec: dict[str, Any]) -> str:
    """A hub id or a local folder for the spec (see model_spec.resolve_model); a scorer's missing
    model is a ScorerError."""
    check_spec(spec)
    try:
        return _resolve(spec)[0]
    except InstructMiningError as exc:
        raise ScorerError(str(exc)) from None


def model_identity(spec: dict[str, Any]) -> dict[str, Any]:
    """{model, revision} for the cache key: hub id + resolved commit, or the package/path + a
    content fingerprint of the folder (the path alone would survive a retrain); see
    instructmining.fingerprint, the one place that fingerprints models."""
    from ..fingerprint import model_fingerprint

    check_spec(spec)
    resolve_model(spec)  # a missing folder is a ScorerError naming the spec
    return model_fingerprint(spec)


def _load(what: str, spec: dict[str, Any], loader: Any, **kwargs: Any) -> Any:
    where = resolve_model(spec)
    try:
        return loader.from_pretrained(where, revision=spec.get("revision") or None, **kwargs)
    except Exception as exc:  # any load failure is a user-fixable scorer error
        raise ScorerError(f"cannot load {what} from {where!r} (spec {spec}): {exc}") from exc


def load_tokenizer(spec: dict[str, Any]) -> Any:
    """The spec's tokenizer (AutoTokenizer)."""
    from transformers import AutoTokenizer

    return _load("tokenizer", spec, AutoTokenizer)


def load_model(spec: dict[str, Any], kind: str | None = None, device: str = "cpu") -> Any:
    """The spec's model in eval mode: kind causal, seq2seq, reward (sequence classification) or
    encoder; `kind` overrides the spec's."""
    import torch
    import transformers as tf

    kind = kind or spec.get("kind") or "causal"
    classes = {
        "causal": tf.AutoModelForCausalLM,
        "seq2seq": tf.AutoModelForSeq2SeqLM,
        "reward": tf.AutoModelForSequenceClassification,
        "encoder": tf.AutoModel,
    }
    if kind not in classes:
        raise ScorerError(f"model kind {kind!r} cannot be loaded here (spec {spec})")
    # bfloat16 on GPUs (a 7B judge fits and runs at tensor-core speed); float32 on CPU, where
    # bfloat16 matmuls are many times slower. Scores are taken in float32 either way.
    extra = {"dtype": torch.bfloat16} if str(device).startswith("cuda") else {}
    model = _load(f"{kind} model", spec, classes[kind], **extra)
    return model.to(device).eval()


def load_sentence(spec: dict[str, Any], device: str = "cpu") -> Any:
    """A SentenceTransformer for the spec (embeddings for KNN-i)."""
    from sentence_transformers import SentenceTransformer

    where = resolve_model(spec)
    try:
        return SentenceTransformer(where, device=device, revision=spec.get("revision") or None)
    except Exception as exc:
        raise ScorerError(f"cannot load sentence model from {where!r} (spec {spec}): {exc}") from exc


def resolve_device(device: str) -> str:
    """`auto` -> cuda when a GPU is visible (SLURM GPU jobs), else cpu; other values unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads(threads: int | None) -> None:
    """Cap torch's intra-op threads (rules pass their `threads`; the machine may be shared)."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))


def count_parameters(model: Any, skip_embeddings: bool = True) -> int:
    """Parameters that cost FLOPs per token (embedding lookups are free), for FLOP estimates."""
    total = 0
    for name, p in model.named_parameters():
        if skip_embeddings and ("embed" in name or "wte" in name or "wpe" in name):
            continue
        total += p.numel()
    return total
