"""The univariate study (the paper's Figure 2): for each binned indicator, the eval loss of its K
bin datasets uni-{indicator}-{k} against the bins' indicator means, with Pearson and Spearman
correlations; the same correlations over the mixtures are given for comparison."""

from __future__ import annotations

import argparse
import re
from typing import Any

from .errors import DataError

COLUMNS = ["indicator", "scope", "n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p", "p_method"]
# Below this many points the p-values are exact: every permutation of y is enumerated (9! = 362,880).
# The usual t/normal approximations are badly off there (K = 4 bins, rho = 1: exact p = 1/12, not 0).
EXACT_BELOW = 10


def exact_permutation_p(x: Any, y: Any) -> tuple[float, float]:
    """Two-sided exact permutation p-values of Pearson's r and Spearman's rho: the share of all
    n! orderings of y whose |statistic| reaches the observed one (ties and all)."""
    import itertools

    import numpy as np
    from scipy.stats import rankdata

    def stats_of(xs: Any, perms: Any) -> Any:
        xc = (xs - xs.mean()) / np.linalg.norm(xs - xs.mean())
        yc = perms - perms.mean(axis=1, keepdims=True)
        return yc @ xc / np.linalg.norm(yc, axis=1)

    x, y = np.asarray(x, float), np.asarray(y, float)
    perms = np.array(list(itertools.permutations(range(len(y)))))
    out = []
    for xs, ys in ((x, y), (rankdata(x), rankdata(y))):
        null = stats_of(xs, ys[perms])
        observed = stats_of(xs, ys[None, :])[0]
        out.append(float(np.mean(np.abs(null) >= abs(observed) * (1 - 1e-9))))  # float slack: a tie counts
    return out[0], out[1]


def bin_rows(bins: Any, indicator: str) -> Any:
    """The rows uni-{indicator}-{k} of a collected table, sorted by k (k = 0: lowest values)."""
    rx = re.compile(rf"^uni-{re.escape(indicator)}-(\d+)$")
    ks = bins["dataset"].map(lambda d: int(m.group(1)) if (m := rx.match(str(d))) else -1)
    rows = bins.assign(bin=ks)
    return rows[rows["bin"] >= 0].sort_values("bin").reset_index(drop=True)


def _corr(x: Any, y: Any) -> dict[str, float]:
    """Pearson and Spearman with p-values: exact (all permutations) for n < EXACT_BELOW, else
    scipy's t approximation; NaN where undefined (n < 2 or a constant input), never a made-up 0."""
    import warnings

    import numpy as np
    from scipy import stats

    nan = float("nan")
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson_r": nan, "pearson_p": nan, "spearman_rho": nan, "spearman_p": nan, "p_method": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy warns for n = 2; the NaN says it
        pr = stats.pearsonr(x, y)
        sr = stats.spearmanr(x, y)
    out = {"pearson_r": float(pr.statistic), "pearson_p": float(pr.pvalue),
           "spearman_rho": float(sr.statistic), "spearman_p": float(sr.pvalue), "p_method": "asymptotic"}
    if 3 <= len(x) < EXACT_BELOW:
        out["pearson_p"], out["spearman_p"] = exact_permutation_p(x, y)
        out["p_method"] = "exact permutation"
    return out


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
    corr = correlations(table, bins, args.indicators)
    write_tsv(corr, args.out)
    plot_univariate(table, bins, args.indicators, args.plot)
    if args.html:
        from .htmlreport import frame_html, write_page

        write_page("Univariate correlations with eval loss", [(
            "Pearson and Spearman", f"p_method: exact permutation (all n! orderings) below {EXACT_BELOW} points, "
            "else the t approximation; empty cells are undefined (too few points or a constant input)",
            frame_html(corr))], args.html)
    return 0


def register(sub: Any) -> None:
    """Add `univariate`."""
    p = sub.add_parser("univariate", help="loss of the bin datasets vs the binned indicator")
    p.add_argument("--table", required=True, help="mixtures table (results/analysis/table.tsv)")
    p.add_argument("--bins", required=True, help="bin datasets table (results/analysis/bins.tsv)")
    p.add_argument("--indicators", nargs="+", required=True, help="binned indicators (config bins.indicators)")
    p.add_argument("--out", required=True, help="univariate.tsv")
    p.add_argument("--plot", required=True, help="univariate.png: one panel per indicator (+ univariate.svg)")
    p.add_argument("--html", default=None, help="also write the table as an HTML page (for the Snakemake report)")
    p.set_defaults(func=_cmd_univariate)
