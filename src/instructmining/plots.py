"""Figures of the analysis (matplotlib, Agg backend: no display on cluster nodes): predicted vs
observed loss with the stepwise path, the univariate panels, rule-guided vs random selection."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .dataset_names import parse_selection

MIX_COLOR, BIN_COLOR = "#4C72B0", "#DD8452"  # the paper's two colours: mixtures vs bins
RULE_COLOR, RANDOM_COLOR = "#C44E52", "#8C8C8C"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: str) -> None:
    from .io import atomic_path

    with atomic_path(out) as tmp:
        # No Software/date metadata: the same data gives the same bytes.
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)


def predict_table(rule: dict[str, Any], table: Any) -> Any:
    """The rule's predicted log loss for each row of a collected table."""
    coef = rule["coefficients"]
    pred = coef["intercept"]
    for name in rule["indicators"]:
        pred = pred + coef[name] * table[name].astype(float)
    return pred + 0.0 * table["log_loss"]  # a Series even for an intercept-only rule


def plot_fit(rule: dict[str, Any], table: Any, out: str) -> None:
    """Left: predicted vs observed log loss of the mixtures (y = x dashed). Right: the stepwise
    path, adjusted R^2 after each step."""
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    pred, obs = predict_table(rule, table), table["log_loss"].astype(float)
    ax.scatter(pred, obs, color=MIX_COLOR, s=22)
    lo, hi = float(min(pred.min(), obs.min())), float(max(pred.max(), obs.max()))
    ax.plot([lo, hi], [lo, hi], "--", color="black", lw=0.8)
    cv = rule.get("cv_r2", {}).get("loo_procedure")
    cv_text = f"{cv:.3f}" if cv is not None else "n/a"
    title = f"R² = {rule['r2']:.3f}, LOO R² = {cv_text}, n = {rule['n']}"
    noise, resid = (rule.get("seed_noise") or {}).get("sd_log_loss"), rule.get("residual_sd")
    if noise is not None and resid is not None:  # is the rule's error near the seed-to-seed noise?
        title += f"\nresidual sd {resid:.3g} vs seed-noise sd {noise:.3g}"
    ax.set(xlabel="predicted log loss", ylabel="observed log loss", title=title)
    steps = [s for s in rule.get("stepwise", {}).get("steps", []) if s["action"] != "stop"]
    labels = [s["action"] if s["indicator"] is None else f"{'+' if s['action'] == 'enter' else '-'}{s['indicator']}"
              for s in steps]
    ax2.plot(range(len(steps)), [s["adj_r2"] if s["adj_r2"] is not None else 0.0 for s in steps], "o-",
             color=RULE_COLOR)
    ax2.set_xticks(range(len(steps)), labels, rotation=30, ha="right")
    ax2.set(ylabel="adjusted R²", title=f"stepwise path ({rule.get('stepwise', {}).get('criterion', '?')})")
    _save(fig, out)


def plot_univariate(table: Any, bins: Any, indicators: list[str], out: str) -> None:
    """One panel per binned indicator: loss against the indicator for the mixtures and for the
    K bin datasets (joined in bin order)."""
    from .univariate import bin_rows

    plt = _pyplot()
    cols = min(3, len(indicators))
    rows = (len(indicators) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax, ind in zip(axes.flat, indicators, strict=False):
        ax.scatter(table[ind], table["loss"], color=MIX_COLOR, s=18, label="mixtures")
        b = bin_rows(bins, ind)
        ax.plot(b[ind], b["loss"], "o-", color=BIN_COLOR, label=f"bins (K = {len(b)})")
        ax.set(xlabel=ind, ylabel="eval loss", title=ind)
    for ax in list(axes.flat)[len(indicators):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out)


def summarize_runs(runs: Any) -> Any:
    """Mean and sd (ddof = 1; empty with a single seed) of the loss per (method, n), from a
    collected table of sel-{method}-{n}-{seed} datasets."""
    import pandas as pd

    parsed = runs["dataset"].map(lambda d: parse_selection(str(d)))
    if parsed.isna().any():
        bad = runs["dataset"][parsed.isna()].iloc[0]
        raise ValueError(f"not a selection dataset: {bad!r}")
    frame = runs.assign(method=parsed.map(lambda m: m[0]), n=parsed.map(lambda m: m[1]),
                        seed=parsed.map(lambda m: m[2]))
    rows = []
    for (method, n), g in frame.sort_values(["method", "n", "seed"]).groupby(["method", "n"], sort=True):
        rows.append({"method": method, "n": int(n), "seeds": ";".join(map(str, g["seed"])),
                     "loss_mean": g["loss"].mean(), "loss_sd": g["loss"].std(ddof=1),
                     "log_loss_mean": g["log_loss"].mean(), "log_loss_sd": g["log_loss"].std(ddof=1),
                     "losses": ";".join(repr(float(x)) for x in g["loss"])})
    return pd.DataFrame(rows)


def plot_selection(summary: Any, out: str) -> None:
    """Eval loss against subset size n: rule-selected vs random subsets (mean +- sd over seeds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sizes = summary["n"].astype(float)
    log_x = len(sizes) > 0 and sizes.max() / sizes.min() > 5
    for method, color, dodge in (("rule", RULE_COLOR, -0.01), ("random", RANDOM_COLOR, 0.01)):
        g = summary[summary["method"] == method].sort_values("n")
        if not g.empty:  # dodge the two methods by 1% of n so their error bars do not overlap
            ax.errorbar(g["n"] * (1 + dodge), g["loss_mean"], yerr=g["loss_sd"].fillna(0.0), fmt="o-",
                        capsize=3, color=color, label=method)
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel="selected samples n", ylabel="eval loss", title="rule-guided vs random selection")
    ax.legend()
    _save(fig, out)


def _cmd_plot_fit(args: argparse.Namespace) -> int:
    import pandas as pd

    with open(args.rule, encoding="utf-8") as fh:
        rule = json.load(fh)
    table = pd.read_csv(args.table, sep="\t")
    plot_fit(rule, table[table["kind"] == "mixture"], args.out)  # the rows the rule was fitted on
    return 0


def _cmd_plot_selection(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import write_tsv

    summary = summarize_runs(pd.read_csv(args.table, sep="\t"))
    write_tsv(summary, args.out)
    plot_selection(summary, args.plot)
    return 0


def register(sub: Any) -> None:
    """Add `plot-fit` and `plot-selection`."""
    p = sub.add_parser("plot-fit", help="predicted vs observed log loss and the stepwise path")
    p.add_argument("--rule", required=True, help="results/analysis/rule.json")
    p.add_argument("--table", required=True, help="results/analysis/table.tsv")
    p.add_argument("--out", required=True, help="fit.png")
    p.set_defaults(func=_cmd_plot_fit)
    p = sub.add_parser("plot-selection", help="rule-guided vs random selection: loss per n")
    p.add_argument("--table", required=True, help="collected table of the sel-* datasets")
    p.add_argument("--out", required=True, help="selection.tsv: mean and sd per method and n")
    p.add_argument("--plot", required=True, help="selection.png")
    p.set_defaults(func=_cmd_plot_selection)
