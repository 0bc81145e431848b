"""Indicator validity (instructmining.validity): the statistics on answers of known order, the
exclusion of chance and inverted scorers from the stepwise candidates (through `fit-rule`), the
fairness of the validity prompts (never a reward-training or eval prompt), and the planning of the
validate_indicators rule for the demo, ci and paper configs."""

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from instructmining import plan, validity, validity_data
from instructmining.cli import main
from instructmining.config import ConfigError, check_config, load_config
from instructmining.data import match_key
from instructmining.indicators.reward_train import (
    _norm,
    load_groups,
    pairs_of,
    reward_heldout_prompts,
    split_groups,
)

REPO = Path(__file__).resolve().parents[1]


def _answers(n_prompts: int = 60, ranks: tuple = (0, 1, 2, 3, 3)) -> pd.DataFrame:
    """A synthetic ladder: every prompt answered by five sets of known rank (the last two tied)."""
    rows = [{"prompt": p, "set": f"s{k}", "rank": r, "id": f"{p}-{k}", "instruction": f"q{p}", "input": "",
             "output": f"answer {p} {k}"} for p in range(n_prompts) for k, r in enumerate(ranks)]
    return pd.DataFrame(rows)


def _table(answers: pd.DataFrame, cols: dict) -> pd.DataFrame:
    return validity.validity_table(answers, pd.DataFrame(cols), list(cols), n_boot=500, seed=0)


def test_statistics_on_known_answers():
    a = _answers()
    rng = np.random.default_rng(3)
    quality = -a["rank"].to_numpy(dtype=float)
    t = _table(a, {
        "reward": quality,                       # perfect: higher = better
        "perplexity": -quality,                  # perfect for a lower-is-better scorer (registry sign +1)
        "unieval_coherence": -quality,           # planted inverted: ranks worse answers higher
        "unieval_naturalness": rng.normal(size=len(a)),  # noise
        "input_length": np.full(len(a), 7.0),    # same prompt -> every pair ties
    }).set_index("indicator")
    # ranks 0 < 1 < 2 < 3 = 3: 4 + 3 + 2 = 9 pairs per prompt (a tie group has no pairs within it)
    assert (t["n_pairs"] == 60 * 9).all() and (t["n_prompts"] == 60).all()
    for name in ("reward", "perplexity"):
        assert t.at[name, "accuracy"] == 1.0 and t.at[name, "ci_low"] == 1.0 and t.at[name, "status"] == "valid"
        assert t.at[name, "ladder_spearman"] == pytest.approx(1.0)
    assert t.at["perplexity", "direction"] == -1 and t.at["reward", "direction"] == 1
    assert t.at["unieval_coherence", "accuracy"] == 0.0 and t.at["unieval_coherence", "status"] == "inverted"
    assert t.at["unieval_coherence", "ladder_spearman"] == pytest.approx(-1.0)
    noise = t.loc["unieval_naturalness"]
    assert noise["ci_low"] < 0.5 < noise["ci_high"] and noise["status"] == "chance"
    # lengths are reference rows, never judged; all ties -> exactly one half, no ladder Spearman
    assert t.at["input_length", "status"] == "reference" and t.at["input_length", "accuracy"] == 0.5
    assert pd.isna(t.at["input_length", "ladder_spearman"])


def test_bootstrap_resamples_prompts_not_pairs():
    # Each prompt is all-right or all-wrong: the pairs of a prompt are one unit of evidence, so
    # the interval is as wide as 20 coin flips, not as 180.
    outcomes = np.repeat([1.0, 0.0] * 10, 9)
    clusters = np.repeat(np.arange(20), 9)
    acc, lo, hi = validity.bootstrap_accuracy(outcomes, clusters, n_boot=2000, seed=1)
    assert acc == 0.5 and lo < 0.33 and hi > 0.67
    _, lo_pairs, hi_pairs = validity.bootstrap_accuracy(outcomes, np.arange(180), n_boot=2000, seed=1)
    assert hi_pairs - lo_pairs < (hi - lo) / 2


def test_ladder_pairs_are_reward_trainings_pairs(data_root):
    outputs = load_config(REPO / "config" / "config.yaml")["indicators"]["reward_training"]["outputs"]
    prompts = validity_data.validity_prompts(data_root, outputs, [], set(), {"heldout": 0.2, "seed": 1}, 20)
    answers = validity_data.answer_frame(data_root, outputs, prompts)
    groups = {_norm(g["instruction"]): g for g in load_groups(data_root, outputs, set())}
    assert len(validity_data.ladder_pairs(answers)) == sum(len(pairs_of(groups[_norm(p)])) for p in prompts)


def _real_split(data_root, cfg):
    outputs = cfg["indicators"]["reward_training"]["outputs"]
    fake_pool = [g["instruction"] for g in load_groups(data_root, outputs, set())[::7]]  # some AlpacaEval prompts
    return outputs, fake_pool


def test_validity_prompts_never_train_the_reward_model_nor_are_eval(data_root):
    cfg = check_config(load_config(REPO / "config" / "config.yaml"), base=REPO)
    outputs, pool = _real_split(data_root, cfg)
    split = plan.validity_split(cfg)
    assert split == {"heldout": cfg["indicators"]["reward_training"]["heldout"], "seed": cfg["seed"]}
    prompts = validity_data.validity_prompts(data_root, outputs, pool, set(), split, None)
    # What train_reward trains and early-stops on: the same load_groups + split_groups call.
    training = cfg["indicators"]["reward_training"]
    _, val, train = split_groups(load_groups(data_root, outputs, {_norm(t) for t in pool}), split["heldout"],
                                 split["seed"], training.get("validation", 0.0))
    trained = {_norm(g["instruction"]) for g in train + val}
    mine = {_norm(p) for p in prompts}
    # ... and reward training's own account of its held-out prompts
    held = {_norm(t) for t in reward_heldout_prompts(data_root, training, pool, cfg["seed"])}
    assert mine <= held
    assert len(mine) >= 50 and not mine & trained and not mine & {_norm(t) for t in pool}
    # never one of the 332 eval instructions (match key, as the pool's leakage guard)
    evals = [json.loads(line)["instruction"] for line in
             (data_root / "eval/self_instruct_252/user_oriented_instructions.jsonl").read_text().splitlines()]
    evals += [json.loads(line)["text"] for line in (data_root / "eval/vicuna_80/question.jsonl").read_text().splitlines()]
    keys = {match_key(e) for e in evals}
    assert len(keys) >= 330 and not {match_key(p) for p in prompts} & keys
    # an eval key given to the function removes that prompt
    assert prompts[0] not in validity_data.validity_prompts(data_root, outputs, pool, {match_key(prompts[0])}, split, None)


def _fit(tmp_path, table, validity_path):
    table_path = tmp_path / "table.tsv"
    table.to_csv(table_path, sep="\t", index=False)
    out = tmp_path / "rule.json"
    args = ["fit-rule", "--table", str(table_path), "--p-enter", "0.2", "--p-remove", "0.3", "--out", str(out),
            "--coefficients", str(tmp_path / "c.tsv"), "--steps", str(tmp_path / "s.tsv"),
            "--html", str(tmp_path / "rule.html")]
    assert main(args + (["--validity", str(validity_path)] if validity_path else [])) == 0
    return json.loads(out.read_text())


def test_planted_inverted_scorer_is_not_a_candidate(tmp_path):
    # The validity table: reward is valid; the planted scorer (negative output length as a fake
    # unieval_coherence column: longer = better on the ladder, so it orders it backwards) is inverted.
    a = _answers(40)
    a["output"] = [o + " word" * (5 - r) * 10 for o, r in zip(a["output"], a["rank"], strict=True)]
    length = a["output"].str.split().str.len().to_numpy(dtype=float)
    vt = _table(a, {"reward": -a["rank"].to_numpy(dtype=float), "unieval_coherence": -length})
    assert vt.set_index("indicator")["status"].to_dict() == {"reward": "valid", "unieval_coherence": "inverted"}
    vpath = tmp_path / "indicator_validity.tsv"
    vt.to_csv(vpath, sep="\t", index=False)
    # A mixture table where the planted scorer predicts the loss best: without the validity check
    # the stepwise fit would report it as a quality indicator.
    rng = np.random.default_rng(0)
    coh = rng.normal(size=14)
    table = pd.DataFrame({"dataset": [f"mix-{i:03d}" for i in range(14)], "kind": "mixture",
                          "reward": rng.normal(size=14), "unieval_coherence": coh})
    table["log_loss"] = 1.5 + 0.1 * coh + 0.001 * rng.normal(size=14)
    table["loss"] = np.exp(table["log_loss"])
    assert "unieval_coherence" in _fit(tmp_path, table, None)["indicators"]
    rule = _fit(tmp_path, table, vpath)
    assert "unieval_coherence" not in rule["indicators"]
    assert rule["stepwise"]["candidates"] == ["reward"]
    assert rule["validity"]["excluded"]["unieval_coherence"].startswith("inverted: pairwise accuracy 0.000")
    assert "Indicators left out (validity)" in (tmp_path / "rule.html").read_text()
    assert "unieval_coherence" in (tmp_path / "rule.html").read_text()


def test_missing_validity_row_is_an_error():
    vt = _table(_answers(10), {"reward": np.arange(50.0)})
    with pytest.raises(validity.InstructMiningError, match="no validity row for candidate"):
        validity.usable_candidates(["reward", "mtld"], vt)


def test_paper_config_validates_its_hub_scorers_without_downloading():
    paper = check_config(load_config(REPO / "config" / "paper.yaml"), base=REPO)
    assert plan.VALIDITY in plan.targets(paper)
    assert plan.fit_rule_files(paper)["validity"] == [plan.VALIDITY]
    models = plan.validity_models(paper)
    assert models["reward"] == paper["indicators"]["reward_model"]  # OpenAssistant DeBERTa (hub)
    assert models["unieval"] == paper["indicators"]["unieval_model"]  # UniEval T5 (hub)
    assert plan.validity_split(paper) is None  # the hub reward model never trained on AlpacaEval
    files = plan.validity_files(paper)
    assert files["models"] == [] and len(files["outputs"]) == 5 and all(Path(f).is_file() for f in files["outputs"])


def test_ci_and_demo_plan_validity():
    for name in ("config", "ci"):
        cfg = check_config(load_config(REPO / "config" / f"{name}.yaml"), base=REPO)
        assert plan.VALIDITY in plan.targets(cfg) and plan.fit_rule_files(cfg)["validity"] == [plan.VALIDITY]
    demo = check_config(load_config(REPO / "config" / "config.yaml"), base=REPO)
    assert plan.validity_outputs(demo) == demo["indicators"]["reward_training"]["outputs"]  # one ladder
    assert set(plan.validity_files(demo)["models"]) == {"results/models/base", "results/models/reward"}


def test_require_valid_indicators_needs_a_ladder():
    ci = load_config(REPO / "config" / "ci.yaml")
    bare = copy.deepcopy(ci)
    del bare["validity"]
    with pytest.raises(ConfigError, match="analysis.require_valid_indicators"):
        check_config(bare, base=REPO)
    bare["analysis"]["require_valid_indicators"] = False
    cfg = check_config(bare, base=REPO)
    assert plan.fit_rule_files(cfg)["validity"] == [] and plan.VALIDITY not in plan.targets(cfg)


def test_alpaca_gpt4_contrast_pairs_shared_instructions(data_root):
    demo = load_config(REPO / "config" / "config.yaml")
    contrast = demo["validity"]["contrasts"][0]
    frame = validity_data.contrast_frame(data_root, contrast, [], set(), None)
    assert len(frame) == 2 * 57 and (frame.groupby("prompt")["rank"].apply(sorted) == pd.Series([[0, 1]] * 57)).all()
    assert (frame.groupby("prompt")["instruction"].nunique() == 1).all()
    pool = list(frame["instruction"][:10])  # as if in the pool: left out
    fewer = validity_data.contrast_frame(data_root, contrast, pool, {match_key(frame["instruction"].iloc[20])}, None)
    assert len(fewer) == 2 * (57 - 5 - 1)
    perfect = pd.DataFrame({"reward": -frame["rank"].to_numpy(dtype=float)})
    cols = validity.contrast_columns(frame, perfect, ["reward"], "alpaca_gpt4", 200, 0)
    assert cols.loc["reward"].to_dict() == {"alpaca_gpt4_accuracy": 1.0, "alpaca_gpt4_ci_low": 1.0,
                                            "alpaca_gpt4_ci_high": 1.0, "alpaca_gpt4_pairs": 57}


def test_validate_indicators_command(tmp_path, data_root):
    """The command end to end with a model-free scorer: prompts, answers, the pool's cache code,
    the table, the per-answer scores, the report page; a rerun reads every score from the cache."""
    demo = load_config(REPO / "config" / "config.yaml")
    outputs = demo["indicators"]["reward_training"]["outputs"]
    pool = tmp_path / "pool.parquet"
    pd.DataFrame({"instruction": ["not an AlpacaEval prompt"]}).to_parquet(pool)
    evals = tmp_path / "eval_all.parquet"
    pd.DataFrame({"instruction": ["Write a haiku"], "input": [""]}).to_parquet(evals)
    args = ["validate-indicators", "--pool", str(pool), "--eval-all", str(evals), "--data-root", str(data_root),
            "--outputs", json.dumps(outputs), "--contrasts", json.dumps(demo["validity"]["contrasts"]),
            "--split", json.dumps({"heldout": 0.2, "seed": 1}), "--names", '["mtld"]', "--max-prompts", "6",
            "--bootstrap", "200", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "v.tsv"),
            "--answers-out", str(tmp_path / "a.parquet"), "--html", str(tmp_path / "v.html")]
    assert main(args) == 0
    table = validity.read_validity(tmp_path / "v.tsv")
    row = table.iloc[0]
    assert row["indicator"] == "mtld" and row["status"] == "reference" and row["n_prompts"] == 6
    assert row["alpaca_gpt4_pairs"] == 6 and 0 <= row["alpaca_gpt4_accuracy"] <= 1
    answers = pd.read_parquet(tmp_path / "a.parquet")
    assert set(answers["contrast"]) == {"ladder", "alpaca_gpt4"} and answers["mtld"].notna().all()
    assert "Indicator validity" in (tmp_path / "v.html").read_text()
    first = (tmp_path / "v.tsv").read_text()
    assert main(args) == 0 and (tmp_path / "v.tsv").read_text() == first  # cached, seeded: identical
