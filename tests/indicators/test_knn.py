"""KNN-i equals brute force; a dataset's KNN-i uses only that dataset's samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from instructmining.errors import ScorerError
from instructmining.indicators import knn_distances
from instructmining.indicators.aggregate import dataset_row


def brute(x: np.ndarray, i: int) -> np.ndarray:
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, i - 1]


@pytest.mark.parametrize("i", [1, 3, 6])
def test_equals_brute_force(i, monkeypatch):
    rng = np.random.default_rng(i)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    monkeypatch.setattr("instructmining.indicators.knn.BLOCK", 64)  # exercise several blocks
    np.testing.assert_allclose(knn_distances(x, i), brute(x.astype(np.float64), i), atol=1e-9)


def test_duplicates_are_neighbours_self_is_not():
    x = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(knn_distances(x, 1), [0.0, 0.0, np.sqrt(2)])


def test_too_small_set_raises():
    with pytest.raises(ScorerError, match="needs at least 7"):
        knn_distances(np.zeros((6, 4)), 6)


def test_dataset_knn_uses_only_its_samples(tmp_path):
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(60, 8))
    ids = [f"s{k:03d}" for k in range(60)]
    members = ids[::3]  # 20 samples; the other 40 pool samples are nearer neighbours for many
    row = dataset_row("mix-000", pd.DataFrame({"id": members}), ["knn2"], [], pool, ids)
    sub = pool[::3]
    assert row.loc[0, "knn2"] == pytest.approx(brute(sub, 2).mean(), abs=1e-12)
    assert row.loc[0, "knn2"] != pytest.approx(brute(pool, 2)[::3].mean(), abs=1e-3)
    assert list(row.columns) == ["dataset", "knn2"] and row["knn2"].dtype == np.float64
