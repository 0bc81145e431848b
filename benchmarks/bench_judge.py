"""Benchmark: the UniEval causal judges on this CPU, instruct judge vs the current (base) judge.

Run: python benchmarks/bench_judge.py --base results/models/base --judge results/models/judge
     [--pool results/pool/pool.parquet] [--n 48] [--batch-size 16] [--max-length 128]
--base: the demo's current judge (the workflow-pretrained 0.24M-parameter Llama);
--judge: SmolLM2-135M-Instruct converted by rule convert_model (`instructmining convert-gguf`).
Scores the same real samples (the pool's first --n rows, else Alpaca) for all three UniEval
dimensions, two ways per judge: shared prefix (one pass over the sample, three cached
continuations: `score_dimensions`) and one dimension at a time (what one pool score job per
dimension computes).
Prints sample tokens/s and samples/s (best of --repeats; a shared machine only adds time), the
ratio instruct / base measured in this run, and the minutes the pool (--pool-size samples) would
take, LAST."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def frame(pool: str | None, n: int):
    import pandas as pd

    from instructmining.io import sha256_text

    if pool:
        df = pd.read_parquet(pool, columns=["id", "instruction", "input", "output"]).iloc[:n]
        return df.reset_index(drop=True)
    rows = json.loads((ROOT.parent / "shared/data/pool/alpaca/cherry_alpaca_5_percent.json").read_text())[:n]
    df = pd.DataFrame([{"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
                       for r in rows])
    df["id"] = [sha256_text(a, b, c) for a, b, c in zip(df["instruction"], df["input"], df["output"], strict=True)]
    return df


def measure(spec: dict, df, batch_size: int, max_length: int, repeats: int) -> dict[str, float]:
    """Best wall seconds for the shared-prefix family and for three separate scorers."""
    from instructmining.indicators import registry
    from instructmining.indicators.unieval import DIMENSIONS

    fam = registry.create("unieval_coherence", model=spec, batch_size=batch_size, max_length=max_length)
    fam.load()
    fam.score_dimensions(df.iloc[:2])  # warm-up: first-call allocations and thread start-up
    shared = separate = float("inf")
    for _ in range(repeats):
        fam.tokens = 0
        t = time.perf_counter()
        fam.score_dimensions(df)
        shared = min(shared, time.perf_counter() - t)
        tokens = fam.tokens
        t = time.perf_counter()
        for d in DIMENSIONS:  # what one score job per dimension computes (one model in memory)
            fam.score_dimensions(df, (d,))
        separate = min(separate, time.perf_counter() - t)
    return {"shared_s": shared, "separate_s": separate, "tokens": tokens}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="current judge folder (results/models/base)")
    ap.add_argument("--judge", required=True, help="instruct judge folder (results/models/judge)")
    ap.add_argument("--pool", default=None, help="pool parquet to take samples from (default: Alpaca)")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pool-size", type=int, default=1200, help="samples the demo scores (its pool)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    df = frame(args.pool, args.n)
    res = {}
    for name, folder in (("base", args.base), ("instruct", args.judge)):
        res[name] = measure({"path": folder, "kind": "causal"}, df, args.batch_size, args.max_length, args.repeats)
        r = res[name]
        print(f"{name:<9} shared prefix: {r['tokens'] / r['shared_s']:8.0f} sample tokens/s "
              f"{len(df) / r['shared_s']:6.1f} samples/s | one dimension at a time: {len(df) / r['separate_s']:6.1f} "
              f"samples/s | shared/separate speed-up {r['separate_s'] / r['shared_s']:.2f}x")
    b, i = res["base"], res["instruct"]
    print(f"instruct / base time, shared prefix: {i['shared_s'] / b['shared_s']:.1f}x")
    for name, r in res.items():
        print(f"{name}: the pool's {args.pool_size} samples x 3 dimensions: "
              f"{args.pool_size / len(df) * r['shared_s'] / 60:.1f} min shared prefix, "
              f"{args.pool_size / len(df) * r['separate_s'] / 60:.1f} min as three separate jobs "
              f"({args.threads} threads, max_length {args.max_length})")


if __name__ == "__main__":
    main()
