"""Indicator sub-commands: ls, score, merge-scores, embed, train-reward, reward-metrics,
dataset-indicators. Module level imports the standard library only (`ls` and `--help` must not
import torch)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from ..determinism import deterministic_torch
from ..errors import InstructMiningError
from .base import BATCH_SIZE, MAX_LENGTH

LOG = logging.getLogger("instructmining.indicators")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}: {text[:80]!r}") from exc


def _read_pool(path: str) -> Any:
    from ..io import read_parquet

    df = read_parquet(path)
    missing = {"id", "instruction", "input", "output"} - set(df.columns)
    if missing:
        raise InstructMiningError(f"{path}: missing column(s) {sorted(missing)}")
    df["input"] = df["input"].fillna("")
    return df.sort_values("id", kind="stable").reset_index(drop=True)


def cmd_ls(args: argparse.Namespace) -> int:
    from .registry import all_infos

    if args.what != "indicators":
        raise InstructMiningError(f"nothing to list for {args.what!r} (try: indicators)")
    print(f"{'name':<28}{'version':>8}  {'level':<7}{'sign':>5}  {'model':<10} summary")
    for info in all_infos():
        sign = {-1: "-", 0: "?", 1: "+"}[info.sign]
        print(f"{info.name:<28}{info.version:>8}  {info.level:<7}{sign:>5}  {info.model or '-':<10} {info.summary}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ..io import write_parquet
    from .aggregate import make_scorer
    from .cache import score_metadata, score_with_cache
    from .models import resolve_device

    if not 0 <= args.shard < args.num_shards:
        raise InstructMiningError(f"--shard {args.shard} is not in [0, {args.num_shards})")
    from .registry import info

    if args.expect_version is not None and info(args.indicator).version != args.expect_version:
        raise InstructMiningError(f"{args.indicator}: the workflow expects version {args.expect_version}, "
                                  f"the installed package has {info(args.indicator).version} (reinstall or re-parse)")
    if info(args.indicator).level == "set":
        return _score_set_level(args)
    deterministic_torch(args.threads)  # fixed threads + deterministic kernels
    models = {args.model_role: args.model} if args.model else {}
    scorer = make_scorer(args.indicator, models, {"batch_size": args.batch_size, "max_length": args.max_length,
                                                  "device": resolve_device(args.device),
                                                  "finetune_view": args.finetune_view})
    pool = _read_pool(args.pool)
    rows = pool.iloc[args.shard :: args.num_shards].reset_index(drop=True)
    LOG.info("%s: shard %d/%d: %d of %d pool samples", args.indicator, args.shard, args.num_shards,
             len(rows), len(pool))
    scores = score_with_cache(scorer, rows, args.cache_dir, tag=f"{args.shard}-of-{args.num_shards}")
    import pandas as pd

    out = pd.DataFrame({"id": rows["id"].astype(str), "score": pd.Series(scores, dtype="float64")})
    write_parquet(out, args.out, metadata=score_metadata(scorer.identity()))
    return 0


def _score_set_level(args: argparse.Namespace) -> int:
    """knn<i> as a per-sample score over the whole pool (distance to the i-th neighbour among all
    pool samples), for binning the pool by KNN-i. Cheap, so not cached."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from ..io import write_parquet
    from .cache import score_metadata
    from .registry import create, info

    if not args.embeddings or not args.embedding_ids:
        raise InstructMiningError(f"{args.indicator} is set-level: pass --embeddings and --embedding-ids")
    pool = _read_pool(args.pool)
    ids_path = args.embedding_ids
    emb_ids = pd.read_parquet(ids_path)["id"].astype(str).tolist()
    if emb_ids != pool["id"].astype(str).tolist():
        raise InstructMiningError(f"{ids_path}: embedding ids differ from the pool's ids (re-run embed)")
    dist = create(args.indicator).dataset_distances(np.load(args.embeddings))
    meta = pq.read_schema(ids_path).metadata or {}
    identity = {"indicator": args.indicator, "version": info(args.indicator).version, "scope": "pool",
                "embedding": json.loads(meta.get(b"embedding_identity", b"null"))}
    rows = slice(args.shard, None, args.num_shards)
    out = pd.DataFrame({"id": pool["id"].astype(str)[rows], "score": dist[rows].astype("float64")})
    write_parquet(out.reset_index(drop=True), args.out, metadata=score_metadata(identity))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    import pandas as pd
    import pyarrow.parquet as pq

    from ..io import read_parquet, write_parquet
    from .cache import consolidate

    frames = [read_parquet(p) for p in args.shards]  # a damaged shard: an error naming it
    metas = {pq.read_schema(p).metadata.get(b"scorer_key", b"").decode(): pq.read_schema(p).metadata for p in args.shards}
    if len(metas) != 1:
        raise InstructMiningError(f"shards of {args.indicator} come from different scorers: {sorted(metas)}")
    key, meta = next(iter(metas.items()))
    identity = json.loads(meta[b"scorer_identity"])
    scores = pd.concat(frames).sort_values("id", kind="stable")
    pool_ids = set(_read_pool(args.pool)["id"])
    if set(scores["id"]) != pool_ids or scores["id"].duplicated().any():
        raise InstructMiningError(f"shards of {args.indicator} do not cover the pool exactly once "
                                  f"({len(scores)} rows, {len(pool_ids)} pool ids)")
    write_parquet(scores.reset_index(drop=True), args.out,
                  metadata={"scorer_key": key, "scorer_identity": json.dumps(identity, sort_keys=True)})
    n = consolidate(args.cache_dir, key, identity)
    LOG.info("%s: merged %d shards (%d scores); cache %s holds %d ids", args.indicator, len(args.shards),
             len(scores), key[:12], n)
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from ..io import atomic_path, write_parquet
    from .knn import EMBED_TEXT_VERSION, embed_frame
    from .models import model_identity, resolve_device

    deterministic_torch(args.threads)  # fixed threads + deterministic kernels
    pool = _read_pool(args.pool)
    emb = embed_frame(pool, args.model, args.batch_size, args.max_length, resolve_device(args.device))
    ident = {**model_identity(args.model), "max_length": args.max_length, "text": EMBED_TEXT_VERSION}
    with atomic_path(args.out) as tmp, tmp.open("wb") as fh:
        np.save(fh, emb)
    write_parquet(pd.DataFrame({"id": pool["id"].astype(str)}), args.ids_out,
                  metadata={"embedding_identity": json.dumps(ident, sort_keys=True)})
    LOG.info("embedded %d samples -> %s %s", len(pool), args.out, emb.shape)
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:

    from ..io import read_parquet, write_parquet
    from .aggregate import dataset_row

    df = read_parquet(args.data, columns=["id"])
    emb = ids = None
    if args.embeddings:
        import numpy as np

        emb = np.load(args.embeddings)
        ids = read_parquet(args.embedding_ids)["id"].astype(str).tolist()
    row = dataset_row(args.name, df, args.names, args.scores, emb, ids)
    write_parquet(row, args.out)
    LOG.info("%s: %s", args.name, row.iloc[0].to_dict())
    return 0


def cmd_train_reward(args: argparse.Namespace) -> int:
    from .reward_train import RewardTrainingConfig, train_reward

    train_reward(Path(args.data_root), Path(args.pool), args.encoder, RewardTrainingConfig.from_dict(args.training),
                 Path(args.out), seed=args.seed, threads=args.threads)
    return 0


def cmd_reward_metrics(args: argparse.Namespace) -> int:
    path = Path(args.model_dir) / "metrics.json"
    if not path.exists():
        raise InstructMiningError(f"{path} does not exist (run: snakemake results/models/reward)")
    m = json.loads(path.read_text())
    print(f"held-out pairwise accuracy: {m['heldout_accuracy']:.4f} "
          f"({m['heldout_pairs']} pairs over {m['heldout_prompts']} prompts; train {m['train_pairs']} pairs)")
    return 0


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="model batch (CPU default chosen by benchmark)")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH, help="max tokens per scored text")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--device", default="auto", help="torch device: auto (cuda when available, else cpu), cpu, cuda")


def register(subparsers: Any) -> None:
    """Add the indicator sub-commands."""
    p = subparsers.add_parser("ls", help="list registered things (indicators)")
    p.add_argument("what", choices=["indicators"], help="what to list")
    p.set_defaults(func=cmd_ls)

    p = subparsers.add_parser("score", help="score the pool with one sample-level indicator (one shard)")
    p.add_argument("indicator", help="indicator name (instructmining ls indicators)")
    p.add_argument("--pool", required=True, help="results/pool/pool.parquet")
    p.add_argument("--out", required=True, help="shard score file (id, score)")
    p.add_argument("--model", type=_json, default=None, help="model spec JSON {hub,revision,path,package,subdir,kind}")
    p.add_argument("--model-role", default="base", choices=["base", "reward", "unieval", "embedding", "perplexity"],
                   help="which configured model --model is")
    p.add_argument("--cache-dir", default="results/cache/scores", help="per-sample score cache folder")
    p.add_argument("--shard", type=int, default=0, help="shard index of this job (0-based)")
    p.add_argument("--num-shards", type=int, default=1, help="number of shards the pool is split into")
    p.add_argument("--embeddings", nargs="?", help="pool embeddings .npy (set-level indicators only)")
    p.add_argument("--embedding-ids", nargs="?", help="their ids .parquet (row order of --embeddings)")
    p.add_argument("--expect-version", type=int, default=None,
                   help="fail if the registry's version differs (the rule passes it as a param)")
    p.add_argument("--finetune-view", type=_json, default=None,
                   help="JSON {max_length, template, tokenizer: model spec}: score each sample as the finetune "
                        "sees it (indicators.truncate_to_finetune); null: the full text")
    _add_model_flags(p)
    p.set_defaults(func=cmd_score)

    p = subparsers.add_parser("merge-scores", help="merge score shards into results/scores/<indicator>.parquet")
    p.add_argument("indicator", help="indicator name")
    p.add_argument("--pool", required=True, help="results/pool/pool.parquet")
    p.add_argument("--shards", nargs="+", required=True, help="the shard score files to merge")
    p.add_argument("--out", required=True, help="results/scores/<indicator>.parquet")
    p.add_argument("--cache-dir", default="results/cache/scores", help="per-sample score cache folder")
    p.set_defaults(func=cmd_merge)

    p = subparsers.add_parser("embed", help="sentence embeddings of the pool (for knn<i>)")
    p.add_argument("--pool", required=True, help="results/pool/pool.parquet")
    p.add_argument("--model", type=_json, required=True, help="embedding model spec JSON")
    p.add_argument("--out", required=True, help="results/embeddings/pool.npy")
    p.add_argument("--ids-out", required=True, help="results/embeddings/pool.ids.parquet (row order of --out)")
    _add_model_flags(p)
    p.set_defaults(func=cmd_embed)

    p = subparsers.add_parser("dataset-indicators", help="one dataset's indicator row")
    p.add_argument("--data", required=True, help="the dataset's parquet (results/datasets/<name>.parquet)")
    p.add_argument("--name", required=True, help="the dataset's name (the row's `dataset` value)")
    p.add_argument("--names", type=_json, required=True, help='JSON list of indicator names')
    p.add_argument("--scores", nargs="*", default=[], help="score files <indicator>.parquet of the sample-level names")
    p.add_argument("--embeddings", nargs="?", help="pool embeddings .npy (when a set-level indicator is named)")
    p.add_argument("--embedding-ids", nargs="?", help="their ids .parquet (row order of --embeddings)")
    p.add_argument("--out", required=True, help="results/indicators/<dataset>.json")
    p.set_defaults(func=cmd_dataset)

    p = subparsers.add_parser("train-reward", help="train the demo reward model (MiniLM + scalar head, Bradley-Terry)")
    p.add_argument("--data-root", required=True, help="folder of local data files (preference pairs)")
    p.add_argument("--training", type=_json, required=True,
                   help="the indicators.reward_training block as JSON (outputs, epochs, max_pairs, ...)")
    p.add_argument("--pool", required=True, help="pool parquet: its instructions are excluded")
    p.add_argument("--encoder", type=_json, required=True, help="encoder model spec JSON (MiniLM)")
    p.add_argument("--out", required=True, help="results/models/reward")
    p.add_argument("--seed", type=int, default=1, help="training seed")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: as torch chooses)")
    p.set_defaults(func=cmd_train_reward)

    p = subparsers.add_parser("reward-metrics", help="print the trained reward model's held-out pairwise accuracy")
    p.add_argument("model_dir", nargs="?", default="results/models/reward", help="trained reward model folder")
    p.set_defaults(func=cmd_reward_metrics)
