"""Mixtures: exact totals, proportional to r_i, seeded, shortfall handled by the documented rule."""

import numpy as np
import pandas as pd
import pytest

from instructmining.errors import ConfigError, InstructMiningError
from instructmining.mixing import allot, largest_remainder, make_bins, make_mixtures


def _pool(sizes: dict[str, int]) -> pd.DataFrame:
    rows = []
    for src, n in sizes.items():
        for i in range(n):
            rows.append({"id": f"{src}-{i:05d}", "source": src, "role": "train", "instruction": f"do {i}",
                         "input": "", "output": f"{src} answer {i}"})
    rows.append({"id": "unseen-0", "source": "dolly", "role": "unseen", "instruction": "x", "input": "", "output": "y"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("total", [0, 1, 7, 100, 2000])
def test_largest_remainder_sums_exactly_and_is_within_one(total):
    rng = np.random.default_rng(total)
    for _ in range(50):
        w = rng.uniform(0, 1, size=rng.integers(1, 9)).tolist()
        counts = largest_remainder(w, total)
        assert sum(counts) == total
        quotas = [total * x / sum(w) for x in w]
        assert all(abs(c - q) < 1 for c, q in zip(counts, quotas, strict=True))


def test_mixtures_sum_exactly_and_follow_r():
    pool = _pool({"a": 3000, "b": 3000, "c": 3000, "d": 3000})
    made = make_mixtures(pool, ["a", "b", "c", "d"], n=10, size=2000, seed=7, shortfall="redistribute")
    assert [m[0] for m in made] == [f"mix-{i:03d}" for i in range(10)]
    for _, rows, meta in made:
        assert len(rows) == 2000 and rows["id"].is_unique
        r = np.array([meta[f"r_{s}"] for s in "abcd"])
        counts = rows["source"].value_counts().reindex(list("abcd"), fill_value=0).to_numpy()
        assert counts.tolist() == [meta[f"n_{s}"] for s in "abcd"]
        assert np.all(np.abs(counts - 2000 * r / r.sum()) < 1.0 + 1e-3)  # r rounded to 6 places
        assert (rows["role"] == "train").all()


def test_same_seed_reproduces_other_seed_differs():
    pool = _pool({"a": 500, "b": 500, "c": 500})
    one = make_mixtures(pool, ["a", "b", "c"], 3, 200, seed=11, shortfall="redistribute")
    two = make_mixtures(pool, ["a", "b", "c"], 3, 200, seed=11, shortfall="redistribute")
    other = make_mixtures(pool, ["a", "b", "c"], 3, 200, seed=12, shortfall="redistribute")
    for (_, x, mx), (_, y, my) in zip(one, two, strict=True):
        pd.testing.assert_frame_equal(x, y)
        assert mx == my
    assert not one[0][1]["id"].equals(other[0][1]["id"])


def test_adding_mixtures_keeps_earlier_ones():
    """Each mixture has its own derived seed: n=5 starts with the same 3 mixtures as n=3."""
    pool = _pool({"a": 300, "b": 300})
    three = make_mixtures(pool, ["a", "b"], 3, 100, seed=3, shortfall="redistribute")
    five = make_mixtures(pool, ["a", "b"], 5, 100, seed=3, shortfall="redistribute")
    for (_, x, _), (_, y, _) in zip(three, five[:3], strict=True):
        pd.testing.assert_frame_equal(x, y)


def test_shortfall_redistributes_to_sources_with_room(caplog):
    caplog.set_level("INFO", logger="instructmining")
    r = [0.9, 0.1, 0.5]
    counts = allot(r, available=[10, 1000, 1000], size=300, shortfall="redistribute", name="mix-x")
    assert sum(counts) == 300 and counts[0] == 10
    assert counts[1] < counts[2]  # the excess follows the remaining r's (0.1 vs 0.5)
    assert "shortfall of" in caplog.text
    with pytest.raises(InstructMiningError, match="holds 10 samples"):
        allot(r, available=[10, 1000, 1000], size=300, shortfall="error", name="mix-x")
    with pytest.raises(ConfigError, match="mixtures.size"):
        allot(r, available=[10, 10, 10], size=300, shortfall="redistribute", name="mix-x")


def test_bins_order_by_score_and_cut_equal_counts():
    pool = _pool({"a": 40, "b": 40})
    train = pool[pool.role == "train"]
    scores = pd.DataFrame({"id": train["id"], "score": np.arange(len(train))[::-1].astype(float)})
    made = make_bins(pool, scores, "output_length", k=4, size=None, seed=1)
    assert [m[0] for m in made] == [f"uni-output_length-{k}" for k in range(4)]
    assert [len(m[1]) for m in made] == [20, 20, 20, 20]
    means = [m[2]["score_mean"] for m in made]
    assert means == sorted(means)  # bin 0 holds the lowest scores
    assert made[0][2]["score_max"] < made[1][2]["score_min"]
    sub = make_bins(pool, scores, "output_length", k=4, size=5, seed=1)
    assert [len(m[1]) for m in sub] == [5] * 4
    with pytest.raises(InstructMiningError, match="lack sample"):
        make_bins(pool, scores.iloc[1:], "output_length", k=4, size=None, seed=1)
