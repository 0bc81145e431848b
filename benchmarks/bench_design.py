"""Random vs spanning mixtures on the demo pool (docs/design.md, "Measured"): for seeds 1-5, N = 14
mixtures x 120, the diagnostics of design.indicator_diagnostics on the exact mixture means of
(a) the 8 sample-level indicators, (b) 7 without unieval_understandability (per-sample correlation
0.999 with unieval_naturalness), (c) seed 1 only: all 9 with knn6 computed exactly per mixture.
Needs the demo's merged scores and embeddings:
  snakemake -c2 results/scores/{input_length,output_length,reward,perplexity,mtld,unieval_naturalness,unieval_coherence,unieval_understandability}.parquet results/embeddings/pool.npy
Run: python benchmarks/bench_design.py"""

from __future__ import annotations

import numpy as np
import pandas as pd

from instructmining.design import indicator_diagnostics, spanning_mixtures
from instructmining.indicators.aggregate import sample_level_scores
from instructmining.indicators.registry import create
from instructmining.mixing import make_mixtures

NAMES = ["input_length", "output_length", "reward", "perplexity", "mtld", "unieval_naturalness",
         "unieval_coherence", "unieval_understandability"]


def main() -> None:
    pool = pd.read_parquet("results/pool/pool.parquet")
    sources = sorted(pool.loc[pool.role == "train", "source"].unique())
    scores = sample_level_scores(pool.loc[pool.role == "train", "id"].tolist(), NAMES,
                                 [f"results/scores/{n}.parquet" for n in NAMES])
    lookup = scores.set_index("id")
    emb = np.load("results/embeddings/pool.npy")
    emb_index = {i: k for k, i in enumerate(pd.read_parquet("results/embeddings/pool.ids.parquet")["id"])}
    knn = create("knn6")
    for seed in range(1, 6):
        for label, cols in (("8", NAMES), ("7", NAMES[:-1])):
            made, _ = spanning_mixtures(pool, scores[["id", *cols]], sources, 14, 120, seed, "redistribute", 2000, 3.0)
            rand = make_mixtures(pool, sources, 14, 120, seed, "redistribute")
            line = []
            for key, mixes in (("random", rand), ("spanning", made)):
                x = np.array([lookup.loc[rows["id"], cols].mean().to_numpy() for _, rows, _ in mixes])
                extra = [("", x, cols)]
                if seed == 1 and label == "8":
                    k6 = [knn.dataset_value(emb[[emb_index[i] for i in rows["id"]]]) for _, rows, _ in mixes]
                    extra.append((" (+knn6)", np.column_stack([x, k6]), [*cols, "knn6"]))
                for tag, m, names in extra:
                    d = indicator_diagnostics(m, names)
                    line.append(f"{key}{tag} cond {d['condition_number']:.1f} PCs95 {d['components_95']} "
                                f"logdet {d['log_det_information']:.2f}")
            print(f"seed {seed}, design on {label} indicators: " + " | ".join(line))


if __name__ == "__main__":
    main()
