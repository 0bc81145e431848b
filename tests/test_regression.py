"""The rule: stepwise OLS on synthetic tables with known coefficients, refusals, the CLI, and the
table collection it reads."""

import json

import numpy as np
import pandas as pd
import pytest

from instructmining.cli import main
from instructmining.errors import DataError, InstructMiningError
from instructmining.regression import FitError, describe, fit_rule, model_problem, ols, stepwise
from instructmining.table import collect

# The paper's v1 rule, used as the truth of the synthetic data (raw indicator scale).
TRUTH = {"intercept": 1.0694, "reward": -0.1498, "output_length": 8.257e-5, "knn6": -0.9350}


def synthetic(n: int = 60, seed: int = 0, noise: float = 0.02) -> pd.DataFrame:
    """Mixture-like indicators on their natural scales; log loss from TRUTH plus Gaussian noise;
    mtld is drawn independently and has no effect."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "dataset": [f"mix-{i:03d}" for i in range(n)],
        "kind": "mixture",
        "reward": rng.normal(1.5, 1.0, n),
        "output_length": rng.uniform(50, 1500, n),
        "knn6": rng.uniform(0.7, 1.1, n),
        "mtld": rng.normal(60, 10, n),
    })
    df["log_loss"] = (TRUTH["intercept"] + TRUTH["reward"] * df["reward"] + TRUTH["output_length"] * df["output_length"]
                      + TRUTH["knn6"] * df["knn6"] + rng.normal(0, noise, n))
    df["loss"] = np.exp(df["log_loss"])
    return df


CANDIDATES = ["reward", "output_length", "knn6", "mtld"]


@pytest.mark.parametrize("criterion", ["pvalue", "aic"])
def test_stepwise_recovers_truth(criterion):
    # Seed 1 is one of the ~90% of seeds where the useless mtld does not enter by chance
    # (test_false_entry_rate checks that rate over many seeds).
    rule = fit_rule(synthetic(seed=1), CANDIDATES, criterion=criterion, p_enter=0.05, p_remove=0.10)
    assert sorted(rule["indicators"]) == ["knn6", "output_length", "reward"]
    assert "mtld" not in rule["coefficients"]
    for term, true in TRUTH.items():
        lo, hi = rule["conf_int_95"][term]
        assert lo <= true <= hi, (term, lo, true, hi)
    # Raw scale: output_length's coefficient is per token, not per standard deviation.
    assert 5e-5 < rule["coefficients"]["output_length"] < 1.2e-4
    assert rule["n"] == 60 and rule["df_resid"] == 56
    assert rule["r2"] > 0.95 and rule["adj_r2"] <= rule["r2"]
    assert rule["f_pvalue"] < 1e-10
    assert all(1.0 <= v < 2.0 for v in rule["vif"].values())
    assert rule["cv_r2"]["loo_procedure"] > 0.9
    assert rule["selection_frequency"]["mtld"] < 10 and rule["selection_frequency"]["reward"] == 60
    assert [s["action"] for s in rule["stepwise"]["steps"]][0] == "start"


def test_false_entry_rate():
    """Over 40 seeds the true indicators always enter and the useless one rarely (about p_enter,
    a little more because stepwise tests it at every forward step)."""
    false_entries = 0
    for seed in range(40):
        chosen, _ = stepwise(synthetic(seed=seed), CANDIDATES, p_enter=0.05, p_remove=0.10)
        assert {"reward", "output_length", "knn6"} <= set(chosen), seed
        false_entries += "mtld" in chosen
    assert false_entries <= 8


def test_loo_fixed_model_is_refit_without_each_row():
    df = synthetic(n=25, seed=3)
    rule = fit_rule(df, CANDIDATES, p_enter=0.05, p_remove=0.10)
    y, names = df["log_loss"].to_numpy(), rule["indicators"]
    preds = []
    for i in range(len(df)):
        train = df.drop(index=i)
        beta = ols(train, names).params
        preds.append(beta[0] + sum(b * df.loc[i, nm] for b, nm in zip(beta[1:], names, strict=True)))
    brute = 1 - ((y - np.array(preds)) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert rule["cv_r2"]["loo_fixed_model"] == pytest.approx(brute, rel=1e-9)


def test_refuses_too_few_datasets():
    df = synthetic(n=4)
    with pytest.raises(FitError, match=r"n = 4 datasets is too few for 3 indicator"):
        describe(df, ["reward", "output_length", "knn6"])
    with pytest.raises(FitError, match="at least 3"):
        fit_rule(df.head(2), CANDIDATES)


def test_refuses_rank_deficient_and_collinear():
    df = synthetic(n=40, seed=1)
    df["reward2"] = 2 * df["reward"] + 1  # an exact linear function of reward
    with pytest.raises(FitError, match="rank-deficient"):
        describe(df, ["reward", "reward2"])
    df["const"] = 3.0
    with pytest.raises(FitError, match=r"constant column\(s\) \['const'\]"):
        describe(df, ["reward", "const"])
    df["near"] = df["reward"] + np.random.default_rng(9).normal(0, 0.05, len(df))
    with pytest.raises(FitError, match=r"collinear: reward VIF=.*near VIF=.* > max_vif 10"):
        describe(df, ["reward", "near"])
    assert model_problem(df, ["reward", "near"], max_vif=1e6) is None


def test_stepwise_skips_a_collinear_candidate():
    df = synthetic(n=60, seed=2)
    df["reward_copy"] = df["reward"] + np.random.default_rng(5).normal(0, 1e-3, len(df))
    chosen, steps = stepwise(df, ["reward", "reward_copy", "output_length", "knn6"], p_enter=0.05, p_remove=0.1)
    assert len({"reward", "reward_copy"} & set(chosen)) == 1
    assert {"output_length", "knn6"} <= set(chosen)
    left_out = ({"reward", "reward_copy"} - set(chosen)).pop()
    assert steps[-1]["action"] == "stop" and steps[-1]["indicators"] == chosen
    assert steps[-1]["skipped"].startswith(f"{left_out}: indicators ") and "> max_vif 10" in steps[-1]["skipped"]


def test_bad_inputs_name_the_problem():
    df = synthetic(n=20)
    df.loc[7, "knn6"] = np.nan
    with pytest.raises(DataError, match=r"t.tsv:dataset mix-007: field 'knn6'"):
        fit_rule(df, CANDIDATES, path="t.tsv")
    with pytest.raises(DataError, match="field 'nope': column missing"):
        fit_rule(synthetic(n=20), ["nope"])
    with pytest.raises(InstructMiningError, match="p_remove"):
        stepwise(synthetic(n=20), CANDIDATES, p_enter=0.2, p_remove=0.1)


def test_fit_rule_cli_is_byte_reproducible(tmp_path):
    table = tmp_path / "table.tsv"
    synthetic(n=30, seed=4).to_csv(table, sep="\t", index=False)
    outs = []
    for run in ("a", "b"):
        d = tmp_path / run
        args = ["fit-rule", "--table", str(table), "--p-enter", "0.05", "--p-remove", "0.1",
                "--out", str(d / "rule.json"), "--coefficients", str(d / "coef.tsv"), "--steps", str(d / "steps.tsv")]
        assert main(args) == 0
        outs.append([(d / f).read_bytes() for f in ("rule.json", "coef.tsv", "steps.tsv")])
    assert outs[0] == outs[1]
    rule = json.loads(outs[0][0])
    for key in ("indicators", "coefficients", "std_errors", "p_values", "conf_int_95", "r2", "adj_r2",
                "f_statistic", "f_pvalue", "n", "vif", "cv_r2", "provenance"):
        assert key in rule
    assert rule["stepwise"]["candidates"] == ["reward", "output_length", "knn6", "mtld"]
    coef = pd.read_csv(tmp_path / "a" / "coef.tsv", sep="\t")
    assert coef["term"].tolist() == ["intercept", *rule["indicators"]]
    assert coef["coefficient"].tolist() == pytest.approx([rule["coefficients"][t] for t in coef["term"]])


def test_collect_table(tmp_path):
    losses, inds = [], []
    for i, name in enumerate(["mix-001", "mix-000"]):
        loss = tmp_path / "loss" / f"{name}.json"
        loss.parent.mkdir(exist_ok=True)
        loss.write_text(json.dumps({"loss": 1.5 + i, "num_tokens": 10}))
        ind = tmp_path / "ind" / f"{name}.parquet"
        ind.parent.mkdir(exist_ok=True)
        pd.DataFrame({"dataset": [name], "reward": [0.5 * i], "knn6": [0.9]}).to_parquet(ind)
        losses.append(str(loss))
        inds.append(str(ind))
    table = collect(losses, inds)
    assert table.columns.tolist() == ["dataset", "kind", "loss", "log_loss", "reward", "knn6"]
    assert table["dataset"].tolist() == ["mix-000", "mix-001"]
    assert table["log_loss"].tolist() == pytest.approx(np.log([2.5, 1.5]).tolist())
    with pytest.raises(DataError, match="loss only: \\[\\]; indicators only: \\['mix-001'\\]"):
        collect(losses[1:], inds)
    (tmp_path / "loss" / "mix-000.json").write_text(json.dumps({"loss": 0.0}))
    with pytest.raises(DataError, match="mix-000.json: field 'loss'"):
        collect(losses, inds)


def test_plot_fit_cli(tmp_path):
    table = tmp_path / "table.tsv"
    synthetic(n=12, seed=6).to_csv(table, sep="\t", index=False)
    for name, p_enter in (("rule", "0.05"), ("empty", "1e-300")):  # the second chooses no indicator
        rule = tmp_path / f"{name}.json"
        assert main(["fit-rule", "--table", str(table), "--p-enter", p_enter, "--p-remove", "0.1", "--out", str(rule),
                     "--coefficients", str(tmp_path / "c.tsv"), "--steps", str(tmp_path / "s.tsv")]) == 0
        png = tmp_path / f"{name}.png"
        assert main(["plot-fit", "--rule", str(rule), "--table", str(table), "--out", str(png)]) == 0
        assert png.read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "empty.json").read_text())["indicators"] == []


def test_rep_rows_measure_seed_noise_and_stay_out_of_the_fit(tmp_path):
    df = synthetic(n=20, seed=7)
    rep = df.iloc[[0]].assign(dataset="mix-000-rep1", kind="rep", log_loss=df["log_loss"].iloc[0] + 0.03)
    table = tmp_path / "table.tsv"
    pd.concat([df, rep]).to_csv(table, sep="\t", index=False)
    assert main(["fit-rule", "--table", str(table), "--out", str(tmp_path / "r.json"), "--coefficients",
                 str(tmp_path / "c.tsv"), "--steps", str(tmp_path / "s.tsv")]) == 0
    rule = json.loads((tmp_path / "r.json").read_text())
    assert rule["n"] == 20 and "mix-000-rep1" not in rule["datasets"]
    assert rule["seed_noise"]["pairs"] == [{"dataset": "mix-000-rep1", "of": "mix-000", "diff": pytest.approx(0.03)}]
    assert rule["seed_noise"]["sd_log_loss"] == pytest.approx(0.03 / np.sqrt(2))
    assert rule["residual_sd"] == pytest.approx(np.sqrt(ols(df, rule["indicators"]).mse_resid))
