"""`collect-table`: join each dataset's indicator row with its eval loss into one TSV
(dataset, kind, loss, log_loss, one column per indicator), the input of the regression, the
univariate study and the selection plot; plus the tables derived from a fitted rule
(coefficients.tsv, the seed-noise estimate from mix-NNN-rep<s> rows)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from .dataset_names import kind as dataset_kind
from .dataset_names import repeat_source
from .errors import DataError
from .io import read_parquet

FIXED = ["dataset", "kind", "loss", "log_loss"]


def read_loss(path: str | Path) -> float:
    """The mean token NLL of results/loss/{dataset}.json (must be finite and > 0 to take its log)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, None, None, f"cannot read loss JSON: {exc}") from exc
    loss = obj.get("loss") if isinstance(obj, dict) else None
    if not isinstance(loss, (int, float)) or isinstance(loss, bool) or not math.isfinite(loss) or loss <= 0:
        raise DataError(path, None, "loss", f"must be a finite number > 0, got {loss!r}")
    return float(loss)


def collect(loss_files: list[str], indicator_files: list[str]) -> Any:
    """One row per dataset, sorted by dataset name. Files are matched by their stem (the dataset
    name); the indicator row's `dataset` must agree with its file name."""
    import pandas as pd

    losses = {Path(f).stem: f for f in loss_files}
    inds = {Path(f).name.removesuffix(".parquet"): f for f in indicator_files}
    if set(losses) != set(inds):
        only_l, only_i = sorted(set(losses) - set(inds)), sorted(set(inds) - set(losses))
        raise DataError("collect-table", None, None,
                        f"loss and indicator files name different datasets (loss only: {only_l}; "
                        f"indicators only: {only_i})")
    rows, columns = [], None
    for name in sorted(losses):
        frame = read_parquet(inds[name])
        if len(frame) != 1 or "dataset" not in frame.columns:
            raise DataError(inds[name], None, "dataset", f"expected one row with a dataset column, got {len(frame)} rows")
        if frame["dataset"].iloc[0] != name:
            raise DataError(inds[name], "row 0", "dataset", f"{frame['dataset'].iloc[0]!r} != file name {name!r}")
        cols = [c for c in frame.columns if c != "dataset"]
        if columns is None:
            columns = cols
        elif cols != columns:
            raise DataError(inds[name], None, None, f"indicator columns {cols} differ from {columns}")
        loss = read_loss(losses[name])
        rows.append({"dataset": name, "kind": dataset_kind(name), "loss": loss, "log_loss": math.log(loss),
                     **{c: float(frame[c].iloc[0]) for c in cols}})
    return pd.DataFrame(rows, columns=FIXED + (columns or []))


def coefficient_frame(rule: dict[str, Any]) -> Any:
    """The coefficient table of a rule (one row per term) for coefficients.tsv."""
    import pandas as pd

    terms = list(rule["coefficients"])
    return pd.DataFrame({
        "term": terms,
        "coefficient": [rule["coefficients"][t] for t in terms],
        "std_error": [rule["std_errors"][t] for t in terms],
        "t": [rule["t_values"][t] for t in terms],
        "p_value": [rule["p_values"][t] for t in terms],
        "ci_low": [rule["conf_int_95"][t][0] for t in terms],
        "ci_high": [rule["conf_int_95"][t][1] for t in terms],
        "vif": [rule["vif"].get(t) for t in terms],
    })


def seed_noise(table: Any, response: str = "log_loss") -> dict[str, Any] | None:
    """How much log loss moves when only the finetune seed changes: mix-NNN-rep<s> against mix-NNN.
    sd = sqrt(mean(diff^2) / 2); a rule whose residual_sd is near it explains all it can."""
    if "kind" not in table.columns:
        return None
    values = dict(zip(table["dataset"], table[response].astype(float), strict=True))
    pairs = [{"dataset": d, "of": repeat_source(d), "diff": float(values[d] - values[repeat_source(d)])}
             for d in table.loc[table["kind"] == "rep", "dataset"] if repeat_source(d) in values]
    if not pairs:
        return None
    sd = math.sqrt(sum(p["diff"] ** 2 for p in pairs) / (2 * len(pairs)))
    return {"pairs": pairs, "sd_log_loss": float(sd)}


def _cmd_collect(args: argparse.Namespace) -> int:
    from .io import write_tsv

    table = collect(args.losses, args.indicators)
    write_tsv(table, args.out)
    if args.html:
        from .htmlreport import frame_html, write_page

        write_page(f"Collected table: {Path(args.out).name}", [(
            f"{len(table)} rows", "one row per dataset: eval loss and indicator values; empty cells are undefined",
            frame_html(table))], args.html)
    return 0


def register(sub: Any) -> None:
    """Add `collect-table`."""
    p = sub.add_parser("collect-table", help="join indicator rows and eval losses into one TSV")
    p.add_argument("--losses", nargs="+", required=True, help="results/loss/{dataset}.json files")
    p.add_argument("--indicators", nargs="+", required=True, help="results/indicators/{dataset}.parquet files")
    p.add_argument("--out", required=True, help="TSV: dataset, kind, loss, log_loss, indicators")
    p.add_argument("--html", default=None, help="also write the table as an HTML page (for the Snakemake report)")
    p.set_defaults(func=_cmd_collect)
