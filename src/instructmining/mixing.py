"""Datasets as wildcards: random mixtures (the paper: 78 x 2,000) and univariate bins (K = 8).

Mixture i draws r_s ~ U(0,1) per source s and takes size * r_s / sum(r) samples from source s,
rounded by largest remainder so the counts sum exactly to `size`, sampled without replacement.
A source holding fewer samples than its count (shortfall: redistribute, the default) gives all it
has, and the missing samples are re-allotted to the sources with room, in proportion to their r_s
(largest remainder again); the log names every such move. shortfall: error stops instead. mixtures.design: spanning chooses the mixtures in indicator space
instead (design.py); its draws honour the same shortfall rule."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from . import dataset_names
from .errors import ConfigError, InstructMiningError
from .io import derive_seed, read_parquet, write_parquet, write_tsv

LOG = logging.getLogger("instructmining.mixing")


def largest_remainder(weights: list[float], total: int) -> list[int]:
    """Integers proportional to `weights` that sum exactly to `total` (Hamilton's method; ties go
    to the lower index, so the result is deterministic)."""
    wsum = float(sum(weights))
    if total == 0:
        return [0] * len(weights)
    if wsum <= 0:
        raise ValueError("weights must have a positive sum")
    quotas = [total * w / wsum for w in weights]
    counts = [int(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def allot(r: list[float], available: list[int], size: int, shortfall: str, name: str) -> list[int]:
    """Counts per source for one mixture, honouring the sources' sizes."""
    if sum(available) < size:
        raise ConfigError("mixtures.size", f"{size} is larger than the {sum(available)} samples of the mixture sources")
    counts = largest_remainder(r, size)
    while True:
        excess = sum(max(0, c - a) for c, a in zip(counts, available, strict=True))
        if excess == 0:
            return counts
        if shortfall == "error":
            j = next(i for i, (c, a) in enumerate(zip(counts, available, strict=True)) if c > a)
            raise InstructMiningError(f"{name}: source #{j} holds {available[j]} samples but {counts[j]} were drawn "
                                      "(mixtures.shortfall: error)")
        counts = [min(c, a) for c, a in zip(counts, available, strict=True)]
        room = [r_i if c < a else 0.0 for r_i, c, a in zip(r, counts, available, strict=True)]
        extra = largest_remainder(room, excess)
        LOG.info("%s: shortfall of %d re-allotted: %s", name, excess, extra)
        counts = [c + e for c, e in zip(counts, extra, strict=True)]


def make_mixtures(pool: Any, sources: list[str], n: int, size: int, seed: int, shortfall: str) -> list[tuple[str, Any, dict]]:
    """[(name, rows, manifest row)] for mix-000 .. mix-(n-1)."""
    import numpy as np
    import pandas as pd

    train = pool[pool["role"] == "train"]
    by_source = {s: train[train["source"] == s].sort_values("id").reset_index(drop=True) for s in sources}
    available = [len(by_source[s]) for s in sources]
    out = []
    for i in range(n):
        name = dataset_names.mixture(i)
        mseed = derive_seed(seed, "mixture", i)
        rng = np.random.default_rng(mseed)
        r = rng.uniform(0.0, 1.0, size=len(sources)).tolist()
        counts = allot(r, available, size, shortfall, name)
        parts = []
        for s, c in zip(sources, counts, strict=True):
            pick = rng.choice(len(by_source[s]), size=c, replace=False)
            parts.append(by_source[s].iloc[np.sort(pick)])
        rows = pd.concat(parts, ignore_index=True)
        rows = rows.iloc[rng.permutation(len(rows))].reset_index(drop=True)  # seeded training order
        row = {"dataset": name, "kind": "mixture", "size": len(rows), "seed": mseed}
        row.update({f"r_{s}": round(x, 6) for s, x in zip(sources, r, strict=True)})
        row.update({f"n_{s}": c for s, c in zip(sources, counts, strict=True)})
        out.append((name, rows, row))
    return out


def make_bins(pool: Any, scores: Any, indicator: str, k: int, size: int | None, seed: int) -> list[tuple[str, Any, dict]]:
    """Order the train pool by the indicator's per-sample score (ties by id) and cut K equal-count
    bins; bin 0 holds the lowest scores. `size` takes a seeded subsample of each bin."""
    import numpy as np

    train = pool[pool["role"] == "train"].merge(scores[["id", "score"]], on="id", how="left")
    if train["score"].isna().any():
        missing = train.loc[train["score"].isna(), "id"].iloc[0]
        raise InstructMiningError(f"scores for {indicator!r} lack sample {missing} (rerun score_pool)")
    train = train.sort_values(["score", "id"], kind="mergesort").reset_index(drop=True)
    if len(train) < k:
        raise ConfigError("bins.k", f"{k} bins but only {len(train)} train samples")
    out = []
    for b, idx in enumerate(np.array_split(np.arange(len(train)), k)):
        part = train.iloc[idx]
        bseed = derive_seed(seed, "bin", indicator, b)
        rng = np.random.default_rng(bseed)
        if size is not None and size < len(part):
            part = part.iloc[np.sort(rng.choice(len(part), size=size, replace=False))]
        part = part.iloc[rng.permutation(len(part))].reset_index(drop=True)
        name = dataset_names.bin_name(indicator, b)
        out.append((name, part.drop(columns="score"), {
            "dataset": name, "kind": "bin", "size": len(part), "seed": bseed, "indicator": indicator,
            "score_min": float(part["score"].min()), "score_max": float(part["score"].max()),
            "score_mean": float(part["score"].mean())}))
    return out


def _out_files(out: list[str], names: list[str]) -> dict[str, str]:
    """The --out file of each dataset name (files are named <dataset>.parquet); the two lists must
    name the same datasets, so the workflow's outputs and what the command makes cannot drift."""
    files = {Path(p).name.removesuffix(".parquet"): p for p in out}
    if sorted(files) != sorted(names):
        raise InstructMiningError(f"--out names {sorted(files)} but the command makes {sorted(names)}")
    return files


def _write(rows: Any, path: str, meta: dict) -> None:
    write_parquet(rows, path, metadata={"instructmining.kind": meta["kind"], "instructmining.seed": str(meta["seed"])})


def _cmd_make_mixtures(args: argparse.Namespace) -> int:
    import pandas as pd

    pool = read_parquet(args.pool)
    sources = json.loads(args.sources) or sorted(pool.loc[pool["role"] == "train", "source"].unique())
    if args.design == "spanning":
        made = _designed(args, pool, sources)
    else:
        made = make_mixtures(pool, sources, args.n, args.size, args.seed, args.shortfall)
    manifest = [meta for _, _, meta in made]  # every mixture is drawn before any file is written
    if made:
        name, rows, meta = made[0]
        reps = [(rows, {**meta, "dataset": dataset_names.repeat(name, r), "kind": "rep"}) for r in json.loads(args.repeats)]
        manifest += [rep_meta for _, rep_meta in reps]
    else:
        reps = []
    files = _out_files(args.out, [m["dataset"] for m in manifest])
    for rows, meta in [(rows, meta) for _, rows, meta in made] + reps:
        _write(rows, files[meta["dataset"]], meta)
    write_tsv(pd.DataFrame(manifest), args.manifest)
    LOG.info("wrote %d mixtures of %d samples from %s", len(made), args.size, sources)
    return 0


def _designed(args: argparse.Namespace, pool: Any, sources: list[str]) -> list[tuple[str, Any, dict]]:
    """mixtures.design: spanning (design.py); writes the design report (--design-out)."""
    from .design import spanning_mixtures
    from .indicators.aggregate import sample_level_scores
    from .io import provenance, write_json

    if not args.design_out:
        raise InstructMiningError("--design spanning needs --design-out (the design report)")
    names = json.loads(args.indicators)
    scores = sample_level_scores(pool.loc[pool["role"] == "train", "id"].tolist(), names, args.scores)
    made, report = spanning_mixtures(pool, scores, sources, args.n, args.size, args.seed, args.shortfall,
                                     args.candidates, args.max_tilt)
    config = {"n": args.n, "size": args.size, "sources": sources, "shortfall": args.shortfall, "design": "spanning",
              "candidates": args.candidates, "max_tilt": args.max_tilt, "indicators": names}
    write_json({**report, "provenance": provenance(seed=args.seed, config=config)}, args.design_out)
    for key in ("random", "spanning"):
        d = report[key]
        LOG.info("%s: condition number %s, %d principal components for 95 %% of the variance of %s",
                 key, d["condition_number"], d["components_95"], d["indicators"])
    return made


def _cmd_make_bins(args: argparse.Namespace) -> int:
    import pandas as pd

    made = make_bins(read_parquet(args.pool), read_parquet(args.scores), args.indicator, args.k,
                     args.size, args.seed)
    files = _out_files(args.out, [name for name, _, _ in made])
    for name, rows, meta in made:
        _write(rows, files[name], meta)
    write_tsv(pd.DataFrame([m for _, _, m in made]), args.manifest)
    return 0


def _cmd_manifest(args: argparse.Namespace) -> int:
    import pandas as pd
    import pyarrow.parquet as pq

    rows = []
    for path in sorted(args.datasets):
        name = Path(path).stem
        df = read_parquet(path, columns=["source"])
        meta = pq.read_schema(path).metadata or {}
        row = {"dataset": name, "kind": dataset_names.kind(name), "size": len(df),
               "seed": int(meta.get(b"instructmining.seed", b"-1"))}
        row.update({f"n_{s}": int(c) for s, c in sorted(df["source"].value_counts().items())})
        rows.append(row)
    table = pd.DataFrame(rows)
    count_cols = [c for c in table.columns if c.startswith("n_")]
    table[count_cols] = table[count_cols].fillna(0).astype(int)
    write_tsv(table, args.out)
    if args.html:
        from .htmlreport import frame_html, write_page

        write_page("Dataset manifest", [(
            f"{len(table)} datasets", "size, config seed and per-source sample counts (n_<source>)",
            frame_html(table))], args.html)
    return 0


def add_mixture_args(p: argparse.ArgumentParser, what: str, seed_help: str) -> None:
    """The arguments every random-ratio mixture command takes (make-mixtures, make-heldout)."""
    p.add_argument("--pool", required=True, help="results/pool/pool.parquet")
    p.add_argument("--sources", default="null", help="JSON list of source labels (null: every train source)")
    p.add_argument("--n", type=int, required=True, help=f"number of {what}")
    p.add_argument("--size", type=int, required=True, help="samples per mixture")
    p.add_argument("--seed", type=int, required=True, help=seed_help)
    p.add_argument("--shortfall", choices=["redistribute", "error"], default="redistribute",
                   help="a source too small for its share: spread the rest over the others, or stop")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("make-mixtures", help="write mix-NNN datasets (+ mix-000-repS) and mixtures.tsv")
    add_mixture_args(p, "mixtures mix-000..", "config seed (mixture proportions and draws)")
    p.add_argument("--repeats", default="[]", help="JSON list of seed offsets for mix-000-rep<s>")
    p.add_argument("--design", choices=["random", "spanning"], default="random",
                   help="random: the paper's random ratios; spanning: D-optimal among tilted candidates")
    p.add_argument("--scores", nargs="*", default=[], help="spanning: per-sample score files <indicator>.parquet")
    p.add_argument("--indicators", default="[]", help="spanning: JSON list of the sample-level indicators to spread")
    p.add_argument("--candidates", type=int, default=2000, help="spanning: candidate datasets drawn")
    p.add_argument("--max-tilt", type=float, default=3.0, help="spanning: largest tilting temperature t")
    p.add_argument("--design-out", nargs="?", default=None, help="spanning: design.json (diagnostics, chosen candidates)")
    p.add_argument("--out", nargs="+", required=True, help="one <dataset>.parquet per mixture and repeat")
    p.add_argument("--manifest", required=True, help="mixtures.tsv: proportions per mixture")
    p.set_defaults(func=_cmd_make_mixtures)

    p = sub.add_parser("make-bins", help="write uni-<indicator>-<k> datasets for one indicator")
    p.add_argument("--pool", required=True, help="results/pool/pool.parquet")
    p.add_argument("--scores", required=True, help="the indicator's score file (id, score)")
    p.add_argument("--indicator", required=True, help="the indicator to bin by")
    p.add_argument("--k", type=int, required=True, help="number of bins K")
    p.add_argument("--size", type=lambda v: None if v == "none" else int(v), default=None, help="samples per bin (none: the whole bin)")
    p.add_argument("--seed", type=int, required=True, help="config seed (draws within a bin)")
    p.add_argument("--out", nargs="+", required=True, help="one uni-<indicator>-<k>.parquet per bin")
    p.add_argument("--manifest", required=True, help="bins_<indicator>.tsv: score range per bin")
    p.set_defaults(func=_cmd_make_bins)

    p = sub.add_parser("write-manifest", help="results/datasets/manifest.tsv: size and per-source counts")
    p.add_argument("--out", required=True, help="manifest.tsv")
    p.add_argument("--html", default=None, help="also write the manifest as an HTML page (for the Snakemake report)")
    p.add_argument("datasets", nargs="+", help="dataset parquet files to list")
    p.set_defaults(func=_cmd_manifest)
