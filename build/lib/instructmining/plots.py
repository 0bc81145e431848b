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


# Axis units. Loss is the mean next-token cross-entropy on the eval set; indicators in their own units.
LOSS_LABEL = "eval loss (nats/token)"
LOG_LOSS_LABEL = "log eval loss (log nats/token)"
UNITS = {"output_length": "tokens", "input_length": "tokens", "reward": "reward-model logit",
         "mtld": "MTLD, words", "ppl": "perplexity", "naturalness": "UniEval score, 0-1",
         "coherence": "UniEval score, 0-1", "understandability": "UniEval score, 0-1"}


def axis_label(indicator: str) -> str:
    """An indicator's axis label with its unit (knn<i>: distance in the embedding space)."""
    unit = UNITS.get(indicator) or ("embedding distance" if indicator.startswith("knn") else "indicator units")
    return f"{indicator} ({unit})"


def svg_path(out: str) -> str:
    """The SVG written beside a PNG figure (same name, .svg)."""
    return str(out)[: -len(".png")] + ".svg" if str(out).endswith(".png") else str(out) + ".svg"


def _save(fig: Any, out: str) -> None:
    """The figure as PNG at `out` and as SVG beside it (vector, for papers and the report)."""
    from .io import atomic_path

    plt = _pyplot()
    plt.rcParams["svg.hashsalt"] = "instructmining"  # stable element ids: same data, same bytes
    with atomic_path(out) as tmp:
        # No Software/date metadata: the same data gives the same bytes.
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    with atomic_path(svg_path(out)) as tmp:
        fig.savefig(tmp, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)


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
    ax.set(xlabel=f"predicted {LOG_LOSS_LABEL}", ylabel=f"observed {LOG_LOSS_LABEL}", title=title)
    steps = [s for s in rule.get("stepwise", {}).get("steps", []) if s["action"] != "stop"]
    labels = [s["action"] if s["indicator"] is None else f"{'+' if s['action'] == 'enter' else '-'}{s['indicator']}"
              for s in steps]
    ax2.plot(range(len(steps)), [s["adj_r2"] if s["adj_r2"] is not None else 0.0 for s in steps], "o-",
             color=RULE_COLOR)
    ax2.set_xticks(range(len(steps)), labels, rotation=30, ha="right")
    ax2.set(xlabel="step (+ enters, - leaves)", ylabel="adjusted R² (fraction of variance)", title=f"stepwise path ({rule.get('stepwise', {}).get('criterion', '?')})")
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
        ax.set(xlabel=axis_label(ind), ylabel=LOSS_LABEL, title=ind)
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
    """Eval loss against subset size n: rule-selected vs random subsets. Every seed is a point;
    the line joins the means (an sd over 2-3 seeds says little, so none is drawn)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sizes = summary["n"].astype(float)
    log_x = len(sizes) > 0 and sizes.max() / sizes.min() > 5
    for method, color, dodge in (("rule", RULE_COLOR, -0.01), ("random", RANDOM_COLOR, 0.01)):
        g = summary[summary["method"] == method].sort_values("n")
        if g.empty:
            continue
        # dodge the two methods by 1% of n so their points do not overlap
        ax.plot(g["n"] * (1 + dodge), g["loss_mean"], "-", color=color, label=f"{method} (mean)")
        xs = [n * (1 + dodge) for n, losses in zip(g["n"], g["losses"], strict=True) for _ in str(losses).split(";")]
        ys = [float(v) for losses in g["losses"] for v in str(losses).split(";")]
        ax.scatter(xs, ys, color=color, s=16, alpha=0.8, label=f"{method} (each seed)")
    if log_x:
        ax.set_xscale("log")
    ax.set(xlabel="selected samples n (count)", ylabel=LOSS_LABEL, title="rule-guided vs random selection")
    ax.legend(fontsize=8)
    _save(fig, out)


def plot_coefficients(rule: dict[str, Any], out: str) -> None:
    """Standardized coefficients (SD change of log loss per SD of the indicator) with their 95 %
    intervals: the indicators' effects on one comparable scale (raw coefficients are not)."""
    plt = _pyplot()
    std = rule.get("standardized") or {}
    names = [n for n in rule["indicators"] if n in std]
    fig, ax = plt.subplots(figsize=(5.5, 0.6 * max(len(names), 1) + 1.4))
    ys = list(range(len(names)))[::-1]
    for y, name in zip(ys, names, strict=True):
        b, (lo, hi) = std[name]["coefficient"], std[name]["conf_int_95"]
        color = RULE_COLOR if (lo > 0 or hi < 0) else RANDOM_COLOR  # interval excludes 0 or not
        ax.errorbar([b], [y], xerr=[[b - lo], [hi - b]], fmt="o", capsize=4, color=color)
    ax.axvline(0, color="black", lw=0.8, ls="--")
    ax.set_yticks(ys, names)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set(xlabel="standardized coefficient (SD of log loss per SD of indicator)",
           title="rule coefficients, 95 % intervals" if names else "the rule chose no indicator")
    _save(fig, out)


def _cmd_plot_fit(args: argparse.Namespace) -> int:
    import pandas as pd

    with open(args.rule, encoding="utf-8") as fh:
        rule = json.load(fh)
    table = pd.read_csv(args.table, sep="\t")
    plot_fit(rule, table[table["kind"] == "mixture"], args.out)  # the rows the rule was fitted on
    if args.coefficients:
        plot_coefficients(rule, args.coefficients)
    return 0


def _cmd_plot_selection(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import write_tsv

    summary = summarize_runs(pd.read_csv(args.table, sep="\t"))
    write_tsv(summary, args.out)
    plot_selection(summary, args.plot)
    if args.html:
        from .htmlreport import frame_html, write_page

        write_page("Rule-guided vs random selection", [(
            "Eval loss per method and n", "mean and sd (ddof 1) over seeds; `losses` lists every seed's loss",
            frame_html(summary))], args.html)
    return 0


def register(sub: Any) -> None:
    """Add `plot-fit` and `plot-selection`."""
    p = sub.add_parser("plot-fit", help="predicted vs observed log loss and the stepwise path")
    p.add_argument("--rule", required=True, help="results/analysis/rule.json")
    p.add_argument("--table", required=True, help="results/analysis/table.tsv")
    p.add_argument("--out", required=True, help="fit.png (fit.svg is written beside it)")
    p.add_argument("--coefficients", default=None,
                   help="also plot the standardized coefficients with 95 %% intervals to this .png (+ .svg)")
    p.set_defaults(func=_cmd_plot_fit)
    p = sub.add_parser("plot-selection", help="rule-guided vs random selection: loss per n")
    p.add_argument("--table", required=True, help="collected table of the sel-* datasets")
    p.add_argument("--out", required=True, help="selection.tsv: mean, sd and every seed's loss per method and n")
    p.add_argument("--plot", required=True, help="selection.png (selection.svg is written beside it)")
    p.add_argument("--html", default=None, help="also write the table as an HTML page (for the Snakemake report)")
    p.set_defaults(func=_cmd_plot_selection)
