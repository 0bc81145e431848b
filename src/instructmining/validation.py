"""Can the fitted rule be trusted? Held-out mixtures, bootstrap stability and the seed-noise floor.

`make-heldout` draws held-000 … : random mixtures like the paper's (r_s ~ U(0,1) per source), from
a seed stream of their own (derive_seed(seed, "heldout")), so they stay the same whatever
mixtures.n or mixtures.design is. They are finetuned and scored like every dataset but collected
into results/analysis/heldout.tsv, which fit_rule never reads (it reads table.tsv and fits on
kind == mixture rows only).

`validate-rule` writes results/analysis/validation.json:
- heldout: the rule.json applied to the held-out mixtures' indicators (selection.predict); R² =
  1 - SSE / SST around the held-out mean (regression.loo_r2), its 95 % percentile bootstrap interval
  over held-out mixtures, and Spearman's rho of predicted vs observed log loss; and the
  decomposition of the held-out error into a level offset (bias = mean(predicted - observed), with
  its bootstrap interval; bias_share = bias² / MSE) and the rest. A rule can rank unseen mixtures
  well (high Spearman) and still lose R² to one constant offset: what a finetune of data unlike the
  fitting mixtures adds to every loss. The verdict uses R² as it is; the decomposition says why;
- cv: leave-one-out over the whole stepwise procedure (from rule.json; regression.fit_rule);
- bootstrap_inclusion: the share of B resamples of the fitting mixtures (with replacement) in
  which the stepwise selection, rerun with rule.json's own settings, keeps each indicator;
- seed_noise: the log-loss variance between finetunes of the same data that differ only in seed
  (mix-NNN-rep<s>; table.seed_noise) against the variance over mixtures; 1 - noise / total is the
  largest R² any rule can reach on these mixtures; heldout.noise_ceiling_r2 is the same bound for
  the held-out mixtures (1 - noise var / their log-loss variance);
- verdict: see VERDICT_NOTE."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from .errors import InstructMiningError

LOG = logging.getLogger("instructmining.validation")
MIN_HELDOUT = 3  # R² over 2 points is 1 or undefined; a bootstrap needs a few more
VERDICT_NOTE = (
    "established only if all hold: the rule keeps at least one indicator; at least "
    f"{MIN_HELDOUT} held-out mixtures; the seed-noise floor is measured (mixtures.repeats) and leaves "
    "a positive share of the loss variance explainable (1 - noise var / total var > 0); and the lower "
    "end of the 95 % bootstrap interval of the held-out R² is above 0, i.e. the rule predicts mixtures "
    "it never saw better than their own mean by more than resampling them can explain. "
    "Otherwise: not established (the reasons list what failed).")


# --- held-out mixtures ----------------------------------------------------------------------
def heldout_mixtures(pool: Any, sources: list[str], n: int, size: int, seed: int,
                     shortfall: str) -> list[tuple[str, Any, dict]]:
    """[(held-NNN, rows, manifest row)]: paper-style random mixtures on their own seed stream."""
    from . import dataset_names
    from .io import derive_seed
    from .mixing import make_mixtures

    out = []
    for i, (_, rows, meta) in enumerate(make_mixtures(pool, sources, n, size, derive_seed(seed, "heldout"), shortfall)):
        name = dataset_names.heldout(i)
        out.append((name, rows, {**meta, "dataset": name, "kind": "heldout"}))
    return out


def _cmd_make_heldout(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import read_parquet, write_parquet, write_tsv
    from .mixing import _out_files

    pool = read_parquet(args.pool)
    sources = json.loads(args.sources) or sorted(pool.loc[pool["role"] == "train", "source"].unique())
    made = heldout_mixtures(pool, sources, args.n, args.size, args.seed, args.shortfall)
    files = _out_files(args.out, [name for name, _, _ in made])
    for name, rows, meta in made:
        write_parquet(rows, files[name], metadata={"instructmining.kind": "heldout",
                                                   "instructmining.seed": str(meta["seed"])})
    write_tsv(pd.DataFrame([m for _, _, m in made]), args.manifest)
    LOG.info("wrote %d held-out mixtures of %d samples from %s", len(made), args.size, sources)
    return 0


# --- the statistics -------------------------------------------------------------------------
def heldout_scores(rule: dict[str, Any], heldout: Any, boot: int, seed: int) -> dict[str, Any]:
    """Predicted vs observed log loss on the held-out mixtures: R² (with a 95 % percentile
    bootstrap interval over mixtures), Spearman's rho, RMSE, and the level offset (bias, its
    interval, and its share of the mean squared error)."""
    import numpy as np
    from scipy.stats import spearmanr

    from .regression import RESPONSE, _num, loo_r2
    from .selection import predict

    y = heldout[RESPONSE].to_numpy(dtype=float)
    pred = predict(rule, heldout, key="dataset") if len(heldout) else np.array([])
    out: dict[str, Any] = {"n": len(heldout), "datasets": [str(d) for d in heldout.get("dataset", [])],
                           "observed": y.tolist(), "predicted": [float(p) for p in pred],
                           "r2": None, "r2_ci_95": [None, None], "spearman": None, "spearman_p": None,
                           "rmse": None, "bias": None, "bias_ci_95": [None, None], "bias_share": None}
    if len(y) < 2:
        return out
    out["r2"] = loo_r2(y, pred)
    mse = float(np.mean((y - pred) ** 2))
    out["rmse"] = float(np.sqrt(mse))
    out["bias"] = float(np.mean(pred - y))
    out["bias_share"] = out["bias"] ** 2 / mse if mse > 0 else None
    if np.ptp(y) > 0 and np.ptp(pred) > 0:
        rho, p = spearmanr(pred, y)
        out["spearman"], out["spearman_p"] = _num(rho), _num(p)  # p is NaN for 2 points
    rng = np.random.default_rng(seed)
    draws, biases = [], []
    for _ in range(boot):
        idx = rng.integers(0, len(y), len(y))
        r2 = loo_r2(y[idx], pred[idx])
        biases.append(float(np.mean(pred[idx] - y[idx])))
        if r2 is not None:
            draws.append(r2)
    if draws:
        out["r2_ci_95"] = [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]
    if biases:
        out["bias_ci_95"] = [float(np.percentile(biases, 2.5)), float(np.percentile(biases, 97.5))]
    out["bootstrap_draws"] = len(draws)
    return out


def bootstrap_inclusion(table: Any, candidates: list[str], boot: int, seed: int,
                        **stepwise_kw: Any) -> dict[str, float]:
    """Share of `boot` resamples (mixtures drawn with replacement) in which the stepwise selection
    keeps each candidate."""
    import numpy as np

    from .regression import stepwise

    table = table.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(candidates, 0)
    for _ in range(boot):
        sample = table.iloc[rng.integers(0, len(table), len(table))].reset_index(drop=True)
        chosen, _ = stepwise(sample, candidates, **stepwise_kw)
        for c in chosen:
            counts[c] += 1
    return {c: (counts[c] / boot if boot else None) for c in candidates}


def noise_share(table: Any) -> dict[str, Any]:
    """The seed-noise floor (table.seed_noise, from mix-NNN-rep<s> rows) against the variance of
    log loss over the fitting mixtures: explainable_share = 1 - noise var / total var."""
    from .regression import RESPONSE
    from .table import seed_noise

    mixtures = table[table["kind"] == "mixture"] if "kind" in table.columns else table
    total = float(mixtures[RESPONSE].astype(float).var(ddof=1)) if len(mixtures) > 1 else None
    noise = seed_noise(table)
    out: dict[str, Any] = {"pairs": len(noise["pairs"]) if noise else 0, "total_var": total,
                           "sd_log_loss": noise["sd_log_loss"] if noise else None,
                           "noise_var": noise["sd_log_loss"] ** 2 if noise else None, "explainable_share": None}
    if noise and total:
        out["explainable_share"] = 1.0 - out["noise_var"] / total
    return out


def heldout_ceiling(held: dict[str, Any], noise: dict[str, Any]) -> float | None:
    """1 - seed-noise variance / variance of the held-out log losses: the held-out R² a rule that knew
    each mixture's expected loss exactly would still get (in expectation), since every observed
    loss carries one finetune's seed noise. None without noise or with fewer than 2 held-out."""
    import numpy as np

    y = np.asarray(held["observed"], dtype=float)
    if noise.get("noise_var") is None or len(y) < 2 or np.var(y, ddof=1) <= 0:
        return None
    return float(1.0 - noise["noise_var"] / np.var(y, ddof=1))


def verdict(indicators: list[str], heldout: dict[str, Any], noise: dict[str, Any]) -> tuple[str, list[str]]:
    """("established" | "not established", reasons it is not) by VERDICT_NOTE."""
    reasons = []
    if not indicators:
        reasons.append("the rule keeps no indicator")
    if heldout["n"] < MIN_HELDOUT:
        reasons.append(f"{heldout['n']} held-out mixture(s) < {MIN_HELDOUT} (mixtures.heldout)")
    if noise["explainable_share"] is None:
        reasons.append("seed-noise floor not measured (mixtures.repeats)")
    elif noise["explainable_share"] <= 0:
        reasons.append(f"seed noise explains all loss variance (explainable share {noise['explainable_share']:.3g})")
    low = heldout["r2_ci_95"][0]
    if heldout["n"] >= MIN_HELDOUT and (low is None or low <= 0):
        shown = "undefined" if low is None else f"{low:.3g}"
        reasons.append(f"held-out R² {heldout['r2'] if heldout['r2'] is None else round(heldout['r2'], 4)} "
                       f"with 95 % bootstrap lower bound {shown} <= 0")
    return ("not established" if reasons else "established"), reasons


def validate(rule: dict[str, Any], table: Any, heldout: Any, boot: int, seed: int) -> dict[str, Any]:
    """validation.json's content (without provenance). `table` is table.tsv (mixtures + reps);
    `heldout` is heldout.tsv (or an empty frame). Nothing here refits rule.json."""
    from .io import derive_seed
    from .regression import RESPONSE, check_table

    sw = rule["stepwise"]
    kw = {k: sw[k] for k in ("criterion", "p_enter", "p_remove", "max_vif")}
    mixtures = table[table["kind"] == "mixture"] if "kind" in table.columns else table
    check_table(mixtures, sw["candidates"], RESPONSE)
    held = heldout_scores(rule, heldout, boot, derive_seed(seed, "validation", "heldout"))
    noise = noise_share(table)
    held["noise_ceiling_r2"] = heldout_ceiling(held, noise)
    label, reasons = verdict(rule["indicators"], held, noise)
    return {
        "verdict": label, "reasons": reasons, "verdict_rule": VERDICT_NOTE,
        "rule": {"indicators": rule["indicators"], "coefficients": rule["coefficients"], "r2": rule["r2"],
                 "n": rule["n"]},
        "heldout": held,
        "cv": {**rule.get("cv_r2", {}), "note": rule.get("cv_note")},
        "bootstrap_inclusion": {"resamples": boot, "settings": kw, "frequency": bootstrap_inclusion(
            mixtures, sw["candidates"], boot, derive_seed(seed, "validation", "inclusion"), **kw)},
        "seed_noise": noise,
    }


def write_validation_html(result: dict[str, Any], out: str) -> None:
    """validation.json as one report page."""
    import pandas as pd

    from .htmlreport import frame_html, json_html, write_page

    held, noise, cv = result["heldout"], result["seed_noise"], result["cv"]
    summary = pd.DataFrame([{
        "verdict": result["verdict"], "held-out n": held["n"], "held-out R²": held["r2"],
        "R² 95% low": held["r2_ci_95"][0], "R² 95% high": held["r2_ci_95"][1], "Spearman": held["spearman"],
        "held-out bias": held.get("bias"), "bias share of MSE": held.get("bias_share"),
        "LOO-procedure R²": cv.get("loo_procedure"), "seed-noise sd": noise["sd_log_loss"],
        "max attainable R²": noise["explainable_share"],
        "held-out R² ceiling": held.get("noise_ceiling_r2")}])
    pairs = pd.DataFrame({"dataset": held["datasets"], "observed log loss": held["observed"],
                          "predicted log loss": held["predicted"]})
    incl = pd.DataFrame([{"indicator": k, "inclusion frequency": v, "in rule": k in result["rule"]["indicators"]}
                         for k, v in result["bootstrap_inclusion"]["frequency"].items()])
    why = "; ".join(result["reasons"]) or "every condition holds"
    write_page(f"Validation of the rule: {result['verdict']}", [
        ("Verdict", result["verdict_rule"], f"<p><b>{result['verdict']}</b>: {why}</p>" + frame_html(summary)),
        ("Held-out mixtures", "rule.json applied to mixtures never used in fitting", frame_html(pairs)),
        ("Bootstrap inclusion", f"{result['bootstrap_inclusion']['resamples']} resamples of the fitting "
         "mixtures; share in which stepwise selection keeps each indicator", frame_html(incl)),
        ("validation.json", "", json_html(result)),
    ], out)


def _cmd_validate(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import provenance, write_json
    from .table import FIXED

    rule = json.loads(open(args.rule, encoding="utf-8").read())
    table = pd.read_csv(args.table, sep="\t")
    if len(args.heldout) > 1:
        raise InstructMiningError(f"--heldout takes one table, got {args.heldout}")
    heldout = pd.read_csv(args.heldout[0], sep="\t") if args.heldout else pd.DataFrame(columns=FIXED)
    if set(heldout["dataset"]) & set(table["dataset"]):
        raise InstructMiningError(f"{args.heldout[0]}: held-out datasets also in {args.table}")
    result = validate(rule, table, heldout, args.bootstrap, args.seed)
    result["provenance"] = provenance(seed=args.seed, config={"bootstrap": args.bootstrap})
    LOG.info("verdict: %s (%s); held-out R2 %s, CI %s", result["verdict"], "; ".join(result["reasons"]),
             result["heldout"]["r2"], result["heldout"]["r2_ci_95"])
    write_json(result, args.out)
    if args.html:
        write_validation_html(result, args.html)
    return 0


def register(sub: Any) -> None:
    """Add `make-heldout` and `validate-rule`."""
    from .mixing import add_mixture_args

    p = sub.add_parser("make-heldout", help="write held-NNN: held-out random mixtures (never fitted on)")
    add_mixture_args(p, "held-out mixtures", "config seed (their own stream is derived from it)")
    p.add_argument("--out", nargs="+", required=True, help="one held-NNN.parquet per mixture")
    p.add_argument("--manifest", required=True, help="heldout.tsv: proportions per mixture")
    p.set_defaults(func=_cmd_make_heldout)

    p = sub.add_parser("validate-rule", help="held-out R², bootstrap inclusion, noise floor -> validation.json")
    p.add_argument("--rule", required=True, help="results/analysis/rule.json")
    p.add_argument("--table", required=True, help="results/analysis/table.tsv (what the rule was fitted on)")
    p.add_argument("--heldout", nargs="*", default=[], help="results/analysis/heldout.tsv (none given: no held-out mixtures)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    p.add_argument("--seed", type=int, required=True, help="config seed (bootstrap streams are derived from it)")
    p.add_argument("--out", required=True, help="validation.json")
    p.add_argument("--html", default=None, help="also write an HTML page (for the Snakemake report)")
    p.set_defaults(func=_cmd_validate)
