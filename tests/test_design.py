"""Spanning design (issue #16): on a synthetic pool whose source means lie on a 2-dimensional plane
in a 9-indicator space (so random mixtures cannot separate the indicators), the designed mixtures
beat random ones on the design's own criterion, recover planted regression coefficients within
their 95 % intervals, and are reproducible from the seed."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from instructmining.design import (
    d_optimal,
    indicator_diagnostics,
    log_det_information,
    spanning_mixtures,
    standardize,
)
from instructmining.mixing import make_mixtures

SOURCES = [f"s{i}" for i in range(6)]
NAMES = [f"ind{j}" for j in range(9)]


def synthetic(per_source: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pool + per-sample scores: source means = A f_s with f_s in R^2 (a plane in R^9); samples
    within a source vary with a full-rank correlated covariance (so tilting can move every
    direction)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((9, 2)) * 3.0
    mix = np.sqrt(0.5) * (np.eye(9) + (np.sqrt(10) - 1) / 9 * np.ones((9, 9)))  # within: corr 0.5
    pool, scores = [], []
    for s in SOURCES:
        center = a @ rng.standard_normal(2)
        values = center + rng.standard_normal((per_source, 9)) @ mix.T
        for i in range(per_source):
            sid = f"{s}-{i:05d}"
            pool.append({"id": sid, "source": s, "role": "train", "instruction": f"do {i}", "input": "",
                         "output": f"{s} answer {i}"})
            scores.append({"id": sid, **dict(zip(NAMES, values[i], strict=True))})
    pool.append({"id": "unseen-0", "source": "dolly", "role": "unseen", "instruction": "x", "input": "", "output": "y"})
    return pd.DataFrame(pool), pd.DataFrame(scores)


@pytest.fixture(scope="module")
def designs():
    pool, scores = synthetic()
    made, report = spanning_mixtures(pool, scores, SOURCES, n=20, size=100, seed=5, shortfall="redistribute",
                                     candidates=600, max_tilt=3.0)
    rand = make_mixtures(pool, SOURCES, 20, 100, 5, "redistribute")
    lookup = scores.set_index("id")
    means = {key: np.array([lookup.loc[rows["id"], NAMES].mean().to_numpy() for _, rows, _ in m])
             for key, m in (("spanning", made), ("random", rand))}
    return pool, scores, made, report, means


def test_spanning_beats_random_on_its_own_criterion(designs):
    _, _, _, report, means = designs
    span, rand = (indicator_diagnostics(means[k], NAMES) for k in ("spanning", "random"))
    assert span["log_det_information"] > rand["log_det_information"] + 5  # > 100 x det(X'X)
    assert span["condition_number"] * 2 < rand["condition_number"]
    assert span["components_95"] > rand["components_95"]
    # the report's diagnostics are those of the written mixtures (exact means, not estimates)
    for key, mine in (("spanning", span), ("random", rand)):
        assert report[key]["components_95"] == mine["components_95"]
        assert report[key]["condition_number"] == pytest.approx(mine["condition_number"])
        assert report[key]["log_det_information"] == pytest.approx(mine["log_det_information"])


def test_planted_coefficients_recovered_within_their_intervals(designs):
    """loss = 1 + X beta + noise on each design's mixture means; OLS (as regression.py fits it):
    on the designed mixtures every planted coefficient lies inside its 95 % CI and every CI
    excludes 0; random mixtures give far wider intervals for the same noise."""
    _, _, _, _, means = designs
    beta = np.array([0.8, -0.6, 0.5, -0.4, 0.7, -0.5, 0.6, -0.7, 0.4])
    rng = np.random.default_rng(11)
    widths = {}
    for key in ("spanning", "random"):
        x = sm.add_constant(means[key])
        y = 1.0 + means[key] @ beta + rng.normal(0.0, 0.05, size=len(x))
        ci = sm.OLS(y, x).fit().conf_int(0.05)[1:]
        widths[key] = float(np.mean(ci[:, 1] - ci[:, 0]))
        if key == "spanning":
            assert np.all((ci[:, 0] <= beta) & (beta <= ci[:, 1])), ci
            assert np.all((ci[:, 0] > 0) | (ci[:, 1] < 0)), ci
    assert widths["spanning"] * 3 < widths["random"], widths


def test_mixtures_are_exact_subsets_with_the_written_counts(designs):
    pool, _, made, report, _ = designs
    assert [m[0] for m in made] == [f"mix-{i:03d}" for i in range(20)]
    for (name, rows, meta), entry in zip(made, report["mixtures"], strict=True):
        assert len(rows) == 100 and rows["id"].is_unique and (rows["role"] == "train").all()
        assert list(rows.columns) == list(pool.columns)
        counts = rows["source"].value_counts().reindex(SOURCES, fill_value=0).tolist()
        assert counts == [meta[f"n_{s}"] for s in SOURCES]
        assert entry["dataset"] == name and entry["candidate"] == meta["candidate"]


def test_same_seed_same_mixtures_other_seed_differs():
    pool, scores = synthetic(per_source=120)
    kw = {"n": 8, "size": 60, "shortfall": "redistribute", "candidates": 100, "max_tilt": 3.0}
    one, rep1 = spanning_mixtures(pool, scores, SOURCES, seed=3, **kw)
    two, rep2 = spanning_mixtures(pool, scores, SOURCES, seed=3, **kw)
    other, _ = spanning_mixtures(pool, scores, SOURCES, seed=4, **kw)
    for (_, x, mx), (_, y, my) in zip(one, two, strict=True):
        pd.testing.assert_frame_equal(x, y)
        assert mx == my
    assert rep1 == rep2
    assert [m["candidate"] for _, _, m in one] != [m["candidate"] for _, _, m in other]


def test_d_optimal_exchange_reaches_the_exhaustive_optimum():
    """On 12 candidates in 2-D, choosing 4: the greedy + exchange result equals the best of all
    495 subsets."""
    from itertools import combinations

    z = np.random.default_rng(2).standard_normal((12, 2))
    best = max(combinations(range(12), 4), key=lambda c: log_det_information(z[list(c)]))
    assert log_det_information(z[d_optimal(z, 4)]) == pytest.approx(log_det_information(z[list(best)]))


def test_diagnostics_of_a_rank_deficient_matrix():
    x = np.random.default_rng(0).standard_normal((10, 2))
    x = np.column_stack([x, x[:, 0] + x[:, 1], np.full(10, 3.0)])  # a combination and a constant
    d = indicator_diagnostics(x, ["a", "b", "c", "k"])
    assert d["constant"] == ["k"] and d["rank"] == 2 and d["condition_number"] is None
    assert d["components_95"] == 2 and (d["log_det_information"] or -99) < -10
    iso = indicator_diagnostics(standardize(np.eye(3).repeat(4, axis=0)), ["a", "b", "c"])
    assert iso["rank"] == 2  # 3 indicator columns that sum to a constant: only 2 directions


def test_make_mixtures_command_writes_the_designed_mixtures_and_report(tmp_path):
    """The CLI path the rule runs: score files in, mixtures + manifest + design.json out; the
    written mixtures are those spanning_mixtures makes, and the repeat copies mix-000."""
    import json

    from instructmining.cli import main
    from instructmining.io import read_parquet, write_parquet

    pool, scores = synthetic(per_source=120)
    real = ["input_length", "output_length", "mtld", "perplexity"]  # the command reads registry names
    scores = scores[["id", *NAMES[:4]]].rename(columns=dict(zip(NAMES[:4], real, strict=True)))
    write_parquet(pool, tmp_path / "pool.parquet")
    files = []
    for name in real:
        files.append(str(tmp_path / f"{name}.parquet"))
        write_parquet(scores[["id", name]].rename(columns={name: "score"}), files[-1])
    out = [str(tmp_path / f"mix-{i:03d}.parquet") for i in range(7)] + [str(tmp_path / "mix-000-rep1.parquet")]
    assert main(["make-mixtures", "--pool", str(tmp_path / "pool.parquet"), "--n", "7", "--size", "60", "--seed", "2",
                 "--design", "spanning", "--indicators", json.dumps(real), "--candidates", "80",
                 "--repeats", "[1]", "--scores", *files, "--design-out", str(tmp_path / "design.json"), "--out", *out,
                 "--manifest", str(tmp_path / "mixtures.tsv")]) == 0
    report = json.loads((tmp_path / "design.json").read_text())
    made, expected = spanning_mixtures(pool, scores, sorted(SOURCES), 7, 60, 2, "redistribute",
                                       80, 3.0)
    assert report["indicators"] == real and report["provenance"]["seed"] == 2
    assert [m["candidate"] for m in report["mixtures"]] == [m["candidate"] for m in expected["mixtures"]]
    for name, rows, _ in made:
        assert read_parquet(tmp_path / f"{name}.parquet")["id"].tolist() == rows["id"].tolist()
    rep = read_parquet(tmp_path / "mix-000-rep1.parquet")
    assert rep["id"].tolist() == made[0][1]["id"].tolist()
