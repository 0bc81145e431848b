"""Benchmark: the project's `instructmining finetune` against a plain dense transformers + peft loop.

Run: python benchmarks/bench_finetune.py                      # CPU, small Llama, ~1 min
     python benchmarks/bench_finetune.py --device cuda --shape llama-7b --method lora
     python benchmarks/bench_finetune.py --device cuda --shape llama-7b --method qlora --bits 4

Both sides train the same model (random init: speed does not depend on the weights), the same
examples (real Alpaca rows, encoded by prompts.encode_example) with the same LoRA, optimizer,
batch size and gradient-checkpointing setting, in one process, one after the other:
- project: `instructmining finetune` itself (in-process); its train_metrics.json gives real
  (unpadded) tokens/s over the steps after its timing warm-up.
- plain: the same examples' tokens concatenated and cut into dense rows (batch_size rows, as many
  tokens per batch as the project's average batch), `model(input_ids, labels=input_ids)`, AdamW;
  no padding at all, so it is the ceiling a padding-free loop could reach.
Each side runs `--repeats` times alternately (a shared machine only slows things down) and the best
is kept. Also prints the padding waste (padded / real tokens) of random vs length-grouped batches on
the demo's pool (config/config.yaml sources, its batch size and max length, a BPE tokenizer of the
demo's vocabulary size trained here). Prints, LAST, project/plain real tokens/s."""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models (Alpaca rows, parquet writer)

SHAPES = {  # LlamaConfig fields; llama-7b is LLaMA-7B's (6.74 B parameters)
    "small": {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 4,
              "num_attention_heads": 4, "vocab_size": 2048},
    "llama-7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                 "num_attention_heads": 32, "vocab_size": 32000},
}


def demo_padding_waste(batch_size: int, max_lengths: list[int], vocab: int, size: int) -> dict:
    """{max_length: {random, length_grouped}}: padded / real tokens of random vs length-grouped
    batches over mixture-sized datasets cut from the demo's train sources."""
    from instructmining.config import load_config
    from instructmining.data import load_source
    from instructmining.finetune import epoch_batches
    from instructmining.pretrain import train_tokenizer
    from instructmining.prompts import encode_example, format_prompt

    cfg = load_config(ROOT / "config" / "config.yaml")
    data_root = str((ROOT / cfg["data_root"]).resolve())
    rows: list[dict[str, str]] = []
    for src in cfg["pool"]["sources"]:
        if src.get("role", "train") == "train":
            got = load_source(src, data_root, cfg["pool"]["multiturn"], Counter())
            rows += random.Random(0).sample(got, min(len(got), src.get("max_samples") or len(got)))
    random.Random(1).shuffle(rows)
    tok = train_tokenizer([f"{r['instruction']}\n{r['input']}\n{r['output']}" for r in rows], vocab)
    out: dict[int, dict[str, float]] = {}
    for max_length in max_lengths:
        lengths = [len(encode_example(tok, format_prompt(r["instruction"], r["input"]), r["output"],
                                      max_length).input_ids) for r in rows]
        for grouped in (False, True):
            padded = real = 0
            for d in range(0, len(lengths) - size + 1, size):  # disjoint mixture-sized datasets
                ls = lengths[d : d + size]
                for b in epoch_batches(ls, batch_size, seed=1, epoch=0, grouped=grouped):
                    padded += len(b) * max(ls[i] for i in b)
                    real += sum(ls[i] for i in b)
            out.setdefault(max_length, {})["length_grouped" if grouped else "random"] = padded / real
    return out


def build_model(folder: Path, shape: str, device: str, rows: list[dict]) -> Path:
    """A random-init Llama of `shape` + a BPE tokenizer trained on the rows, saved as an HF folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from instructmining.pretrain import train_tokenizer

    s = SHAPES[shape]
    tok = train_tokenizer([f"{r['instruction']}\n{r.get('input', '')}\n{r['output']}" for r in rows],
                          s["vocab_size"])
    cfg = LlamaConfig(**s, num_key_value_heads=s["num_attention_heads"], max_position_embeddings=4096,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32  # 7B in float32 is 27 GB of disk
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    del model
    return folder


def run_project(args: argparse.Namespace, model_dir: Path, data: Path, work: Path, ft: dict) -> dict:
    """`instructmining finetune` in this process; its train_metrics.json."""
    from instructmining.cli import main

    run_dir = work / f"run-{time.monotonic_ns()}"  # fresh checkpoints: a repeat must not resume
    out = run_dir / "adapter"
    argv = ["finetune", "--data", str(data), "--model", json.dumps({"path": str(model_dir)}),
            "--config", json.dumps(ft), "--out", str(out), "--checkpoints", str(run_dir / "checkpoints"),
            "--name", "bench", "--threads", str(args.threads)]
    assert main(argv) == 0
    return json.loads((out / "train_metrics.json").read_text())


def run_plain(args: argparse.Namespace, model_dir: Path, examples: list[Any], ft: dict, steps: int,
              warmup: int) -> float:
    """Plain transformers + peft on dense rows of the same tokens; real tokens/s after `warmup` steps."""
    import peft
    import torch

    from instructmining.basemodel import load_model
    from instructmining.speed import sync

    torch.manual_seed(0)
    _, model = load_model({"path": str(model_dir)}, ft["method"], ft["bits"], ft["compute_dtype"])
    if ft["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = peft.get_peft_model(model, peft.LoraConfig(
        r=ft["lora_r"], lora_alpha=ft["lora_alpha"], lora_dropout=ft["lora_dropout"],
        target_modules=ft["target_modules"], task_type="CAUSAL_LM"))
    model.train()
    stream = [t for e in examples for t in e.input_ids]
    width = max(2, len(stream) // (steps * args.batch_size))  # same tokens per batch as the project
    dev = model.get_base_model().lm_head.weight.device
    rows = torch.tensor(stream[: steps * args.batch_size * width]).view(steps, args.batch_size, width)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=ft["learning_rate"])
    t0, tokens = 0.0, 0
    for i in range(steps):
        if i == warmup:
            sync(str(dev))
            t0 = time.perf_counter()
        ids = rows[i].to(dev)
        opt.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        tokens += ids.numel() if i >= warmup else 0
    sync(str(dev))
    rate = tokens / (time.perf_counter() - t0)
    del model, opt
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--shape", choices=sorted(SHAPES), default=None, help="default: small on CPU, llama-7b on cuda")
    ap.add_argument("--method", choices=["lora", "qlora"], default="lora")
    ap.add_argument("--bits", type=int, choices=[4, 8], default=4)
    ap.add_argument("--rows", type=int, default=None, help="Alpaca rows (default: 64 CPU, 256 cuda)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=None, help="default: 256 CPU, 1024 cuda")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="on both sides")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-waste", action="store_true", help="skip the demo padding-waste report")
    args = ap.parse_args()
    cuda = args.device == "cuda"
    shape = args.shape or ("llama-7b" if cuda else "small")
    n_rows, max_length = args.rows or (256 if cuda else 64), args.max_length or (1024 if cuda else 256)

    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see basemodel.before_torch_import
    import torch

    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device")
    torch.set_num_threads(args.threads)
    from tiny_models import alpaca_rows, write_dataset

    from instructmining.finetune import TIMING_WARMUP_STEPS, FinetuneConfig, read_dataset
    from instructmining.pretrain import train_tokenizer  # noqa: F401  (fail early if missing)

    if not args.skip_waste:
        # config/config.yaml: batch 8, max_length 128, 120-row mixtures; then the paper's 1024
        for length, waste in demo_padding_waste(8, [128, 1024], 2048, 120).items():
            print(f"demo pool padding waste (padded/real tokens, batch 8, max_length {length}, 120-row "
                  f"datasets): random {waste['random']:.3f} -> length_grouped {waste['length_grouped']:.3f}")
    rows = alpaca_rows(n_rows)
    ft = {"method": args.method, "bits": args.bits, "compute_dtype": "bfloat16" if cuda else "float32",
          "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"],
          "epochs": 1, "batch_size": args.batch_size, "learning_rate": 2e-4, "max_length": max_length,
          "save_steps": 10**6, "gradient_checkpointing": args.gradient_checkpointing}
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        model_dir = build_model(work / "base", shape, args.device, rows)
        print(f"built random {shape} in {time.perf_counter() - t0:.1f} s")
        data = write_dataset(work / "bench.parquet", rows)
        from transformers import AutoTokenizer

        examples = read_dataset(data, AutoTokenizer.from_pretrained(str(model_dir)), FinetuneConfig.from_dict(ft))
        steps = -(-len(examples) // args.batch_size)
        project, plain = [], []
        for _ in range(args.repeats):
            m = run_project(args, model_dir, data, work, ft)
            project.append(m["real_tokens_per_second"])
            plain.append(run_plain(args, model_dir, examples, ft, steps, TIMING_WARMUP_STEPS))
            print(f"project {project[-1]:.0f} real tokens/s (padding waste {m['padding_waste']:.3f}, "
                  f"{m['fraction_of_matmul_peak']:.1%} of matmul peak, peak memory "
                  f"{m['peak_memory_bytes'] / 2**30:.2f} GiB) | plain dense {plain[-1]:.0f} tokens/s")
    label = f"{shape} {args.method}{f' {args.bits}-bit' if args.method == 'qlora' else ''} on {args.device}"
    print(f"project/plain real tokens/s ({label}, best of {args.repeats}): {max(project) / max(plain):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
