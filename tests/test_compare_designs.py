"""compare-designs on synthetic runs: the indicator-space diagnostics come from the fitted table's
mixture rows, validation numbers are carried over, and unfair comparisons stop."""

import json

import numpy as np
import pandas as pd
import pytest

from instructmining.cli import main
from instructmining.compare_designs import compare, markdown
from instructmining.errors import InstructMiningError

NAMES = ["a", "b", "c"]


def make_run(root, x, heldout=("held-000", "held-001", "held-002"), observed=(1.0, 1.1, 1.2), r2=0.2,
             size=30, inclusion=None):
    """A finished run: table.tsv (mixtures + one rep), rule.json, validation.json, mixtures.tsv."""
    analysis = root / "results" / "analysis"
    analysis.mkdir(parents=True)
    (root / "results" / "datasets").mkdir()
    n = len(x)
    names = [f"mix-{i:03d}" for i in range(n)]
    table = pd.DataFrame(x, columns=NAMES)
    table.insert(0, "dataset", names)
    table.insert(1, "kind", "mixture")
    table["log_loss"] = np.linspace(1.0, 2.0, n)
    rep = table.iloc[[0]].assign(dataset="mix-000-rep1", kind="rep", log_loss=1.01)
    # An outlying rep row: the diagnostics must ignore it (it is not a fitting mixture).
    rep[NAMES] = 1e6
    pd.concat([table, rep]).to_csv(analysis / "table.tsv", sep="\t", index=False)
    pd.DataFrame({"dataset": names, "kind": "mixture", "size": size}).to_csv(
        root / "results" / "datasets" / "mixtures.tsv", sep="\t", index=False)
    (analysis / "rule.json").write_text(json.dumps(
        {"indicators": ["a"], "r2": 0.6, "stepwise": {"candidates": NAMES}}))
    (analysis / "validation.json").write_text(json.dumps({
        "verdict": "not established", "reasons": ["held-out R² lower bound <= 0"],
        "heldout": {"n": len(heldout), "datasets": list(heldout), "observed": list(observed),
                    "predicted": list(observed), "r2": r2, "r2_ci_95": [-0.5, 0.7], "spearman": 0.5},
        "cv": {"loo_procedure": 0.1},
        "bootstrap_inclusion": {"resamples": 10, "frequency": inclusion or {"a": 0.9, "b": 0.3, "c": 0.1}},
        "seed_noise": {"sd_log_loss": 0.002, "explainable_share": 0.99},
    }))
    return root


@pytest.fixture
def runs(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    collinear = np.column_stack([a, b, a + b + 1e-3 * rng.normal(size=12)])  # random: c ~ a + b
    spread = rng.normal(size=(12, 3))  # designed: three independent directions
    return (make_run(tmp_path / "random", collinear),
            make_run(tmp_path / "spanning", spread, r2=0.6, inclusion={"a": 1.0, "b": 0.0, "c": 0.05}))


def test_diagnostics_come_from_the_fitting_mixtures(runs):
    result = compare(*runs)
    r, d = result["runs"]["random"], result["runs"]["designed"]
    assert r["mixtures"] == d["mixtures"] == 12 and r["mixture_sizes"] == [30]
    assert r["indicator_space"]["components_95"] == 2 and d["indicator_space"]["components_95"] == 3
    assert r["indicator_space"]["condition_number"] > 100 > d["indicator_space"]["condition_number"]
    assert d["heldout"]["r2"] == 0.6 and d["heldout"]["r2_ci_95"] == [-0.5, 0.7]
    assert d["bootstrap_inclusion"] == {"a": 1.0, "b": 0.0, "c": 0.05}
    assert r["seed_noise"] == {"sd_log_loss": 0.002, "explainable_share": 0.99}
    assert result["same_heldout_losses"] is True
    assert result["heldout_r2_at_least_0_5"] == {"random": False, "designed": True}


def test_cli_writes_json_and_markdown(runs, tmp_path):
    out, md = tmp_path / "comparison.json", tmp_path / "comparison.md"
    assert main(["compare-designs", "--random", str(runs[0]), "--designed", str(runs[1]),
                 "--out", str(out), "--markdown", str(md)]) == 0
    result = json.loads(out.read_text())
    assert result["runs"]["designed"]["indicator_space"]["components_95"] == 3
    text = md.read_text()
    assert text == markdown(result)
    assert "| principal components for 95 % of variance | 2 of 3 | 3 of 3 |" in text
    assert "| held-out R² | 0.2 | 0.6 |" in text
    assert "| c | 0.1 | 0.05 |" in text


def test_further_arms_get_their_own_column(runs, tmp_path):
    x = np.random.default_rng(5).normal(size=(12, 3))
    tilt0 = make_run(tmp_path / "tilt0", x, r2=0.7)
    (tilt0 / "results" / "datasets" / "design.json").write_text(json.dumps(
        {"design": "spanning", "max_tilt": 0.0, "candidates": 500}))
    out, md = tmp_path / "comparison.json", tmp_path / "comparison.md"
    assert main(["compare-designs", "--random", str(runs[0]), "--designed", str(runs[1]),
                 "--arm", f"tilt0={tilt0}", "--out", str(out), "--markdown", str(md)]) == 0
    result = json.loads(out.read_text())
    assert set(result["runs"]) == {"random", "designed", "tilt0"}
    assert result["heldout_r2_at_least_0_5"]["tilt0"] is True
    text = md.read_text()
    assert "| | random | designed (spanning) | tilt0 |" in text
    assert "| design | random | random | spanning, max_tilt 0, 500 candidates |" in text
    assert "| held-out R² | 0.2 | 0.6 | 0.7 |" in text
    assert main(["compare-designs", "--random", str(runs[0]), "--designed", str(runs[1]),
                 "--arm", str(tilt0), "--out", str(tmp_path / "bad.json")]) == 2  # not NAME=DIR
    assert not (tmp_path / "bad.json").exists()
    short = make_run(tmp_path / "short", x[:6])
    with pytest.raises(InstructMiningError, match="short 6 of"):
        compare(runs[0], runs[1], {"short": short})


def test_different_heldout_mixtures_stop(tmp_path):
    x = np.random.default_rng(1).normal(size=(6, 3))
    a = make_run(tmp_path / "a", x)
    b = make_run(tmp_path / "b", x, heldout=("held-000", "held-001", "held-003"))
    with pytest.raises(InstructMiningError, match="different held-out mixtures"):
        compare(a, b)


def test_different_budgets_stop(tmp_path):
    rng = np.random.default_rng(2)
    a = make_run(tmp_path / "a", rng.normal(size=(6, 3)))
    b = make_run(tmp_path / "b", rng.normal(size=(7, 3)))
    with pytest.raises(InstructMiningError, match="different finetune budgets"):
        compare(a, b)
    c = make_run(tmp_path / "c", rng.normal(size=(6, 3)), size=60)
    with pytest.raises(InstructMiningError, match="different finetune budgets"):
        compare(a, c)


def test_rerun_heldout_losses_are_flagged(tmp_path):
    rng = np.random.default_rng(3)
    a = make_run(tmp_path / "a", rng.normal(size=(6, 3)))
    b = make_run(tmp_path / "b", rng.normal(size=(6, 3)), observed=(1.0, 1.1, 1.2000001))
    result = compare(a, b)
    assert result["same_heldout_losses"] is False
    assert "NOT identical" in markdown(result)


def test_missing_validation_is_named(tmp_path):
    a = make_run(tmp_path / "a", np.random.default_rng(4).normal(size=(6, 3)))
    (a / "results" / "analysis" / "validation.json").unlink()
    with pytest.raises(InstructMiningError, match="validation.json: missing"):
        compare(a, a)
