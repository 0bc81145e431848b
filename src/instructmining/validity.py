"""Indicator validity: does a higher indicator value mean a better answer, on answers of known order?

A regression can only be as honest as its inputs. `validate-indicators` scores visible preference
data with the configured scorers (the same scorer classes and cache code as the pool scores) and
writes results/analysis/indicator_validity.tsv, one row per indicator:

- pairwise accuracy on preference pairs (two answers to one prompt from answer sets of different
  rank; a tie in the indicator counts one half), direction-aware: an indicator whose registry sign
  says "higher is worse data" (perplexity, output length) is compared with its sign flipped;
- a 95 % percentile-bootstrap interval that resamples prompts, not pairs: the up to 9 pairs of one
  prompt share answers and the prompt, so they are not independent and a Wilson interval over pairs
  would be too narrow;
- the ladder Spearman: between the quality level of each answer set and its mean indicator value;
- the status: `valid` (interval wholly above 0.5), `chance` (contains 0.5), `inverted` (wholly below)
  for the neural scorers that claim to judge quality (reward, perplexity, UniEval); `reference` for
  lengths, MTLD, KNN-i and indicators of unknown sign, which are reported and never judged.

Which prompts (validity_data.py; docs/indicator_validity.md says why they are fair): AlpacaEval
prompts that are not eval instructions (the `dataset` label and the pool's eval match key), not
pool instructions, and, when the workflow trains the reward model, only its held-out prompts
(reward_train.load_groups + split_groups with the same seed and fraction: one split, one source of
truth); the first `max_prompts` of them.

`usable_candidates` is what fit_rule uses: the stepwise candidates minus chance and inverted scorers.
Module level imports the standard library only (the Snakefile and --help import it)."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

from .errors import InstructMiningError
from .validity_data import answer_frame, contrast_frame, ladder_pairs, validity_prompts

LOG = logging.getLogger("instructmining.validity")
CHANCE = 0.5
EXCLUDED_STATUSES = ("chance", "inverted")
COLUMNS = ["indicator", "status", "judged", "direction", "accuracy", "ci_low", "ci_high", "n_pairs", "n_prompts",
           "ladder_spearman"]


def contrast_columns(frame: Any, scores: Any, names: list[str], label: str, n_boot: int, seed: int) -> Any:
    """Per indicator: <label>_accuracy, _ci_low, _ci_high, _pairs on a two-level contrast."""
    t = validity_table(frame, scores, names, n_boot, seed).set_index("indicator")
    return t[["accuracy", "ci_low", "ci_high", "n_pairs"]].rename(
        columns={"accuracy": f"{label}_accuracy", "ci_low": f"{label}_ci_low", "ci_high": f"{label}_ci_high",
                 "n_pairs": f"{label}_pairs"})


# --- statistics (pure numpy; tests/test_validity.py checks them on known answers) ---------------
def pair_outcomes(better: Any, worse: Any, direction: int) -> Any:
    """1 where the better answer scores higher (after `direction`), 0.5 on a tie, else 0."""
    import numpy as np

    d = direction * (np.asarray(better, dtype=float) - np.asarray(worse, dtype=float))
    return np.where(d > 0, 1.0, np.where(d == 0, 0.5, 0.0))


def bootstrap_accuracy(outcomes: Any, clusters: Any, n_boot: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float, float]:
    """(accuracy, low, high): the mean outcome and a percentile interval from resampling whole
    clusters (prompts) with replacement, each draw's accuracy = its pairs' mean."""
    import numpy as np

    outcomes = np.asarray(outcomes, dtype=float)
    if outcomes.size == 0:
        raise InstructMiningError("validity: no pairs to compute an accuracy on")
    _, inv = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(inv, weights=outcomes)
    counts = np.bincount(inv).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    acc = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(acc, [alpha, 1 - alpha])
    return float(outcomes.mean()), float(lo), float(hi)


def ladder_spearman(ranks: Any, means: Any, direction: int) -> float | None:
    """Spearman between quality (best = highest) and direction * mean value per answer set; None
    when undefined (fewer than 3 sets, or a constant side)."""
    import numpy as np
    from scipy.stats import spearmanr

    q, m = -np.asarray(ranks, dtype=float), direction * np.asarray(means, dtype=float)
    if len(q) < 3 or np.ptp(q) == 0 or np.ptp(m) == 0:
        return None
    rho = float(spearmanr(q, m).statistic)
    return rho if math.isfinite(rho) else None


def status(low: float, high: float, judged: bool) -> str:
    """valid / chance / inverted from the interval; `reference` when the indicator is not judged."""
    if not judged:
        return "reference"
    return "valid" if low > CHANCE else "inverted" if high < CHANCE else "chance"


def direction_of(name: str) -> tuple[int, bool]:
    """(direction, judged): +1 when higher values should mean better answers (registry sign -1
    versus loss), -1 when lower should (sign +1); unknown sign: +1, not judged. Only neural
    scorers (which claim to judge quality) are judged; lengths, MTLD and KNN-i are reference."""
    from .indicators import registry

    info = registry.info(name)
    return (-info.sign or 1), bool(info.neural and info.sign != 0)


def validity_table(answers: Any, scores: Any, names: list[str], n_boot: int = 2000, seed: int = 0) -> Any:
    """One row per indicator (COLUMNS, then mean_<set> per answer set) from `answers`
    (answer_frame) and `scores` (one column per name, rows aligned with answers)."""
    import pandas as pd

    pairs = ladder_pairs(answers)
    sets = answers.drop_duplicates("set")[["set", "rank"]].sort_values("rank", kind="stable")
    rows = []
    for name in names:
        direction, judged = direction_of(name)
        col = scores[name].to_numpy(dtype=float)
        outcomes = pair_outcomes(col[pairs["better"]], col[pairs["worse"]], direction)
        acc, lo, hi = bootstrap_accuracy(outcomes, pairs["prompt"], n_boot, seed)
        means = pd.Series(col).groupby(answers["set"]).mean()
        row = {"indicator": name, "status": status(lo, hi, judged), "judged": judged, "direction": direction,
               "accuracy": acc, "ci_low": lo, "ci_high": hi, "n_pairs": len(pairs),
               "n_prompts": int(pairs["prompt"].nunique()),
               "ladder_spearman": ladder_spearman(sets["rank"], means[sets["set"]].to_numpy(), direction)}
        row.update({f"mean_{s}": float(means[s]) for s in sets["set"]})
        rows.append(row)
    return pd.DataFrame(rows)


# --- what the analysis does with it ------------------------------------------------------------
def reason(row: Any) -> str:
    """Why an indicator is left out, in one line."""
    return (f"{row['status']}: pairwise accuracy {row['accuracy']:.3f} "
            f"[95 % {row['ci_low']:.3f}, {row['ci_high']:.3f}] on {int(row['n_pairs'])} pairs")


def usable_candidates(candidates: list[str], table: Any, path: str = "indicator_validity.tsv"
                      ) -> tuple[list[str], dict[str, str]]:
    """(kept, excluded {name: reason}): the stepwise candidates minus the indicators whose
    validity status is chance or inverted. A candidate missing from the table is an error."""
    by_name = {str(r["indicator"]): r for _, r in table.iterrows()}
    missing = [c for c in candidates if c not in by_name]
    if missing:
        raise InstructMiningError(f"{path}: no validity row for candidate(s) {missing} (rerun validate_indicators)")
    excluded = {c: reason(by_name[c]) for c in candidates if by_name[c]["status"] in EXCLUDED_STATUSES}
    return [c for c in candidates if c not in excluded], excluded


def read_validity(path: str | Path) -> Any:
    """The validity table, checked for the columns fit_rule reads."""
    import pandas as pd

    table = pd.read_csv(path, sep="\t")
    missing = set(COLUMNS) - set(table.columns)
    if missing:
        raise InstructMiningError(f"{path}: not a validity table (missing {sorted(missing)})")
    return table


# --- scoring and the command -------------------------------------------------------------------
def score_answers(answers: Any, names: list[str], models: dict[str, Any], options: dict[str, Any],
                  cache_dir: str) -> Any:
    """One column per name: sample-level scores through the pool's scorer and cache code
    (make_scorer + score_with_cache); knn<i> within the validity answers (each answer's distance
    to its i-th neighbour among them)."""
    import pandas as pd

    from .indicators import registry
    from .indicators.aggregate import make_scorer
    from .indicators.cache import score_with_cache
    from .indicators.knn import embed_frame

    scorer_opts = {k: options[k] for k in ("batch_size", "max_length", "device") if k in options}
    out, emb = pd.DataFrame(index=answers.index), None
    for name in names:
        if registry.info(name).level == "sample":
            scorer = make_scorer(name, models, scorer_opts)
            out[name] = score_with_cache(scorer, answers, cache_dir, tag="validity")
            continue
        if emb is None:
            if not models.get("embedding"):
                raise InstructMiningError(f"indicator {name!r} needs the 'embedding' model")
            emb = embed_frame(answers, models["embedding"], options.get("batch_size", 8),
                              options.get("knn_model_max_length", 256), options.get("device", "cpu"))
        out[name] = registry.create(name).dataset_distances(emb)
    return out.astype("float64")


def write_html(table: Any, settings: dict[str, Any], out: str) -> None:
    """The validity table as one report page."""
    from .htmlreport import frame_html, json_html, write_page

    write_page("Indicator validity", [
        ("Pairwise accuracy and ladder Spearman", "accuracy: share of preference pairs (better vs worse answer "
         "to one prompt) the indicator orders right, direction-aware, ties 1/2; 95 % interval: bootstrap over "
         "prompts. status: valid (interval above 0.5), chance (contains 0.5), inverted (below 0.5) for the "
         "neural scorers; reference for lengths, MTLD, KNN-i (reported, never judged). ladder_spearman: quality "
         "level vs mean value per answer set (mean_<set>).", frame_html(table)),
        ("Settings", "which prompts and answer sets (docs/indicator_validity.md says why they are fair)",
         json_html(settings)),
    ], out)


def _cmd_validate(args: argparse.Namespace) -> int:
    from .data import eval_keys
    from .indicators.models import resolve_device, set_threads
    from .io import provenance, read_parquet, write_parquet, write_tsv

    set_threads(args.threads)
    pool = read_parquet(args.pool, columns=["instruction"])
    evals = read_parquet(args.eval_all, columns=["instruction", "input"]).fillna({"input": ""})
    prompts = validity_prompts(args.data_root, args.outputs, list(pool["instruction"]), eval_keys(evals),
                               args.split, args.max_prompts, args.seed)
    answers = answer_frame(args.data_root, args.outputs, prompts)
    LOG.info("validity: %d prompts, %d answers, %d pairs", len(prompts), len(answers), len(ladder_pairs(answers)))
    options = {**args.options, "device": resolve_device(args.device)}
    scores = score_answers(answers, args.names, args.models, options, args.cache_dir)
    table = validity_table(answers, scores, args.names, args.bootstrap, args.seed)
    frames = [answers.assign(contrast="ladder").join(scores)]
    for contrast in args.contrasts:
        frame = contrast_frame(args.data_root, contrast, list(pool["instruction"]), eval_keys(evals), args.max_prompts)
        LOG.info("validity contrast %s: %d pairs", contrast["label"], len(frame) // 2)
        cscores = score_answers(frame, args.names, args.models, options, args.cache_dir)
        extra = contrast_columns(frame, cscores, args.names, contrast["label"], args.bootstrap, args.seed)
        table = table.join(extra, on="indicator")
        frames.append(frame.assign(contrast=contrast["label"]).join(cscores))
    for _, row in table.iterrows():
        LOG.info("%-28s %-9s acc %.3f [%.3f, %.3f] ladder rho %s", row["indicator"], row["status"],
                 row["accuracy"], row["ci_low"], row["ci_high"], row["ladder_spearman"])
    write_tsv(table, args.out)
    if args.answers_out:
        import pandas as pd

        write_parquet(pd.concat(frames, ignore_index=True).drop(columns=["instruction", "input", "output"]),
                      args.answers_out)
    settings = {"prompts": len(prompts), "answers": len(answers), "outputs": args.outputs, "split": args.split,
                "contrasts": args.contrasts,
                "max_prompts": args.max_prompts, "bootstrap": args.bootstrap, "models": args.models,
                **provenance(seed=args.seed)}
    if args.html:
        write_html(table, settings, args.html)
    return 0


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}: {text[:80]!r}") from exc


def _max_prompts(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def register(sub: Any) -> None:
    """Add `validate-indicators`."""
    p = sub.add_parser("validate-indicators", help="pairwise accuracy and ladder Spearman of every indicator "
                       "on visible preference data -> indicator_validity.tsv")
    p.add_argument("--pool", required=True, help="results/pool/pool.parquet (its instructions are not used)")
    p.add_argument("--eval-all", required=True, help="results/eval/eval_all.parquet (never used)")
    p.add_argument("--data-root", required=True, help="folder the --outputs paths are relative to")
    p.add_argument("--outputs", type=_json, required=True, help="JSON list of answer-set files, best first; "
                   "an inner list is a tie group")
    p.add_argument("--contrasts", type=_json, default=[], help="JSON list of {label, better, worse}: two-level "
                   "contrasts (Alpaca-format files answering the same instructions), reported beside the ladder")
    p.add_argument("--split", type=_json, default=None, help='JSON {"heldout": f, "seed": s}: the reward '
                   "model's training split (validity uses its held-out prompts only); null: no trained reward model")
    p.add_argument("--names", type=_json, required=True, help="JSON list of indicator names")
    p.add_argument("--models", type=_json, default={}, help="JSON {role: model spec} (base, reward, unieval, embedding)")
    p.add_argument("--options", type=_json, default={}, help="JSON {batch_size, max_length, knn_model_max_length}")
    p.add_argument("--max-prompts", type=_max_prompts, default=None, help="at most this many prompts (cost "
                   "bound; None: every usable prompt)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap draws for the 95 %% intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (and prompt order without --split)")
    p.add_argument("--cache-dir", default="results/cache/validity", help="per-answer score cache folder")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda")
    p.add_argument("--out", required=True, help="indicator_validity.tsv")
    p.add_argument("--answers-out", default=None, help="also write the per-answer scores (parquet)")
    p.add_argument("--html", default=None, help="also write the table as an HTML page (Snakemake report)")
    p.set_defaults(func=_cmd_validate)
