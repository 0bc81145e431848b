"""Mixtures designed to span indicator space (`mixtures.design: spanning`), and the diagnostics of
any dataset-level indicator matrix (condition number, principal components for 95 % of variance).

Why. A random mixture's sample-level indicator means are, in expectation, the r-weighted average of
its sources' means, so with S sources every random mixture lies near an (S-1)-dimensional surface in
indicator space; the other directions vary by sampling noise only, and which indicators a stepwise
fit keeps is then decided by that noise. The per-sample scores of the whole pool are known before any
finetune, so the indicator means of any candidate dataset are known for free: the design draws many
candidates that move indicators independently of source, then keeps the N that make the regression
most informative.

Candidates. Candidate k (its own derived seed) draws source ratios r_s ~ U(0, 1) exactly as the
random design does (counts by largest remainder, `mixtures.shortfall` honoured), a random unit
direction w over the standardized per-sample indicators z, and a temperature t ~ U(0, max_tilt).
Within each source it samples its count without replacement with weights exp(t * z.w) (exponential
tilting; Gumbel top-k, i.e. successive sampling proportional to the weights): t = 0 is the random
design, large t pulls toward high (or, for -w, low) values of that indicator combination.

Choice. The N candidates maximizing log det(X'X) of X = [1, standardized candidate means]
(D-optimality): OLS coefficient covariance is sigma^2 (X'X)^-1, so D-optimality minimizes the
volume of the coefficients' joint confidence ellipsoid; it is invariant to rescaling an indicator
(unlike A-optimality, which would favour indicators in large units); and a near-collinear direction
(a near-zero eigenvalue, the failure above) costs log(eigenvalue) -> -inf, so it is what the
criterion fixes first. Greedy forward selection (rank-one updates: add the candidate with the largest
x'A^-1 x), then Fedorov exchange (swap a chosen and a candidate while det(A - x_i x_i' + x_j x_j') /
det(A) = (1 + d_j)(1 - d_i) + d_ij^2 > 1). A D-optimal design pushes mixtures toward the extremes of
what the pool allows; the candidates are real subsets of the pool, and the held-out random
mixtures of the validation check whether the rule fitted there predicts ordinary mixtures.

Set-level indicators (knn<i>) have no per-sample score to average: they are left out of the
criterion and computed exactly for the chosen mixtures by the usual dataset_indicators path."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import dataset_names
from .io import derive_seed

LOG = logging.getLogger("instructmining.design")

DESIGNS = ("random", "spanning")
REPORT = "results/datasets/design.json"
RIDGE = 1e-6  # added to X'X (times the number of rows) so a design with n <= p still has a log det


# --- planning (read by the workflow at parse time: standard library only) ---
def design_indicators(config: dict[str, Any]) -> list[str]:
    """The indicators a spanning design spreads: the rule's candidate regressors that have
    per-sample scores (set-level ones, knn<i>, are computed exactly for the chosen mixtures)."""
    from .plan import quality_rule_candidates
    from .score_plan import sample_indicators

    return sample_indicators(quality_rule_candidates(config))


def spanning(config: dict[str, Any]) -> bool:
    """Whether the config designs its mixtures (mixtures.design: spanning)."""
    return config.get("mixtures", {}).get("design", "random") == "spanning"


def design_inputs(config: dict[str, Any]) -> list[str]:
    """The per-sample score files make_mixtures reads: none for random mixtures (they depend on the
    pool only, as in the paper), the merged score file of each designed indicator for spanning."""
    from .score_plan import score_file

    return [score_file(n) for n in design_indicators(config)] if spanning(config) else []


def design_outputs(config: dict[str, Any]) -> list[str]:
    """results/datasets/design.json (the design's diagnostics) when the mixtures are designed."""
    return [REPORT] if spanning(config) else []


# --- the design ---
def standardize(x: Any) -> Any:
    """Columns as z-scores (population sd); a constant column becomes 0 (it carries no information)."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def log_det_information(z: Any) -> float | None:
    """log det(X'X) of X = [1, z] (z: rows = datasets, standardized indicator columns); None when
    X'X is singular (fewer datasets than columns, or a column a combination of the others)."""
    import numpy as np

    x = np.column_stack([np.ones(len(z)), np.asarray(z, dtype=float)])
    sign, value = np.linalg.slogdet(x.T @ x)
    return float(value) if sign > 0 and np.isfinite(value) else None


def indicator_diagnostics(matrix: Any, names: list[str]) -> dict[str, Any]:
    """How well a set of datasets spans indicator space: `matrix` rows = datasets, columns = `names`.

    On the z-scored matrix (columns standardized over these datasets): condition_number = largest /
    smallest singular value (None when the smallest is zero: n <= p or a column a combination of
    others); components_95 = principal components needed for 95 % of the variance;
    explained_variance per component; log_det_information of [1, z] (the design criterion). Unlike
    regression.scaled_condition_number (Belsley, raw columns with intercept), this one measures the
    spread of the indicators themselves, the question a design answers."""
    import numpy as np

    x = np.asarray(matrix, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(f"matrix of shape {x.shape} does not have one column per name {names}")
    constant = [n for n, sd in zip(names, x.std(axis=0), strict=True) if not sd > 0]
    z = standardize(x)[:, [sd > 0 for sd in x.std(axis=0)]]
    s = np.linalg.svd(z, compute_uv=False) if z.size else np.zeros(0)
    var = s**2 / (s**2).sum() if s.size and (s**2).sum() > 0 else s
    rank = int((s > 1e-10 * s[0]).sum()) if s.size else 0
    full = s.size == z.shape[1] and rank == z.shape[1] and z.shape[1] > 0
    return {
        "datasets": int(x.shape[0]),
        "indicators": list(names),
        "constant": constant,
        "rank": rank,
        "condition_number": float(s[0] / s[-1]) if full else None,
        "components_95": int(np.searchsorted(np.cumsum(var), 0.95 - 1e-12) + 1) if var.size else 0,
        "explained_variance": [round(float(v), 6) for v in var],
        "log_det_information": log_det_information(z),
    }


def d_optimal(z: Any, n: int, max_passes: int = 200) -> list[int]:
    """Row indices of z (candidates x standardized indicators) of the n-row design maximizing
    log det(X'X + ridge) with X = [1, z]: greedy forward selection, then Fedorov exchange until no
    swap improves the determinant. Ties go to the lower index, so the result is deterministic."""
    import numpy as np

    x = np.column_stack([np.ones(len(z)), np.asarray(z, dtype=float)])
    c, p = x.shape
    if n > c:
        raise ValueError(f"{n} mixtures but only {c} candidates")
    ridge = RIDGE * max(n, 1) * np.eye(p)
    chosen: list[int] = []
    a_inv = np.linalg.inv(ridge)
    for _ in range(n):  # greedy: det(A + xx') = det(A) (1 + x'A^-1 x)
        d = np.einsum("ij,jk,ik->i", x, a_inv, x)
        d[chosen] = -np.inf
        j = int(np.argmax(d))
        chosen.append(j)
        v = a_inv @ x[j]
        a_inv -= np.outer(v, v) / (1.0 + x[j] @ v)
    for _ in range(max_passes):  # Fedorov exchange: best single swap while it raises det
        a = x[chosen].T @ x[chosen] + ridge
        a_inv = np.linalg.inv(a)
        cross = x @ a_inv @ x[chosen].T  # d_ij for every candidate j, chosen i
        d_all = np.einsum("ij,jk,ik->i", x, a_inv, x)
        d_in = d_all[chosen]
        ratio = (1.0 + d_all)[:, None] * (1.0 - d_in)[None, :] + cross**2
        ratio[chosen, :] = -np.inf
        j, i = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        if ratio[j, i] <= 1.0 + 1e-9:
            break
        chosen[i] = int(j)
    return sorted(chosen)


@dataclass(frozen=True)
class Candidate:
    """One candidate dataset: its seed, source ratios and counts, tilt temperature and direction,
    and the picked row indices within each source (rows of that source in id order)."""

    index: int
    seed: int
    r: list[float]
    counts: list[int]
    tilt: float
    direction: list[float]
    picks: list[Any]


def draw_candidate(k: int, z_by_source: list[Any], size: int, seed: int, shortfall: str,
                   max_tilt: float) -> Candidate:
    """Candidate k: random ratios (as the random design), then within each source a tilted draw
    without replacement: Gumbel top-k of t * z.w (sampling proportional to exp(t * z.w))."""
    import numpy as np

    from .mixing import allot

    cseed = derive_seed(seed, "design-candidate", k)
    rng = np.random.default_rng(cseed)
    r = rng.uniform(0.0, 1.0, size=len(z_by_source)).tolist()
    counts = allot(r, [len(z) for z in z_by_source], size, shortfall, f"candidate {k}")
    w = rng.standard_normal(z_by_source[0].shape[1])
    w /= np.linalg.norm(w) or 1.0
    t = float(rng.uniform(0.0, max_tilt))
    picks = []
    for z, c in zip(z_by_source, counts, strict=True):
        keys = t * (z @ w) + rng.gumbel(size=len(z))
        top = np.argpartition(-keys, c - 1)[:c] if 0 < c < len(z) else np.arange(len(z))[:c]
        picks.append(np.sort(top))  # the c largest keys (continuous: ties have probability 0)
    return Candidate(k, cseed, r, counts, t, [float(v) for v in w], picks)


def spanning_mixtures(pool: Any, scores: Any, sources: list[str], n: int, size: int, seed: int,
                      shortfall: str, candidates: int, max_tilt: float) -> tuple[list[tuple[str, Any, dict]], dict]:
    """([(name, rows, manifest row)] for mix-000 .. mix-(n-1), design report).

    scores: id + one column per sample-level indicator, covering the pool's train rows. The report
    holds the chosen candidates' tilt and direction, and indicator_diagnostics of the chosen N
    (sample-level means, exact) beside those of the N mixtures the random design would draw."""
    import logging as _logging

    import numpy as np
    import pandas as pd

    from .errors import InstructMiningError
    from .mixing import make_mixtures

    names = [c for c in scores.columns if c != "id"]
    if not names:
        raise InstructMiningError("mixtures.design: spanning needs at least one sample-level indicator")
    train = pool[pool["role"] == "train"]
    table = train.merge(scores, on="id", how="left")
    if table[names].isna().any().any():
        missing = table.loc[table[names].isna().any(axis=1), "id"].iloc[0]
        raise InstructMiningError(f"no indicator scores for pool sample {missing} (rerun merge_scores)")
    by_source = {s: table[table["source"] == s].sort_values("id").reset_index(drop=True) for s in sources}
    all_rows = pd.concat(by_source.values())[names].to_numpy(dtype=float)
    mu, sd = all_rows.mean(axis=0), all_rows.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    raw = [by_source[s][names].to_numpy(dtype=float) for s in sources]
    z_by_source = [(v - mu) / sd for v in raw]

    mixing_log = _logging.getLogger("instructmining.mixing")
    level = mixing_log.level
    mixing_log.setLevel(_logging.WARNING)  # one shortfall line per candidate would flood the log
    try:
        means = np.empty((candidates, len(names)))
        for k in range(candidates):
            cand = draw_candidate(k, z_by_source, size, seed, shortfall, max_tilt)
            means[k] = sum(v[p].sum(axis=0) for v, p in zip(raw, cand.picks, strict=True)) / size
    finally:
        mixing_log.setLevel(level)
    chosen = d_optimal(standardize(means), n)
    LOG.info("spanning: chose %d of %d candidates", n, candidates)

    out, report_rows = [], []
    for i, k in enumerate(chosen):
        cand = draw_candidate(k, z_by_source, size, seed, shortfall, max_tilt)
        name = dataset_names.mixture(i)
        parts = [by_source[s].iloc[p] for s, p in zip(sources, cand.picks, strict=True)]
        rows = pd.concat(parts, ignore_index=True)[list(pool.columns)]
        rng = np.random.default_rng(cand.seed)
        rows = rows.iloc[rng.permutation(len(rows))].reset_index(drop=True)  # seeded training order
        meta = {"dataset": name, "kind": "mixture", "size": len(rows), "seed": cand.seed}
        meta.update({f"r_{s}": round(x, 6) for s, x in zip(sources, cand.r, strict=True)})
        meta.update({f"n_{s}": c for s, c in zip(sources, cand.counts, strict=True)})
        meta.update({"candidate": k, "tilt": round(cand.tilt, 6)})
        out.append((name, rows, meta))
        report_rows.append({"dataset": name, "candidate": k, "tilt": cand.tilt,
                            "direction": dict(zip(names, cand.direction, strict=True)),
                            "means": dict(zip(names, means[k].tolist(), strict=True))})
    random_made = make_mixtures(pool, sources, n, size, seed, shortfall)
    random_means = np.array([table.set_index("id").loc[rows["id"], names].mean().to_numpy()
                             for _, rows, _ in random_made])
    report = {
        "design": "spanning", "seed": seed, "candidates": candidates, "max_tilt": max_tilt,
        "indicators": names, "criterion": "D-optimal: log det X'X, X = [1, standardized means]",
        "spanning": indicator_diagnostics(means[chosen], names),
        "random": indicator_diagnostics(random_means, names),
        "mixtures": report_rows,
    }
    return out, report
