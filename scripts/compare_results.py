"""Compare two workflow results/ folders (e.g. the ci config run from two commits): which files are
byte-identical, and for the others which fields differ (JSON keys; parquet data vs metadata).
Used to check that a refactoring changes no output. Run:
    python scripts/compare_results.py /tmp/run-before /tmp/run-after"""

from __future__ import annotations

import collections
import filecmp
import json
import re
import sys
from pathlib import Path
from typing import Any


def json_diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Dotted paths where two JSON values differ ([i] for list items of equal-length lists)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in json_diff(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in json_diff(x, y, f"{path}[i]")]
    return [] if a == b else [path or "."]


def parquet_diff(a: Path, b: Path) -> list[str]:
    import pandas as pd
    import pyarrow.parquet as pq

    out = [] if pd.read_parquet(a).equals(pd.read_parquet(b)) else ["data"]
    ma, mb = pq.read_schema(a).metadata or {}, pq.read_schema(b).metadata or {}
    return out + [f"metadata.{k.decode()}" for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)]


def main(before: str, after: str) -> int:
    a_root, b_root = Path(before) / "results", Path(after) / "results"
    names = {str(p.relative_to(a_root)) for p in a_root.rglob("*") if p.is_file() and "cache" not in p.parts}
    other = {str(p.relative_to(b_root)) for p in b_root.rglob("*") if p.is_file() and "cache" not in p.parts}
    for name in sorted(names ^ other):
        print(f"only in {'before' if name in names else 'after'}: {name}")
    same, diffs = 0, collections.defaultdict(set)
    for name in sorted(names & other):
        a, b = a_root / name, b_root / name
        if filecmp.cmp(a, b, shallow=False):
            same += 1
            continue
        kind = re.sub(r"(mix|uni|sel)-[\w.-]+?(?=/|\.json|\.parquet)", "<dataset>", name)
        if name.endswith(".json"):
            diffs[kind].update(json_diff(json.loads(a.read_text()), json.loads(b.read_text())))
        elif name.endswith(".parquet"):
            diffs[kind].update(parquet_diff(a, b))
        else:
            diffs[kind].add("bytes")
    print(f"byte-identical: {same} of {len(names & other)} files (results/cache excluded)")
    for kind, fields in sorted(diffs.items()):
        print(f"  differs: {kind}: {', '.join(sorted(fields))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
