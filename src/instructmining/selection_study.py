"""`selection-study`: rule-selected minus random subsets of the unseen pool, paired by seed, with a
95 % interval per subset size n (results/analysis/selection_study.json).

Pairing. sel-rule-<n>-<s> and sel-random-<n>-<s> are finetuned with the same seed (base seed + s;
dataset_names.finetune_seed). The rule's top-n of the unseen pool does not depend on s, so the rule
arm varies only by finetune seed while the random arm varies by draw and finetune seed; each pair
shares the finetune seed, which removes the shared part of the seed noise from the difference. The
question answered is "does the rule's subset beat a random subset of the same size, averaged over
random draws and finetune seeds?".

Interval. d_s = loss(rule, n, s) - loss(random, n, s) over the k paired seeds; mean(d) +/-
t_{0.975, k-1} * sd(d) / sqrt(k) (paired t interval; it assumes the d_s are independent and roughly
normal, and needs k >= 2). Negative = the rule's subsets reach a lower eval loss. The verdict per n
says which side of 0 the interval lies on, or that it covers 0."""

from __future__ import annotations

import argparse
import logging
import math
from typing import Any

from .dataset_names import parse_selection

LOG = logging.getLogger("instructmining.selection_study")
INTERVAL_NOTE = ("d = loss(rule) - loss(random) per seed s, both finetuned with seed s; mean(d) +/- "
                 "t(0.975, k-1) * sd(d) / sqrt(k) over the k paired seeds (paired t interval). Negative "
                 "favours the rule. The rule's top-n is the same for every s: its runs differ only by "
                 "finetune seed.")


def paired_differences(runs: Any, column: str = "loss") -> list[dict[str, Any]]:
    """One row per subset size n: the paired seeds, the per-seed differences rule - random in
    `column`, their mean, sd, 95 % paired t interval and a verdict."""
    from scipy.stats import t

    values: dict[tuple[str, int, int], float] = {}
    for name, value in zip(runs["dataset"], runs[column].astype(float), strict=True):
        parsed = parse_selection(str(name))
        if parsed is None:
            raise ValueError(f"not a selection dataset: {name!r}")
        values[parsed] = float(value)
    out = []
    for n in sorted({n for _, n, _ in values}):
        seeds = sorted(s for m, nn, s in values if m == "rule" and nn == n and ("random", n, s) in values)
        diffs = [values[("rule", n, s)] - values[("random", n, s)] for s in seeds]
        k = len(diffs)
        mean = sum(diffs) / k if k else None
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (k - 1)) if k >= 2 else None
        low = high = None
        if sd is not None:
            half = float(t.ppf(0.975, k - 1)) * sd / math.sqrt(k)
            low, high = mean - half, mean + half
        if low is None:
            label = f"undetermined: {k} paired seed(s); the interval needs >= 2"
        elif high < 0:
            label = "rule better (interval below 0)"
        elif low > 0:
            label = "random better (interval above 0)"
        else:
            label = "no difference detected (interval covers 0)"
        out.append({"n": n, "seeds": seeds, "k": k, "rule": [values[("rule", n, s)] for s in seeds],
                    "random": [values[("random", n, s)] for s in seeds], "differences": diffs,
                    "mean_difference": mean, "sd_difference": sd, "ci_95": [low, high], "verdict": label})
    return out


def study(runs: Any) -> dict[str, Any]:
    """selection_study.json's content: the paired study on eval loss and on log loss."""
    return {"note": INTERVAL_NOTE, "loss": paired_differences(runs, "loss"),
            "log_loss": paired_differences(runs, "log_loss")}


def _cmd_selection_study(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import provenance, write_json

    result = study(pd.read_csv(args.table, sep="\t"))
    result["provenance"] = provenance()
    for row in result["loss"]:
        LOG.info("n = %d: rule - random = %s, 95%% CI %s over seeds %s: %s", row["n"], row["mean_difference"],
                 row["ci_95"], row["seeds"], row["verdict"])
    write_json(result, args.out)
    if args.html:
        from .htmlreport import frame_html, json_html, write_page

        frame = pd.DataFrame([{"n": r["n"], "paired seeds": ";".join(map(str, r["seeds"])),
                               "mean rule - random": r["mean_difference"], "ci_low": r["ci_95"][0],
                               "ci_high": r["ci_95"][1], "verdict": r["verdict"]} for r in result["loss"]])
        write_page("Selection study: rule minus random", [
            ("Eval loss difference per n", INTERVAL_NOTE, frame_html(frame)),
            ("selection_study.json", "", json_html(result))], args.html)
    return 0


def register(sub: Any) -> None:
    """Add `selection-study`."""
    p = sub.add_parser("selection-study", help="rule - random eval loss per n, paired by seed, 95 %% interval")
    p.add_argument("--table", required=True, help="results/analysis/selection_runs.tsv")
    p.add_argument("--out", required=True, help="selection_study.json")
    p.add_argument("--html", default=None, help="also write an HTML page (for the Snakemake report)")
    p.set_defaults(func=_cmd_selection_study)
