"""What the demo finetune (max_length 128, Alpaca template) keeps of each pool sample, and how
exactly prompts.finetune_view reproduces it (docs/design.md, "Train on what you score").
Needs results/pool/pool.parquet and results/models/base of the demo. Run: python benchmarks/bench_finetune_view.py"""

from __future__ import annotations

import numpy as np
import pandas as pd
from transformers import AutoTokenizer

from instructmining.prompts import encode_example, finetune_view, format_prompt


def main(max_length: int = 128) -> None:
    pool = pd.read_parquet("results/pool/pool.parquet")
    tok = AutoTokenizer.from_pretrained("results/models/base")

    def n(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    rows = []
    for r in pool.itertuples():
        enc = encode_example(tok, format_prompt(r.instruction, r.input), r.output, max_length)
        kept = enc.num_response_tokens - (enc.labels[-1] == tok.eos_token_id)
        viewed = n(finetune_view(tok, r.instruction, r.input, r.output, max_length)[2])
        rows.append({"source": r.source, "role": r.role, "full": n(r.output), "kept": kept, "viewed": viewed})
    d = pd.DataFrame(rows)
    d["cut"] = d.kept < d.full
    g = d.groupby("source").agg(n=("cut", "size"), truncated=("cut", "mean"), full_median=("full", "median"),
                                kept_median=("kept", "median"))
    g["kept_share"] = d.groupby("source").kept.sum() / d.groupby("source").full.sum()
    print(g.round(3).to_string())
    train = d[d.role == "train"]
    print(f"all: truncated {d.cut.mean():.3f}, response tokens kept {d.kept.sum() / d.full.sum():.3f}; "
          f"spearman(full, kept) over train rows {train[['full', 'kept']].corr('spearman').iloc[0, 1]:.3f}")
    gap = np.abs(d.viewed - d.kept)
    print(f"view vs kept response tokens: exact {np.mean(gap == 0):.3f}, within 1 {np.mean(gap <= 1):.3f}, "
          f"max {gap.max()}")


if __name__ == "__main__":
    main()
