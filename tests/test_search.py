"""Subset-size search: the FLAML driver on a known objective, and one real trial run through the
finetune and eval-loss code paths with a tiny model."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from instructmining.cli import main
from instructmining.search import run_search, start_points


def bowl(calls):
    """A real objective with a known minimum at n = 400 (log scale), recording its calls."""
    def f(n):
        calls.append(n)
        return 1.0 + (math.log(n) - math.log(400)) ** 2
    return f


def test_search_finds_the_bowl_and_is_reproducible():
    calls_a, calls_b = [], []
    a = run_search(bowl(calls_a), 30, 3000, budget=10, seed=1)
    b = run_search(bowl(calls_b), 30, 3000, budget=10, seed=1)
    assert a == b and calls_a == calls_b
    assert calls_a[:3] == start_points(30, 3000) == [30, 300, 3000]
    assert len(calls_a) == len(set(calls_a)) <= 10  # no size finetuned twice
    assert all(30 <= n <= 3000 for n in calls_a)
    assert 250 <= a["best"]["n"] <= 650
    assert a["best"]["loss"] == min(t["loss"] for t in a["trials"])


def test_search_degenerate_range():
    out = run_search(bowl([]), 50, 50, budget=4)
    assert out["trials"] == [{"n": 50, "loss": pytest.approx(1 + math.log(50 / 400) ** 2)}]


@pytest.mark.slow
def test_search_size_cli_runs_real_trials(tmp_path):
    from tiny_models import alpaca_rows, tiny_base, write_eval

    rows = alpaca_rows(40)
    pool = pd.DataFrame([{"id": f"s{i:03d}", "source": "dolly", "role": "unseen", "instruction": r["instruction"],
                          "input": r.get("input", ""), "output": r["output"]} for i, r in enumerate(rows)])
    pool.to_parquet(tmp_path / "pool.parquet")
    scores = tmp_path / "scores"
    scores.mkdir()
    pd.DataFrame({"id": pool["id"], "score": pool["output"].str.len().astype(float)}).to_parquet(
        scores / "output_length.parquet")
    (tmp_path / "rule.json").write_text(json.dumps(
        {"indicators": ["output_length"], "coefficients": {"intercept": 1.0, "output_length": 1e-3}}))
    write_eval(tmp_path / "eval.parquet", alpaca_rows(4, offset=100))
    base = tiny_base(tmp_path / "base")
    ft = {"method": "lora", "lora_r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"], "epochs": 1,
          "batch_size": 4, "learning_rate": 0.001, "max_length": 64, "save_steps": 100}
    argv = ["search-size", "--pool", str(tmp_path / "pool.parquet"), "--rule", str(tmp_path / "rule.json"),
            "--scores", str(scores / "output_length.parquet"), "--eval", str(tmp_path / "eval.parquet"),
            "--model", json.dumps({"path": str(base), "kind": "causal"}), "--finetune-config", json.dumps(ft),
            "--eval-config", json.dumps({"batch_size": 4, "max_length": 64}), "--n-min", "8", "--n-max", "20",
            "--budget", "2", "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "search.json")]
    assert main(argv) == 0
    result = json.loads((tmp_path / "search.json").read_text())
    assert [t["n"] for t in result["trials"]] == [8, 13]
    assert all(np.isfinite(t["loss"]) and t["loss"] > 0 for t in result["trials"])
    assert result["best"]["n"] in (8, 13)
    # A rerun finds every trial's loss in the cache and gives the same answer.
    assert main(argv) == 0
    assert json.loads((tmp_path / "search.json").read_text())["trials"] == result["trials"]
