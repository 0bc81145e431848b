"""validation.py: held-out mixtures are never fitted on, the verdict separates signal from noise,
bootstrap inclusion finds a planted indicator; selection_study.py: the paired t interval."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from instructmining import dataset_names, plan
from instructmining.cli import main
from instructmining.regression import fit_rule
from instructmining.selection_study import paired_differences
from instructmining.validation import MIN_HELDOUT, bootstrap_inclusion, heldout_mixtures, validate

NAMES = ["reward", "mtld", "perplexity"]


def _rows(prefix, kind, n, rng, signal, noise):
    x = rng.normal(0, 1, (n, len(NAMES)))
    y = 1.5 + signal * x[:, 0] + rng.normal(0, noise, n)
    frame = pd.DataFrame(x, columns=NAMES)
    frame.insert(0, "dataset", [f"{prefix}-{i:03d}" for i in range(n)])
    frame.insert(1, "kind", kind)
    frame.insert(2, "loss", np.exp(y))
    frame.insert(3, "log_loss", y)
    return frame


def _study(signal, seed=0, noise=0.05, n=24, n_held=8, rep_noise=0.01, p_enter=0.05):
    """A table.tsv (mixtures + one rep per mixture 0..3), a heldout.tsv, and the fitted rule."""
    rng = np.random.default_rng(seed)
    mix = _rows("mix", "mixture", n, rng, signal, noise)
    held = _rows("held", "heldout", n_held, rng, signal, noise)
    reps = mix.iloc[:4].copy()
    reps["dataset"] = [dataset_names.repeat(d, 1) for d in reps["dataset"]]
    reps["kind"] = "rep"
    reps["log_loss"] = reps["log_loss"] + rng.normal(0, rep_noise, len(reps))
    reps["loss"] = np.exp(reps["log_loss"])
    table = pd.concat([mix, reps], ignore_index=True)
    rule = fit_rule(mix, NAMES, p_enter=p_enter, p_remove=max(0.10, p_enter))
    return table, held, rule


def test_strong_signal_is_established():
    table, held, rule = _study(signal=0.3)
    out = validate(rule, table, held, boot=100, seed=1)
    assert rule["indicators"] == ["reward"]
    assert out["verdict"] == "established", out["reasons"]
    assert out["heldout"]["r2"] > 0.9 and out["heldout"]["r2_ci_95"][0] > 0
    assert out["heldout"]["spearman"] > 0.9
    assert out["seed_noise"]["pairs"] == 4 and 0 < out["seed_noise"]["explainable_share"] <= 1
    # held-out ceiling: 1 - noise var / held-out var, and the rule stays below it up to sampling
    expected = 1 - out["seed_noise"]["noise_var"] / np.var(held["log_loss"], ddof=1)
    assert out["heldout"]["noise_ceiling_r2"] == pytest.approx(expected)
    assert out["heldout"]["r2"] <= out["heldout"]["noise_ceiling_r2"] + 0.05


def test_a_level_offset_is_measured_as_bias():
    # The same held-out mixtures 0.2 lower in log loss: ranking unchanged, R² lost to the offset.
    table, held, rule = _study(signal=0.3)
    base = validate(rule, table, held, boot=100, seed=1)["heldout"]
    shifted = held.assign(log_loss=held["log_loss"] - 0.2)
    out = validate(rule, table, shifted, boot=100, seed=1)["heldout"]
    assert out["spearman"] == base["spearman"]
    assert out["bias"] == pytest.approx(base["bias"] + 0.2)
    assert out["bias_ci_95"][0] > 0.15 and out["bias_share"] > 0.5 > base["bias_share"]
    assert out["r2"] < base["r2"] - 0.2


def test_pure_noise_is_not_established():
    # p_enter 0.5 lets noise in, so the verdict must come from the held-out mixtures, not an empty rule
    table, held, rule = _study(signal=0.0, seed=3, p_enter=0.5)
    assert rule["indicators"], "the noise rule should keep something for this test to mean anything"
    out = validate(rule, table, held, boot=100, seed=1)
    assert out["verdict"] == "not established"
    assert any("lower bound" in r for r in out["reasons"]), out["reasons"]


def test_noise_floor_and_heldout_count_gate_the_verdict():
    table, held, rule = _study(signal=0.3)
    no_reps = validate(rule, table[table["kind"] != "rep"], held, boot=50, seed=1)
    assert no_reps["verdict"] == "not established"
    assert any("noise floor not measured" in r for r in no_reps["reasons"])
    few = validate(rule, table, held.iloc[: MIN_HELDOUT - 1], boot=50, seed=1)
    json.dumps(few, allow_nan=False)  # 2 points: Spearman's p is NaN in scipy, None here
    assert few["verdict"] == "not established" and any("held-out mixture" in r for r in few["reasons"])
    # seed noise as large as the spread over mixtures: nothing left to explain
    swamped = table.copy()
    rep = swamped["kind"] == "rep"
    swamped.loc[rep, "log_loss"] += np.array([3.0, -3.0, 3.0, -3.0])
    out = validate(rule, swamped, held, boot=50, seed=1)
    assert out["seed_noise"]["explainable_share"] < 0 and out["verdict"] == "not established"


def test_bootstrap_inclusion_finds_the_planted_indicator():
    table, _, _ = _study(signal=0.3)
    freq = bootstrap_inclusion(table[table["kind"] == "mixture"], NAMES, boot=100, seed=7)
    assert freq["reward"] >= 0.98
    assert freq["mtld"] < 0.5 and freq["perplexity"] < 0.5
    again = bootstrap_inclusion(table[table["kind"] == "mixture"], NAMES, boot=100, seed=7)
    assert again == freq  # seeded


def test_fit_rule_never_reads_the_heldout_rows(tmp_path):
    """Held-out rows, even inside table.tsv, do not move the rule: changing their losses leaves
    rule.json's fit identical; and the workflow gives fit_rule a table without them."""
    table, held, _ = _study(signal=0.3)
    rules = []
    for shift in (0.0, 5.0):
        h = held.assign(log_loss=held["log_loss"] + shift)
        h["loss"] = np.exp(h["log_loss"])
        path = tmp_path / f"table{shift}.tsv"
        pd.concat([table, h]).to_csv(path, sep="\t", index=False)
        out = tmp_path / f"rule{shift}.json"
        assert main(["fit-rule", "--table", str(path), "--candidates", *NAMES, "--out", str(out),
                     "--coefficients", str(tmp_path / "c.tsv"), "--steps", str(tmp_path / "s.tsv")]) == 0
        rule = json.loads(out.read_text())
        rules.append((rule["coefficients"], rule["cv_r2"], rule["datasets"]))
    assert rules[0] == rules[1]
    assert not any(d.startswith("held-") for d in rules[0][2])


def test_plan_keeps_heldout_out_of_the_fitting_table():
    cfg = {"mixtures": {"n": 5, "heldout": 3, "repeats": [1]}}
    groups = plan.analysis_groups({**cfg, "bins": {}, "selection": {}})
    assert groups["heldout"] == ["held-000", "held-001", "held-002"]
    assert not set(groups["heldout"]) & set(groups["table"])
    assert all(dataset_names.kind(d) == "heldout" and dataset_names.finetune_seed(d, 4) == 4 for d in groups["heldout"])
    assert plan.validation_files(cfg)["heldout"] == ["results/analysis/heldout.tsv"]
    assert plan.validation_files({"mixtures": {"n": 5}})["heldout"] == []


def test_heldout_mixtures_have_their_own_seed_stream():
    rng = np.random.default_rng(0)
    pool = pd.DataFrame({"id": [f"{s}{i:03d}" for s in "xyz" for i in range(40)],
                         "source": [s for s in "xyz" for _ in range(40)], "role": "train"})
    pool["instruction"] = pool["input"] = pool["output"] = rng.choice(["p", "q"], len(pool))
    a = heldout_mixtures(pool, list("xyz"), 4, 30, seed=1, shortfall="redistribute")
    b = heldout_mixtures(pool, list("xyz"), 6, 30, seed=1, shortfall="redistribute")
    assert [n for n, _, _ in a] == ["held-000", "held-001", "held-002", "held-003"]
    for (_, ra, ma), (_, rb, mb) in zip(a, b[:4], strict=True):  # more held-out mixtures: the first stay
        assert ra["id"].tolist() == rb["id"].tolist() and ma == mb and ma["kind"] == "heldout"
    from instructmining.mixing import make_mixtures

    mix = make_mixtures(pool, list("xyz"), 4, 30, 1, "redistribute")
    assert all(ra["id"].tolist() != rm["id"].tolist() for (_, ra, _), (_, rm, _) in zip(a, mix, strict=True))


def test_paired_interval_matches_scipy():
    loss = {1: (4.70, 4.75), 2: (4.80, 4.79), 3: (4.71, 4.78), 4: (4.69, 4.74)}
    runs = pd.DataFrame([{"dataset": dataset_names.selection(m, 60, s), "loss": v}
                         for s, (r, q) in loss.items() for m, v in (("rule", r), ("random", q))])
    [row] = paired_differences(runs)
    d = np.array([r - q for r, q in loss.values()])
    ref = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert row["seeds"] == [1, 2, 3, 4] and row["k"] == 4
    assert row["mean_difference"] == pytest.approx(d.mean())
    assert row["ci_95"] == pytest.approx([ref.low, ref.high])
    assert row["verdict"].startswith("no difference") == (ref.low <= 0 <= ref.high)


def test_paired_interval_needs_two_pairs_and_states_the_sign():
    runs = pd.DataFrame({"dataset": ["sel-rule-20-1", "sel-random-20-1", "sel-rule-40-1", "sel-random-40-1",
                                     "sel-rule-40-2", "sel-random-40-2", "sel-random-40-3"],
                         "loss": [1.0, 1.1, 1.0, 1.5, 1.1, 1.6, 9.9]})
    rows = {r["n"]: r for r in paired_differences(runs)}
    assert rows[20]["ci_95"] == [None, None] and rows[20]["verdict"].startswith("undetermined")
    assert rows[40]["seeds"] == [1, 2]  # seed 3 has no rule partner
    assert rows[40]["ci_95"][1] < 0 and rows[40]["verdict"].startswith("rule better")


def test_cli_writes_validation_and_study(tmp_path):
    table, held, rule = _study(signal=0.3)
    table.to_csv(tmp_path / "table.tsv", sep="\t", index=False)
    held.to_csv(tmp_path / "heldout.tsv", sep="\t", index=False)
    (tmp_path / "rule.json").write_text(json.dumps(rule))
    out = tmp_path / "validation.json"
    assert main(["validate-rule", "--rule", str(tmp_path / "rule.json"), "--table", str(tmp_path / "table.tsv"),
                 "--heldout", str(tmp_path / "heldout.tsv"), "--bootstrap", "50", "--seed", "1",
                 "--out", str(out), "--html", str(tmp_path / "v.html")]) == 0
    res = json.loads(out.read_text())
    assert res["verdict"] == "established" and res["heldout"]["n"] == len(held)
    assert "established" in (tmp_path / "v.html").read_text()
    # no held-out table: a verdict all the same, saying why
    assert main(["validate-rule", "--rule", str(tmp_path / "rule.json"), "--table", str(tmp_path / "table.tsv"),
                 "--heldout", "--bootstrap", "10", "--seed", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["verdict"] == "not established"


def test_deterministic_torch_settings():
    code = ("from instructmining.determinism import deterministic_torch; import torch; deterministic_torch(2); "
            "print(torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), "
            "torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["2", "True", "True", "False"]
