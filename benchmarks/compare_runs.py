"""Compare two runs of the same config and seed (issue #16: reproducibility).

    python benchmarks/compare_runs.py RUN_A RUN_B

RUN_A and RUN_B are working directories of two fresh runs (`snakemake --directory`, or two clones).
Prints, and exits 1 when anything differs: datasets whose rows differ, the largest absolute
difference of eval losses (whole and per instruction), of dataset-level indicators and of
per-sample scores, and whether rule.json, validation.json and selection_study.json are the same
apart from their provenance (git hash, time)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def _strip(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k != "provenance"}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def compare(a: Path, b: Path) -> tuple[list[str], list[str]]:
    """(summary lines, one line per difference; empty: the runs agree)."""
    diffs, lines = [], []
    for kind, pattern in (("dataset", "results/datasets/*.parquet"), ("indicators", "results/indicators/*.parquet"),
                          ("scores", "results/scores/*.parquet")):
        files = sorted(p.relative_to(a) for p in a.glob(pattern))
        worst = 0.0
        for rel in files:
            fa, fb = pd.read_parquet(a / rel), pd.read_parquet(b / rel)
            if kind == "dataset":
                if not fa.equals(fb):
                    diffs.append(f"dataset rows differ: {rel}")
                continue
            num = fa.select_dtypes("number").columns
            worst = max(worst, float((fa[num] - fb[num]).abs().max().max()) if len(num) else 0.0)
            if not fa.equals(fb):
                diffs.append(f"{kind} differ: {rel}")
        lines.append(f"{kind}: {len(files)} files" + (f", max |a - b| = {worst:.3g}" if kind != "dataset" else ""))
    losses = sorted(p.name for p in (a / "results" / "loss").glob("*.json"))
    worst = worst_each = 0.0
    for name in losses:
        la = json.loads((a / "results" / "loss" / name).read_text())
        lb = json.loads((b / "results" / "loss" / name).read_text())
        worst = max(worst, abs(la["loss"] - lb["loss"]))
        each = {r["eval_id"]: r["loss"] for r in lb["per_instruction"]}
        worst_each = max([worst_each] + [abs(r["loss"] - each[r["eval_id"]]) for r in la["per_instruction"]])
        if la["loss"] != lb["loss"]:
            diffs.append(f"loss differs: {name}: {la['loss']!r} vs {lb['loss']!r}")
    lines.append(f"losses: {len(losses)} datasets, max |a - b| = {worst:.3g} (per instruction {worst_each:.3g})")
    for name in ("rule.json", "validation.json", "selection_study.json"):
        pa, pb = a / "results" / "analysis" / name, b / "results" / "analysis" / name
        if pa.is_file() and pb.is_file():
            same = _strip(json.loads(pa.read_text())) == _strip(json.loads(pb.read_text()))
            lines.append(f"{name}: {'same' if same else 'DIFFERENT'} (provenance aside)")
            if not same:
                diffs.append(f"{name} differs")
    return lines, diffs


def main(argv: list[str]) -> int:
    lines, diffs = compare(Path(argv[0]), Path(argv[1]))
    print("\n".join(lines + diffs))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
