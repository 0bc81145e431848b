"""The univariate study (the paper's Figure 2): for each binned indicator, the eval loss of its K
bin datasets uni-{indicator}-{k} against the bins' indicator means, with Pearson and Spearman
correlations; the same correlations over the mixtures are given for comparison."""

from __future__ import annotations

import argparse
import re
from typing import Any

from .errors import DataError

COLUMNS = ["indicator", "scope", "n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p"]


def bin_rows(bins: Any, indicator: str) -> Any:
    """The rows uni-{indicator}-{k} of a collected table, sorted by k (k = 0: lowest values)."""
    rx = re.compile(rf"^uni-{re.escape(indicator)}-(\d+)$")
    ks = bins["dataset"].map(lambda d: int(m.group(1)) if (m := rx.match(str(d))) else -1)
    rows = bins.assign(bin=ks)
    return rows[rows["bin"] >= 0].sort_values("bin").reset_index(drop=True)


def _corr(x: Any, y: Any) -> dict[str, float]:
    """Pearson and Spearman with p-values; NaN where undefined (n < 3 for Spearman's p, or a
    constant input), never a made-up 0."""
    import warnings

    import numpy as np
    from scipy import stats

    nan = float("nan")
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson_r": nan, "pearson_p": nan, "spearman_rho": nan, "spearman_p": nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns for n = 2; the NaN says it
        pr = stats.pearsonr(x, y)
        sr = stats.spearmanr(x, y)
    return {"pearson_r": float(pr.statistic), "pearson_p": float(pr.pvalue),
            "spearman_rho": float(sr.statistic), "spearman_p": float(sr.pvalue)}


def correlations(table: Any, bins: Any, indicators: list[str], response: str = "loss") -> Any:
    """One row per (indicator, scope): scope "bins" correlates the K bin datasets' indicator
    means with their loss; scope "mixtures" does the same over the regression's mixtures."""
    import pandas as pd

    rows = []
    for ind in indicators:
        for scope, frame in (("bins", bin_rows(bins, ind)), ("mixtures", table)):
            if ind not in frame.columns:
                raise DataError(scope, None, ind, "indicator column missing from the collected table")
            if scope == "bins" and frame.empty:
                raise DataError("bins table", None, "dataset", f"no uni-{ind}-k datasets found")
            x, y = frame[ind].to_numpy(dtype=float), frame[response].to_numpy(dtype=float)
            rows.append({"indicator": ind, "scope": scope, "n": len(frame), **_corr(x, y)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _cmd_univariate(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import write_tsv
    from .plots import plot_univariate

    table = pd.read_csv(args.table, sep="\t")
    table = table[table["kind"] == "mixture"]  # rep rows repeat a mixture with another seed
    bins = pd.read_csv(args.bins, sep="\t")
    write_tsv(correlations(table, bins, args.indicators), args.out)
    plot_univariate(table, bins, args.indicators, args.plot)
    return 0


def register(sub: Any) -> None:
    """Add `univariate`."""
    p = sub.add_parser("univariate", help="loss of the bin datasets vs the binned indicator")
    p.add_argument("--table", required=True, help="mixtures table (results/analysis/table.tsv)")
    p.add_argument("--bins", required=True, help="bin datasets table (results/analysis/bins.tsv)")
    p.add_argument("--indicators", nargs="+", required=True, help="binned indicators (config bins.indicators)")
    p.add_argument("--out", required=True, help="univariate.tsv")
    p.add_argument("--plot", required=True, help="univariate.png: one panel per indicator")
    p.set_defaults(func=_cmd_univariate)
