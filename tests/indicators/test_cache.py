"""Per-sample score cache: reuse (zero model calls), sharded scoring, model-change invalidation."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pyarrow.parquet as pq
import pytest

from instructmining.cli import main
from instructmining.indicators import registry
from instructmining.indicators.cache import load_cache, score_with_cache, scorer_key


def test_second_run_makes_zero_model_calls(tiny_causal, frame, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = registry.create("perplexity", model=tiny_causal, batch_size=4, max_length=64)
    with caplog.at_level(logging.INFO, logger="instructmining"):
        a = score_with_cache(first, frame.iloc[:10], cache)
    assert first.model_calls == 3 and "cache: 0 hits, 10 to score" in caplog.text
    caplog.clear()
    second = registry.create("perplexity", model=tiny_causal, batch_size=4, max_length=64)
    with caplog.at_level(logging.INFO, logger="instructmining"):
        b = score_with_cache(second, frame.iloc[:10], cache)
    assert second.model_calls == 0 and b == a
    assert "cache: 10 hits, 0 to score" in caplog.text
    # An overlapping superset scores only the new samples.
    third = registry.create("perplexity", model=tiny_causal, batch_size=4, max_length=64)
    with caplog.at_level(logging.INFO, logger="instructmining"):
        c = score_with_cache(third, frame.iloc[5:14], cache)
    assert "cache: 5 hits, 4 to score" in caplog.text and third.model_calls == 1
    assert c[:5] == a[5:10]


def test_model_change_invalidates_only_that_scorer(tiny_causal, tiny_causal_b, frame, tmp_path):
    cache = tmp_path / "cache"
    ppl_a = registry.create("perplexity", model=tiny_causal, max_length=64)
    mtld = registry.create("mtld")
    score_with_cache(ppl_a, frame.iloc[:4], cache)
    score_with_cache(mtld, frame.iloc[:4], cache)
    ppl_b = registry.create("perplexity", model=tiny_causal_b, max_length=64)
    assert scorer_key(ppl_b.identity()) != scorer_key(ppl_a.identity())
    score_with_cache(ppl_b, frame.iloc[:4], cache)
    assert ppl_b.model_calls > 0
    again = registry.create("mtld")

    def must_not_score(df):
        raise AssertionError("mtld was re-scored after another scorer's model changed")

    again._score = must_not_score
    score_with_cache(again, frame.iloc[:4], cache)
    assert len(load_cache(cache, scorer_key(ppl_a.identity()))) == 4  # old model's cache untouched


def test_same_path_retrained_model_changes_key(tiny_causal, tmp_path):
    import shutil

    from transformers import AutoModelForCausalLM

    folder = tmp_path / "base"
    shutil.copytree(tiny_causal["path"], folder)
    spec = {"path": str(folder), "kind": "causal"}
    before = registry.create("perplexity", model=spec).identity()
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.model.norm.weight.data += 1.0
    model.save_pretrained(folder)
    after = registry.create("perplexity", model=spec).identity()
    assert before["model"] == after["model"] and before["revision"] != after["revision"]


def test_cli_sharded_scores_equal_unsharded(tiny_causal, frame, tmp_path):
    pool = tmp_path / "pool.parquet"
    frame.iloc[:9].to_parquet(pool, index=False)
    spec = json.dumps(tiny_causal)
    common = ["--pool", str(pool), "--model", spec, "--max-length", "64", "--batch-size", "4"]
    shards = []
    for i in range(3):
        shards.append(str(tmp_path / f"s{i}.parquet"))
        assert main(["score", "perplexity", *common, "--shard", str(i), "--num-shards", "3",
                     "--cache-dir", str(tmp_path / "c1"), "--out", shards[-1], "--expect-version", "1"]) == 0
    assert main(["merge-scores", "perplexity", "--pool", str(pool), "--shards", *shards,
                 "--cache-dir", str(tmp_path / "c1"), "--out", str(tmp_path / "merged.parquet")]) == 0
    assert main(["score", "perplexity", *common, "--cache-dir", str(tmp_path / "c2"),
                 "--out", str(tmp_path / "one.parquet")]) == 0
    merged, one = pd.read_parquet(tmp_path / "merged.parquet"), pd.read_parquet(tmp_path / "one.parquet")
    assert list(merged["id"]) == sorted(frame["id"].iloc[:9])
    pd.testing.assert_frame_equal(merged, one.sort_values("id").reset_index(drop=True), atol=1e-6)
    assert merged["score"].dtype == "float64"
    meta = pq.read_schema(tmp_path / "merged.parquet").metadata
    key = meta[b"scorer_key"].decode()
    assert (tmp_path / "c1" / f"{key}.parquet").exists()
    assert not list((tmp_path / "c1").glob("*.part-*"))  # merge folded the shard parts in


def test_cli_version_mismatch_and_bad_shard_fail(frame, tmp_path):
    pool = tmp_path / "pool.parquet"
    frame.iloc[:3].to_parquet(pool, index=False)
    base = ["score", "mtld", "--pool", str(pool), "--cache-dir", str(tmp_path), "--out", str(tmp_path / "o.parquet")]
    assert main([*base, "--expect-version", "99"]) == 2
    assert main([*base, "--shard", "3", "--num-shards", "2"]) == 2
    with pytest.raises(SystemExit):
        main([*base, "--model", "{not json"])
