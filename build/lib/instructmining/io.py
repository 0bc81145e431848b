"""Atomic file output, provenance and logging shared by every stage.

Every output is written to a temporary file in the same directory and moved into place with
os.replace, so a crash or a bad record never leaves a half-written file behind (Snakemake would
otherwise treat a partial file as done on the next run)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import __version__

LOG = logging.getLogger("instructmining")


def setup_logging(level: str = "INFO") -> None:
    """One logger, writing to stderr (rules redirect stderr to their log file)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("instructmining")
    root.handlers[:] = [handler]
    root.setLevel(level)


def _umask() -> int:
    """The process umask (os.umask can only be read by setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it onto `path` only if the block succeeds.

    mkstemp creates the file 0600 whatever the umask; the result gets the mode a plain open()
    would give (0644 under umask 022, 0664 under 002), so the project group can read results."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; it replaces `path` only if the block succeeds.
    Like atomic_path, the folder gets the umask's mode (mkdtemp makes it 0700)."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write JSON atomically, keys sorted so that equal content gives equal bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")


def write_parquet(df: Any, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> None:
    """Write a DataFrame as parquet atomically and byte-reproducibly (no pandas index, no
    timestamps in metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    # pandas metadata is deterministic, but drop it anyway to keep files library-neutral.
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"pandas"}
    for k, v in (metadata or {}).items():
        meta[k.encode()] = v.encode()
    table = table.replace_schema_metadata(meta or None)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)


def read_parquet(path: str | os.PathLike[str], columns: list[str] | None = None) -> Any:
    """pd.read_parquet, but a truncated or corrupt file is a DataError naming it (and what to do)
    instead of a pyarrow traceback. Intermediate files are written atomically, so a damaged one
    was damaged after the fact (disk full on copy, a killed rsync, a manual edit)."""
    import pandas as pd
    import pyarrow as pa

    from .errors import DataError

    try:
        return pd.read_parquet(path, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DataError(path, None, None, "file does not exist") from exc
        raise DataError(path, None, None, f"unreadable parquet ({type(exc).__name__}: {exc}); the file is "
                        "truncated or corrupt: delete it and rerun the step that writes it (Snakemake "
                        "then rebuilds it)") from exc


def write_tsv(df: Any, path: str | os.PathLike[str]) -> None:
    """Write a DataFrame as TSV atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, lineterminator="\n")


def git_hash() -> str | None:
    """The git commit of the working tree this package runs from, if any."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def provenance(seed: int | None = None, config: Any = None) -> dict[str, Any]:
    """What every JSON result records: package version, git hash, seed and its config slice."""
    return {"package_version": __version__, "git_hash": git_hash(), "seed": seed, "config": config}


def sha256_text(*parts: str) -> str:
    """sha256 over parts joined by a unit separator (so ("ab","c") != ("a","bc"))."""
    h = hashlib.sha256()
    h.update("\x1f".join(parts).encode("utf-8"))
    return h.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (adapter ids, checkpoint checksums, model
    fingerprints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stable_hash(obj: Any) -> str:
    """sha256 of sorted-key JSON: the cache key convention (see STYLE.md)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def derive_seed(master: int, *labels: object) -> int:
    """An independent 32-bit seed per (master, labels...): adding a mixture or a source does not
    shift the random draws of the others."""
    digest = hashlib.sha256(json.dumps([master, *labels], default=str).encode()).digest()
    return int.from_bytes(digest[:4], "little")
