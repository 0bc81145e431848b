"""Random vs designed mixtures (issue 16, part 6): `compare-designs` reads finished runs of the same
config that differ only in mixtures.design (random, spanning) and optionally in the spanning settings
(`--arm NAME=DIR`, e.g. max_tilt 0: D-optimal source ratios without tilting); scripts/study.sh makes
them, and it writes one comparison.

Per run, from its results/analysis/: the spread of the fitted mixtures in indicator space
(design.indicator_diagnostics of table.tsv's kind == mixture rows over rule.json's stepwise candidates:
the dataset-level indicators the rule was actually fitted on, set-level ones included; design.json,
when present, holds the candidate-level estimates instead), and from validation.json the held-out R²
with its 95 % interval, Spearman's rho, leave-one-out R² over the stepwise procedure, bootstrap
inclusion frequencies, the seed-noise floor and the verdict.

A comparison is only fair on the same held-out mixtures and the same finetune budget, so it stops
(InstructMiningError) when the two runs' held-out datasets or their number and size of fitting
mixtures differ; held-out losses that differ (the held-out finetunes were rerun, not reused) are
reported as such, since they then carry float noise into the comparison."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from .errors import InstructMiningError

LOG = logging.getLogger("instructmining.compare_designs")
ANALYSIS = Path("results") / "analysis"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InstructMiningError(f"{path}: missing (run the workflow in that directory first)")
    return json.loads(path.read_text(encoding="utf-8"))


def run_summary(run: str | Path) -> dict[str, Any]:
    """One run's numbers: indicator-space diagnostics of its fitting mixtures and its validation."""
    import pandas as pd

    from .design import indicator_diagnostics

    run = Path(run)
    rule = _read_json(run / ANALYSIS / "rule.json")
    validation = _read_json(run / ANALYSIS / "validation.json")
    table_path = run / ANALYSIS / "table.tsv"
    if not table_path.is_file():
        raise InstructMiningError(f"{table_path}: missing (run the workflow in that directory first)")
    table = pd.read_csv(table_path, sep="\t")
    mixtures = table[table["kind"] == "mixture"] if "kind" in table.columns else table
    names = [c for c in rule["stepwise"]["candidates"] if c in mixtures.columns]
    if not names:
        raise InstructMiningError(f"{table_path}: none of rule.json's candidates {rule['stepwise']['candidates']}")
    diag = indicator_diagnostics(mixtures[names].to_numpy(dtype=float), names)
    held, noise = validation["heldout"], validation["seed_noise"]
    sizes = None
    manifest = run / "results" / "datasets" / "mixtures.tsv"
    if manifest.is_file():
        m = pd.read_csv(manifest, sep="\t")
        if "size" in m.columns:
            sizes = sorted({int(s) for s in m["size"]})
    design_path = run / "results" / "datasets" / "design.json"
    design = None
    if design_path.is_file():  # written by a spanning make_mixtures only
        d = json.loads(design_path.read_text(encoding="utf-8"))
        design = {k: d.get(k) for k in ("design", "max_tilt", "candidates")}
    return {
        "run": str(run),
        "design": design,
        "mixtures": int(len(mixtures)),
        "mixture_sizes": sizes,
        "indicator_space": {k: diag[k] for k in ("indicators", "constant", "rank", "condition_number",
                                                 "components_95", "explained_variance", "log_det_information")},
        "rule": {"indicators": rule["indicators"], "r2": rule["r2"]},
        "heldout": {"n": held["n"], "datasets": held["datasets"], "observed": held["observed"],
                    "r2": held["r2"], "r2_ci_95": held["r2_ci_95"], "spearman": held["spearman"],
                    # absent from a validation.json written before the bias decomposition
                    "bias": held.get("bias"), "bias_ci_95": held.get("bias_ci_95", [None, None]),
                    "bias_share": held.get("bias_share"), "noise_ceiling_r2": held.get("noise_ceiling_r2")},
        "loo_procedure_r2": validation.get("cv", {}).get("loo_procedure"),
        "bootstrap_inclusion": validation["bootstrap_inclusion"]["frequency"],
        "seed_noise": {"sd_log_loss": noise.get("sd_log_loss"), "explainable_share": noise.get("explainable_share")},
        "verdict": validation["verdict"],
        "reasons": validation["reasons"],
    }


def compare(random_run: str | Path, designed_run: str | Path,
            arms: dict[str, str | Path] | None = None) -> dict[str, Any]:
    """Every run's summary (random, designed, then any further designed `arms`, e.g. another
    max_tilt), after checking that each shares the random run's held-out mixtures and finetune budget."""
    runs = {"random": run_summary(random_run), "designed": run_summary(designed_run)}
    for name, path in (arms or {}).items():
        if name in runs:
            raise InstructMiningError(f"arm name {name!r} is taken (random and designed are the two main runs)")
        runs[name] = run_summary(path)
    r = runs["random"]
    same_losses = True
    for name, d in runs.items():
        if name == "random":
            continue
        if r["heldout"]["datasets"] != d["heldout"]["datasets"]:
            raise InstructMiningError(
                f"different held-out mixtures: random {r['heldout']['datasets']} vs {name} {d['heldout']['datasets']}")
        if (r["mixtures"], r["mixture_sizes"]) != (d["mixtures"], d["mixture_sizes"]):
            raise InstructMiningError(
                f"different finetune budgets: random {r['mixtures']} mixtures of {r['mixture_sizes']} samples, "
                f"{name} {d['mixtures']} of {d['mixture_sizes']}")
        if r["heldout"]["observed"] != d["heldout"]["observed"]:
            same_losses = False
            LOG.warning("held-out losses differ between random and %s: their finetunes were rerun, not shared", name)
    aim = {k: v["heldout"]["r2"] is not None and v["heldout"]["r2"] >= 0.5 for k, v in runs.items()}
    return {"runs": runs, "same_heldout_datasets": True, "same_heldout_losses": same_losses,
            "heldout_r2_at_least_0_5": aim}


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _design_label(design: dict[str, Any] | None) -> str:
    if not design:
        return "random"
    return f"{design['design']}, max_tilt {_fmt(design.get('max_tilt'))}, {design.get('candidates')} candidates"


def markdown(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table (random | designed | further arms), then bootstrap
    inclusion per indicator."""
    # random and designed first, then the further arms (a JSON round trip may have sorted the keys)
    order = ["random", "designed", *[k for k in result["runs"] if k not in ("random", "designed")]]
    runs = {k: result["runs"][k] for k in order}
    r = runs["random"]
    heads = ["random", "designed (spanning)", *order[2:]]

    def ci(s: dict[str, Any]) -> str:
        low, high = s["heldout"]["r2_ci_95"]
        return f"[{_fmt(low)}, {_fmt(high)}]"

    rows = [
        ("design", lambda s: _design_label(s.get("design"))),
        ("fitting mixtures (samples each)", lambda s: f"{s['mixtures']} ({_fmt(s['mixture_sizes'])})"),
        ("condition number of indicator matrix", lambda s: _fmt(s["indicator_space"]["condition_number"])),
        ("principal components for 95 % of variance",
         lambda s: f"{s['indicator_space']['components_95']} of {len(s['indicator_space']['indicators'])}"),
        ("rule's indicators", lambda s: ", ".join(s["rule"]["indicators"]) or "none"),
        ("held-out mixtures", lambda s: _fmt(s["heldout"]["n"])),
        ("held-out R²", lambda s: _fmt(s["heldout"]["r2"])),
        ("held-out R² 95 % interval", ci),
        ("held-out R² ceiling, 1 - seed-noise var / held-out var", lambda s: _fmt(s["heldout"]["noise_ceiling_r2"])),
        ("held-out Spearman", lambda s: _fmt(s["heldout"]["spearman"])),
        ("held-out bias, mean(predicted - observed) [95 %]", lambda s: f"{_fmt(s['heldout']['bias'], 2)} "
         f"[{_fmt(s['heldout']['bias_ci_95'][0], 2)}, {_fmt(s['heldout']['bias_ci_95'][1], 2)}]"),
        ("bias share of held-out MSE", lambda s: _fmt(s["heldout"]["bias_share"])),
        ("LOO R² (whole stepwise procedure)", lambda s: _fmt(s["loo_procedure_r2"])),
        ("seed-noise sd of log loss", lambda s: _fmt(s["seed_noise"]["sd_log_loss"])),
        ("explainable share (1 - noise / total)", lambda s: _fmt(s["seed_noise"]["explainable_share"])),
        ("verdict", lambda s: s["verdict"]),
    ]
    head = "| | " + " | ".join(heads) + " |"
    sep = "|---|" + "---|" * len(heads)
    lines = [head, sep]
    lines += [f"| {label} | " + " | ".join(f(s) for s in runs.values()) + " |" for label, f in rows]
    names = list(dict.fromkeys(n for s in runs.values() for n in s["bootstrap_inclusion"]))
    lines += ["", "Bootstrap inclusion frequency (share of resamples in which stepwise selection keeps it):", "",
              head.replace("| |", "| indicator |", 1), sep]
    lines += [f"| {n} | " + " | ".join(_fmt(s["bootstrap_inclusion"].get(n)) for s in runs.values()) + " |"
              for n in names]
    same = "identical" if result["same_heldout_losses"] else "NOT identical (held-out finetunes were rerun)"
    lines += ["", f"Same held-out mixtures in every run ({', '.join(r['heldout']['datasets'])}); "
              f"their observed losses are {same}. Indicator-space rows: table.tsv's fitting mixtures, "
              "z-scored over rule.json's candidates.", ""]
    return "\n".join(lines)


def _cmd_compare(args: argparse.Namespace) -> int:
    from .io import write_json

    arms = {}
    for spec in args.arm or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise InstructMiningError(f"--arm {spec!r}: expected NAME=DIR")
        arms[name] = path
    result = compare(args.random, args.designed, arms)
    write_json(result, args.out)
    if args.markdown:
        Path(args.markdown).write_text(markdown(result), encoding="utf-8")
    for k, s in result["runs"].items():
        LOG.info("%s: condition number %s, %s PCs for 95 %%, held-out R2 %s %s, Spearman %s, %s", k,
                 s["indicator_space"]["condition_number"], s["indicator_space"]["components_95"],
                 s["heldout"]["r2"], s["heldout"]["r2_ci_95"], s["heldout"]["spearman"], s["verdict"])
    return 0


def register(sub: Any) -> None:
    """Add `compare-designs`."""
    p = sub.add_parser("compare-designs", help="random vs designed mixtures: indicator spread and validation, side by side")
    p.add_argument("--random", required=True, help="directory of the mixtures.design=random run (has results/analysis/)")
    p.add_argument("--designed", required=True, help="directory of the mixtures.design=spanning run")
    p.add_argument("--arm", action="append", metavar="NAME=DIR",
                   help="a further designed run to set beside them (e.g. another mixtures.max_tilt); repeatable")
    p.add_argument("--out", required=True, help="comparison.json")
    p.add_argument("--markdown", default=None, help="also write the comparison as a Markdown table")
    p.set_defaults(func=_cmd_compare)
