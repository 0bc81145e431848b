"""The per-sample score cache: scores keyed by sample id and scorer identity.

Layout: `results/cache/scores/<key>.parquet` (consolidated) plus `<key>.part-<tag>.parquet` files
that a running (possibly sharded) score job flushes as it goes, so an interrupted job resumes.
`key` = stable_hash(scorer identity) (indicator name, version, model id, revision = the model's
content fingerprint (instructmining.fingerprint), prompt version, max length, CACHE_VERSION), so
retraining one scorer's model changes only its key. The cache is not a Snakemake output: a rerun of
the rule never deletes it, so a file that fails to read (or carries another key) is reported
naming it, deleted, and its samples rescored."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..errors import ScorerError
from ..io import stable_hash, write_parquet
from .base import LOG

# Rows scored between cache flushes: bounds the work lost when a job is killed.
FLUSH_ROWS = 256


def scorer_key(identity: dict[str, Any]) -> str:
    """The cache key of a scorer identity."""
    return stable_hash(identity)


def _read(path: Path, key: str) -> Any:
    """A cache file's (id, score) rows, or None when it is unreadable or belongs to another key:
    then it is reported naming the file and deleted, and its samples are scored again."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        found = meta.get(b"scorer_key", b"").decode()
        if found != key:
            raise ValueError(f"its scorer_key metadata is {found[:12] or 'missing'}, not {key[:12]}")
        df = pd.read_parquet(path, columns=["id", "score"]).astype({"id": str, "score": "float64"})
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        LOG.warning("corrupt score cache entry %s (%s: %s); deleting it, its samples will be rescored",
                    path, type(exc).__name__, exc)
        path.unlink(missing_ok=True)
        return None
    return df


def load_cache(cache_dir: str | Path, key: str) -> dict[str, float]:
    """Every cached score of `key` (consolidated file + part files), id -> score."""
    root = Path(cache_dir)
    scores: dict[str, float] = {}
    paths = [root / f"{key}.parquet", *sorted(root.glob(f"{key}.part-*.parquet"))]
    for path in paths:
        df = _read(path, key) if path.exists() else None
        if df is not None:
            scores.update(zip(df["id"], df["score"], strict=True))
    return scores


def _write(scores: dict[str, float], path: Path, identity: dict[str, Any]) -> None:
    import pandas as pd

    ids = sorted(scores)
    df = pd.DataFrame({"id": ids, "score": [float(scores[i]) for i in ids]})
    write_parquet(df, path, metadata=score_metadata(identity))


def score_metadata(identity: dict[str, Any]) -> dict[str, str]:
    """Parquet metadata of a score file: the scorer key and its identity."""
    return {"scorer_key": scorer_key(identity), "scorer_identity": json.dumps(identity, sort_keys=True)}


def consolidate(cache_dir: str | Path, key: str, identity: dict[str, Any]) -> int:
    """Fold part files into `<key>.parquet` and delete them; returns the number of cached ids.
    Run only when no job of this key is scoring (the merge step)."""
    root = Path(cache_dir)
    parts = sorted(root.glob(f"{key}.part-*.parquet"))
    scores = load_cache(root, key)
    if parts or not (root / f"{key}.parquet").exists():
        _write(scores, root / f"{key}.parquet", identity)
        for p in parts:
            p.unlink()
    return len(scores)


def score_with_cache(scorer: Any, df: Any, cache_dir: str | Path, tag: str = "0") -> list[float]:
    """Scores of every row of df (id, instruction, input, output), reusing cached ones.

    Logs "cache: N hits, M to score"; scores the misses in length-sorted chunks and flushes them
    to this job's part file after each chunk. Duplicate ids in df are scored once."""
    identity = scorer.identity()
    key = scorer_key(identity)
    cached = load_cache(cache_dir, key)
    todo = df[~df["id"].isin(cached.keys())].drop_duplicates("id")
    hits = int(df["id"].isin(cached.keys()).sum())
    LOG.info("%s: cache: %d hits, %d to score (key %s)", identity["indicator"], hits, len(todo), key[:12])
    if len(todo):
        # Chunk in global length order so each chunk's batches are tight (little padding).
        size = todo["instruction"].str.len() + todo["input"].fillna("").str.len() + todo["output"].str.len()
        todo = todo.assign(_len=size.to_numpy()).sort_values("_len", ascending=False, kind="stable")
        part = Path(cache_dir) / f"{key}.part-{tag}.parquet"
        new: dict[str, float] = load_cache_part(part, key)
        from .base import progress

        t0 = time.perf_counter()
        calls0 = scorer.model_calls
        with progress(len(todo), identity["indicator"]) as bar:
            for start in range(0, len(todo), FLUSH_ROWS):
                chunk = todo.iloc[start : start + FLUSH_ROWS]
                values = scorer.score(chunk)
                new.update(zip(chunk["id"], values, strict=True))
                _write(new, part, identity)
                bar.update(len(chunk))
        LOG.info("%s: scored %d samples in %.1f s (%d model calls)", identity["indicator"], len(todo),
                 time.perf_counter() - t0, scorer.model_calls - calls0)
        cached.update(new)
    missing = [i for i in df["id"] if i not in cached]
    if missing:
        raise ScorerError(f"{identity['indicator']}: no score for sample {missing[0]}")
    return [cached[i] for i in df["id"]]


def load_cache_part(path: Path, key: str) -> dict[str, float]:
    """The scores of one part file (empty if absent or corrupt)."""
    df = _read(path, key) if path.exists() else None
    return {} if df is None else dict(zip(df["id"], df["score"], strict=True))
