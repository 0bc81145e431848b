"""The rule: stepwise OLS of log eval loss on dataset-level indicators (the paper's Section 3).

`fit-rule` reads results/analysis/table.tsv (one row per mixture: dataset, kind, loss, log_loss and
one column per indicator), chooses indicators by bidirectional stepwise selection (p-value
thresholds, or AIC) and writes the fitted rule with its statistics. Coefficients are on the raw
indicator scale (nothing is standardized), like the paper's
v1 rule: log L = 1.0694 - 0.1498 reward + 8.257e-5 output_length - 0.9350 knn6.

A model is only fitted when it is estimable and interpretable: n > k + 1 (at least one residual
degree of freedom), a full-rank design, and every VIF <= max_vif (default 10, the usual rule of
thumb). Stepwise selection skips a candidate that would break these; a fixed model that breaks
them is refused with a FitError naming the cause."""

from __future__ import annotations

import argparse
import json
import logging
import math
from typing import Any

from .errors import DataError, InstructMiningError

LOG = logging.getLogger("instructmining.regression")
DEFAULT_MAX_VIF = 10.0
# The fewest datasets (mixtures) a rule can be fitted on: one indicator + intercept needs n > k + 1 = 2.
# config.check_config refuses a smaller mixtures.n before the first job.
MIN_DATASETS = 3
RESPONSE = "log_loss"
CV_NOTE = ("loo_procedure: leave-one-out over the whole stepwise procedure (selection refitted "
           "without the held-out dataset; the honest estimate); loo_fixed_model: PRESS of the final "
           "indicator set refitted without each dataset (optimistic: the set was chosen on all data). "
           "Both are 1 - sum((y - y_loo)^2) / sum((y - mean y)^2).")


class FitError(InstructMiningError):
    """The regression cannot be fitted as asked (too few datasets, collinear indicators)."""


def _num(x: Any) -> float | None:
    """A JSON-safe float (NaN/inf become None: JSON has no NaN and rule.json must be strict)."""
    x = float(x)
    return x if math.isfinite(x) else None


def check_table(table: Any, names: list[str], response: str = RESPONSE, path: str = "table") -> None:
    """Raise DataError naming the dataset and column of a missing or non-finite value."""
    import numpy as np

    for col in [response, *names]:
        if col not in table.columns:
            raise DataError(path, None, col, f"column missing (columns: {', '.join(map(str, table.columns))})")
        values = table[col].to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            row = table.iloc[int(np.argmax(bad))]
            where = f"dataset {row['dataset']}" if "dataset" in table.columns else None
            raise DataError(path, where, col, f"value {values[bad][0]!r} is not a finite number")


def design(table: Any, names: list[str]) -> Any:
    """The design matrix: an intercept column then the indicators, raw scale."""
    import numpy as np

    return np.column_stack([np.ones(len(table))] + [table[n].to_numpy(dtype=float) for n in names])


def vifs(x: Any) -> list[float]:
    """Variance inflation factor of each non-intercept column of a design with intercept first."""
    import numpy as np

    out = []
    for j in range(1, x.shape[1]):
        others = np.delete(x, j, axis=1)
        beta, *_ = np.linalg.lstsq(others, x[:, j], rcond=None)
        resid = x[:, j] - others @ beta
        centered = x[:, j] - x[:, j].mean()
        r2 = 1.0 - (resid @ resid) / (centered @ centered) if centered @ centered > 0 else 1.0
        out.append(math.inf if r2 >= 1.0 else 1.0 / (1.0 - r2))
    return out


def scaled_condition_number(x: Any) -> float:
    """Condition number of the design with unit-length columns (Belsley): scale-free, unlike the
    raw one, which output_length in hundreds of tokens would inflate by itself."""
    import numpy as np

    norms = np.linalg.norm(x, axis=0)
    norms[norms == 0] = 1.0
    return float(np.linalg.cond(x / norms))


def model_problem(table: Any, names: list[str], max_vif: float = DEFAULT_MAX_VIF) -> str | None:
    """Why `names` cannot be fitted on `table` (None if it can)."""
    import numpy as np

    n, k = len(table), len(names)
    if n <= k + 1:
        return f"n = {n} datasets is too few for {k} indicator(s) + intercept (need n > k + 1 = {k + 1})"
    x = design(table, names)
    norms = np.linalg.norm(x, axis=0)
    norms[norms == 0] = 1.0
    rank = int(np.linalg.matrix_rank(x / norms))
    if rank < k + 1:
        const = [nm for nm in names if np.ptp(table[nm].to_numpy(dtype=float)) == 0]
        why = f"constant column(s) {const}" if const else "a linear combination of the others"
        return f"design of {names} is rank-deficient (rank {rank} < {k + 1}): {why}"
    bad = {nm: v for nm, v in zip(names, vifs(x), strict=True) if v > max_vif}
    if bad:
        shown = ", ".join(f"{nm} VIF={v:.3g}" for nm, v in bad.items())
        return f"indicators {names} are collinear: {shown} > max_vif {max_vif:g}"
    return None


def ols(table: Any, names: list[str], response: str = RESPONSE) -> Any:
    """statsmodels OLS results of response ~ 1 + names (raw scale)."""
    import statsmodels.api as sm

    return sm.OLS(table[response].to_numpy(dtype=float), design(table, names)).fit()


def stepwise(table: Any, candidates: list[str], criterion: str = "pvalue", p_enter: float = 0.05,
             p_remove: float = 0.10, max_vif: float = DEFAULT_MAX_VIF,
             response: str = RESPONSE) -> tuple[list[str], list[dict[str, Any]]]:
    """Bidirectional stepwise selection from the empty model; returns (chosen, steps).

    pvalue: enter the candidate with the smallest p if p < p_enter, then remove the chosen one with
    the largest p while p > p_remove. aic: enter/remove whichever single change lowers AIC most.
    A candidate whose model is not estimable (see model_problem) is skipped; the final "stop" step
    lists the candidates skipped in the last forward trial and why."""
    if criterion not in ("pvalue", "aic"):
        raise InstructMiningError(f"analysis.criterion: {criterion!r} is not one of pvalue, aic")
    if criterion == "pvalue" and p_remove < p_enter:
        # p_remove < p_enter lets a variable enter and leave forever.
        raise InstructMiningError(f"analysis.p_remove ({p_remove}) must be >= analysis.p_enter ({p_enter})")
    chosen: list[str] = []
    current = ols(table, chosen, response)
    steps = [_step(0, "start", None, None, chosen, current)]
    seen = {()}
    for _ in range(4 * len(candidates) + 4):
        changed = False
        # forward
        trials, skipped = [], []
        for cand in (c for c in candidates if c not in chosen):
            problem = model_problem(table, chosen + [cand], max_vif)
            if problem:
                skipped.append(f"{cand}: {problem}")
                continue
            res = ols(table, chosen + [cand], response)
            trials.append((float(res.pvalues[-1]) if criterion == "pvalue" else float(res.aic), cand, res))
        if trials:
            value, cand, res = min(trials, key=lambda t: (t[0], t[1]))
            better = value < p_enter if criterion == "pvalue" else value < current.aic
            if better and tuple(sorted(chosen + [cand])) not in seen:
                chosen, current, changed = chosen + [cand], res, True
                seen.add(tuple(sorted(chosen)))
                steps.append(_step(len(steps), "enter", cand, value, chosen, current))
        # backward
        while chosen:
            if criterion == "pvalue":
                pvals = [float(p) for p in current.pvalues[1:]]
                j = max(range(len(chosen)), key=lambda i: (pvals[i], chosen[i]))
                if not pvals[j] > p_remove:
                    break
                drop, value, res = chosen[j], pvals[j], None
            else:
                fits = [(float(ols(table, [c for c in chosen if c != d], response).aic), d) for d in chosen]
                value, drop = min(fits)
                if not value < current.aic:
                    break
                res = None
            rest = [c for c in chosen if c != drop]
            if tuple(sorted(rest)) in seen and tuple(sorted(rest)) != ():
                break
            chosen, current, changed = rest, res or ols(table, rest, response), True
            steps.append(_step(len(steps), "remove", drop, value, chosen, current))
        if not changed:
            break
    steps.append({**_step(len(steps), "stop", None, None, chosen, current), "skipped": "; ".join(skipped)})
    return chosen, steps


def _step(i: int, action: str, name: str | None, value: float | None, chosen: list[str], res: Any) -> dict:
    return {"step": i, "action": action, "indicator": name, "value": None if value is None else _num(value),
            "indicators": list(chosen), "k": len(chosen), "r2": _r2(res, False),
            "adj_r2": _r2(res, True), "aic": _num(res.aic), "skipped": ""}


def _r2(res: Any, adjusted: bool) -> float | None:
    """R^2 (adjusted or not); exactly 0 for the intercept-only model, where statsmodels gives
    rounding noise such as 1e-16."""
    if res.df_model == 0:
        return 0.0
    return _num(res.rsquared_adj if adjusted else res.rsquared)


def loo_r2(y: Any, pred: Any) -> float | None:
    """Cross-validated R^2 = 1 - PRESS / total sum of squares."""
    import numpy as np

    y, pred = np.asarray(y, float), np.asarray(pred, float)
    sst = float(((y - y.mean()) ** 2).sum())
    return _num(1.0 - float(((y - pred) ** 2).sum()) / sst) if sst > 0 else None


def loo_procedure(table: Any, candidates: list[str], response: str = RESPONSE,
                  **kw: Any) -> tuple[list[float], dict[str, int]]:
    """Leave-one-out predictions of the whole stepwise procedure, and how often each candidate
    was chosen across the folds (selection stability)."""
    import numpy as np

    preds, freq = [], dict.fromkeys(candidates, 0)
    for i in range(len(table)):
        train = table.drop(index=table.index[i])
        chosen, _ = stepwise(train, candidates, response=response, **kw)
        for c in chosen:
            freq[c] += 1
        beta = ols(train, chosen, response).params
        preds.append(float(design(table.iloc[[i]], chosen)[0] @ np.asarray(beta)))
    return preds, freq


def fit_rule(table: Any, candidates: list[str], criterion: str = "pvalue", p_enter: float = 0.05,
             p_remove: float = 0.10, max_vif: float = DEFAULT_MAX_VIF, response: str = RESPONSE,
             path: str = "table") -> dict[str, Any]:
    """Choose indicators stepwise, fit the final OLS and return the rule (rule.json content
    without provenance). Raises FitError when even the empty model cannot be fitted."""
    import numpy as np

    check_table(table, candidates, response, path)
    table = table.reset_index(drop=True)
    if len(table) < MIN_DATASETS:
        raise FitError(f"{path}: n = {len(table)} datasets; the regression needs at least {MIN_DATASETS}")
    kw = {"criterion": criterion, "p_enter": p_enter, "p_remove": p_remove, "max_vif": max_vif}
    chosen, steps = stepwise(table, candidates, response=response, **kw)
    rule = describe(table, chosen, max_vif, response)
    y = table[response].to_numpy(dtype=float)
    preds, freq = loo_procedure(table, candidates, response=response, **kw)
    res = ols(table, chosen, response)
    hat = np.clip(res.get_influence().hat_matrix_diag, None, 1 - 1e-12)
    rule["cv_r2"] = {"loo_procedure": loo_r2(y, preds), "loo_fixed_model": loo_r2(y, y - res.resid / (1 - hat))}
    rule["cv_note"] = CV_NOTE
    rule["selection_frequency"] = freq
    rule["stepwise"] = {**kw, "candidates": list(candidates), "steps": steps}
    rule["datasets"] = [str(d) for d in table["dataset"]] if "dataset" in table.columns else []
    return rule


def describe(table: Any, names: list[str], max_vif: float = DEFAULT_MAX_VIF,
             response: str = RESPONSE) -> dict[str, Any]:
    """Fit response ~ 1 + names and report every statistic rule.json carries; refuses (FitError)
    an inestimable or collinear model."""
    problem = model_problem(table, names, max_vif)
    if problem:
        raise FitError(problem)
    res = ols(table, names, response)
    terms = ["intercept", *names]
    ci = res.conf_int(alpha=0.05)
    x = design(table, names)
    return {
        "response": response,
        "scale": "raw indicator units (nothing standardized)",
        "indicators": list(names),
        "coefficients": {t: _num(v) for t, v in zip(terms, res.params, strict=True)},
        "std_errors": {t: _num(v) for t, v in zip(terms, res.bse, strict=True)},
        "t_values": {t: _num(v) for t, v in zip(terms, res.tvalues, strict=True)},
        "p_values": {t: _num(v) for t, v in zip(terms, res.pvalues, strict=True)},
        "conf_int_95": {t: [_num(lo), _num(hi)] for t, (lo, hi) in zip(terms, ci, strict=True)},
        "vif": {nm: _num(v) for nm, v in zip(names, vifs(x), strict=True)},
        "max_vif": max_vif,
        "condition_number_scaled": _num(scaled_condition_number(x)),
        "r2": _r2(res, False), "adj_r2": _r2(res, True),
        "f_statistic": _num(res.fvalue) if names else None,
        "f_pvalue": _num(res.f_pvalue) if names else None,
        "aic": _num(res.aic), "bic": _num(res.bic),
        "n": int(res.nobs), "df_resid": int(res.df_resid),
        "residual_sd": _num(math.sqrt(res.mse_resid)) if res.df_resid > 0 else None,
        "standardized": standardized(table, names, res, ci, response),
    }


def standardized(table: Any, names: list[str], res: Any, ci: Any, response: str = RESPONSE) -> dict[str, Any]:
    """Coefficients and 95 % intervals in SD units (b * sd(x) / sd(y)): comparable across
    indicators whose raw scales differ by orders of magnitude (tokens vs reward logits)."""
    sd_y = float(table[response].astype(float).std(ddof=1))
    out = {}
    for i, name in enumerate(names, start=1):
        k = float(table[name].astype(float).std(ddof=1)) / sd_y if sd_y > 0 else float("nan")
        out[name] = {"coefficient": _num(res.params[i] * k), "conf_int_95": [_num(ci[i][0] * k), _num(ci[i][1] * k)]}
    return out


def _cmd_fit_rule(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import provenance, write_json, write_tsv
    from .table import coefficient_frame, seed_noise

    table = pd.read_csv(args.table, sep="\t")
    # The rule is fitted on the mixtures only; rep rows (same data, another seed) measure noise.
    mixtures = table[table["kind"] == "mixture"] if "kind" in table.columns else table
    candidates = args.candidates or [c for c in table.columns if c not in ("dataset", "kind", "loss", RESPONSE)]
    validity = None
    if args.validity:
        # A scorer that does not rank answers better than chance (or ranks them backwards) is no
        # quality finding, whatever its p-value: it never enters the stepwise candidates.
        from .validity import read_validity, usable_candidates

        candidates, excluded = usable_candidates(candidates, read_validity(args.validity), args.validity)
        validity = {"table": args.validity, "kept": candidates, "excluded": excluded}
        for name, why in excluded.items():
            LOG.info("left out of the candidates: %s (%s)", name, why)
    rule = fit_rule(mixtures, candidates, args.criterion, args.p_enter, args.p_remove, args.max_vif, path=args.table)
    rule["validity"] = validity
    rule["seed_noise"] = seed_noise(table)
    if rule["stepwise"]["steps"][-1]["skipped"]:
        LOG.info("candidates not estimable with the chosen ones: %s", rule["stepwise"]["steps"][-1]["skipped"])
    # The scorers behind the indicators: `instructmining select` needs them to score new data on
    # the same scales (a different reward model or tokenizer changes every coefficient's meaning).
    from .selection import record_models

    rule.update(record_models(json.loads(args.models), rule["indicators"], args.out))
    rule["options"] = json.loads(args.options)
    rule["provenance"] = provenance(config={"criterion": args.criterion, "p_enter": args.p_enter,
                                            "p_remove": args.p_remove, "candidates": args.candidates,
                                            "max_vif": args.max_vif, "validity": args.validity})
    LOG.info("rule: %s (R2 %.3f, LOO-procedure R2 %s)", rule["coefficients"], rule["r2"],
             rule["cv_r2"]["loo_procedure"])
    write_json(rule, args.out)
    write_tsv(coefficient_frame(rule), args.coefficients)
    steps = pd.DataFrame(rule["stepwise"]["steps"])
    steps["indicators"] = steps["indicators"].map(";".join)
    write_tsv(steps, args.steps)
    if args.html:
        write_rule_html(rule, coefficient_frame(rule), steps, args.html)
    return 0


def write_rule_html(rule: dict[str, Any], coefficients: Any, steps: Any, out: str) -> None:
    """The rule as one report page: the formula, the fit statistics, the coefficient table, the
    standardized coefficients, the stepwise path and rule.json itself."""
    import pandas as pd

    from .htmlreport import frame_html, json_html, write_page

    terms = " ".join(f"{'+' if (b or 0) >= 0 else '-'} {abs(b or 0):.4g} {n}"
                     for n, b in ((n, rule["coefficients"][n]) for n in rule["indicators"]))
    formula = f"log L = {rule['coefficients']['intercept']:.4g} {terms}".strip()
    cv = rule.get("cv_r2", {})
    stats = pd.DataFrame([{"n datasets": rule["n"], "R²": rule["r2"], "adjusted R²": rule["adj_r2"],
                           "LOO-procedure R²": cv.get("loo_procedure"), "LOO fixed-model R²": cv.get("loo_fixed_model"),
                           "F p-value": rule.get("f_pvalue"), "residual sd": rule.get("residual_sd"),
                           "seed-noise sd": (rule.get("seed_noise") or {}).get("sd_log_loss")}])
    std = pd.DataFrame([{"indicator": n, "standardized coefficient": v["coefficient"],
                         "ci_low": v["conf_int_95"][0], "ci_high": v["conf_int_95"][1]}
                        for n, v in (rule.get("standardized") or {}).items()])
    validity = rule.get("validity") or {}
    left_out = pd.DataFrame([{"indicator": n, "why": w} for n, w in (validity.get("excluded") or {}).items()],
                            columns=["indicator", "why"])
    validity_note = (f"from {validity['table']}: indicators whose pairwise accuracy on answers of known order does "
                     "not clear chance (or is below it) are not candidates; kept: " + ", ".join(validity["kept"])
                     if validity else "analysis.require_valid_indicators is off: every indicator was a candidate")
    write_page("The fitted rule", [
        ("Formula", "raw indicator units; lower predicted log loss = better data", f"<p><code>{formula}</code></p>"),
        ("Indicators left out (validity)", validity_note, frame_html(left_out) if len(left_out) else "<p>none</p>"),
        ("Fit", CV_NOTE, frame_html(stats)),
        ("Coefficients", "estimate, standard error, t, p, 95 % interval and VIF per term (coefficients.tsv)",
         frame_html(coefficients)),
        ("Standardized coefficients", "SD of log loss per SD of the indicator, 95 % interval", frame_html(std)),
        ("Stepwise path", "one row per step (stepwise.tsv)", frame_html(steps)),
        ("rule.json", "as `instructmining select --rule` reads it", json_html(rule)),
    ], out)


def register(sub: Any) -> None:
    """Add `fit-rule`."""
    p = sub.add_parser("fit-rule", help="stepwise OLS of log eval loss on indicators -> rule.json")
    p.add_argument("--table", required=True, help="results/analysis/table.tsv")
    p.add_argument("--candidates", nargs="*", default=None, help="indicators to consider (default: all columns)")
    p.add_argument("--criterion", choices=["pvalue", "aic"], default="pvalue", help="stepwise entry/removal by p-value or AIC")
    p.add_argument("--p-enter", type=float, default=0.05, help="an indicator enters below this p-value")
    p.add_argument("--p-remove", type=float, default=0.10, help="an indicator leaves above this p-value")
    p.add_argument("--max-vif", type=float, default=DEFAULT_MAX_VIF, help="refuse collinear models above this VIF")
    p.add_argument("--models", default="{}", help="JSON: the scorers' model specs, recorded for `select`")
    p.add_argument("--options", default="{}", help="JSON: the scorers' options (max_length), recorded for `select`")
    p.add_argument("--validity", nargs="?", const=None, default=None,
                   help="indicator_validity.tsv: candidates whose status is chance or inverted are left out")
    p.add_argument("--out", required=True, help="rule.json")
    p.add_argument("--coefficients", required=True, help="coefficients.tsv")
    p.add_argument("--steps", required=True, help="stepwise.tsv: the selection path")
    p.add_argument("--html", default=None, help="also write the rule, coefficients and stepwise path as one HTML "
                   "page (for the Snakemake report)")
    p.set_defaults(func=_cmd_fit_rule)
