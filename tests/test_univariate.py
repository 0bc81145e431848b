"""Univariate study: correlations against scipy, bin ordering, undefined cases, and the panels."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from instructmining.cli import main
from instructmining.errors import DataError
from instructmining.univariate import bin_rows, correlations


def tables(k: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    # Bin datasets listed out of order (uni-reward-10 before uni-reward-2) to test sorting by k.
    ks = list(range(k))[::-1]
    bins = pd.DataFrame({
        "dataset": [f"uni-reward-{i}" for i in ks] + [f"uni-output_length-{i}" for i in ks],
        "kind": "bin",
        "reward": [float(i) + rng.normal(0, 0.1) for i in ks] + list(rng.normal(1, 0.1, k)),
        "output_length": list(rng.normal(300, 5, k)) + [100.0 * (i + 1) for i in ks],
    })
    bins["loss"] = [1.5 - 0.1 * i + rng.normal(0, 0.02) for i in ks] + [1.2 + 0.03 * i ** 2 for i in ks]
    bins["log_loss"] = np.log(bins["loss"])
    mix = pd.DataFrame({"dataset": [f"mix-{i:03d}" for i in range(8)], "kind": "mixture",
                        "reward": rng.normal(1, 1, 8), "output_length": rng.uniform(50, 900, 8)})
    mix["loss"] = 1.4 - 0.05 * mix["reward"] + rng.normal(0, 0.01, 8)
    mix["log_loss"] = np.log(mix["loss"])
    return mix, bins


def test_bin_rows_sorted_by_k():
    _, bins = tables(k=12)
    rows = bin_rows(bins, "reward")
    assert rows["bin"].tolist() == list(range(12))
    assert rows["dataset"].iloc[10] == "uni-reward-10"
    assert bin_rows(bins, "rew").empty  # a prefix of another indicator's name matches nothing


def test_correlations_match_scipy():
    mix, bins = tables()
    out = correlations(mix, bins, ["reward", "output_length"])
    assert out[["indicator", "scope"]].values.tolist() == [
        ["reward", "bins"], ["reward", "mixtures"], ["output_length", "bins"], ["output_length", "mixtures"]]
    for _, row in out.iterrows():
        frame = bin_rows(bins, row["indicator"]) if row["scope"] == "bins" else mix
        pr = stats.pearsonr(frame[row["indicator"]], frame["loss"])
        sr = stats.spearmanr(frame[row["indicator"]], frame["loss"])
        assert row["pearson_r"] == pytest.approx(pr.statistic) and row["spearman_rho"] == pytest.approx(sr.statistic)
        # fewer than 10 points (5 bins, 8 mixtures): exact p = P(|r| >= |r_obs|) over all orderings,
        # checked against scipy's exact permutation test (n_resamples=inf enumerates every ordering)
        assert row["p_method"] == "exact permutation"
        x, y = frame[row["indicator"]].to_numpy(), frame["loss"].to_numpy()
        for col, xs, ys in (("pearson_p", x, y), ("spearman_p", stats.rankdata(x), stats.rankdata(y))):
            # one sample with permutation_type="pairings" enumerates the n! orderings of y
            ref = stats.permutation_test((ys,), lambda yy, xs=xs: abs(np.corrcoef(xs, yy)[0, 1]),
                                         permutation_type="pairings", n_resamples=np.inf, alternative="greater")
            assert row[col] == pytest.approx(ref.pvalue)
    # output_length bins are a monotone increasing loss curve: Spearman exactly 1, and with K = 5
    # only 2 of the 120 orderings are as extreme: p = 1/60, not the asymptotic 0.0
    row = out.set_index(["indicator", "scope"]).loc[("output_length", "bins")]
    assert row["spearman_rho"] == pytest.approx(1.0) and row["spearman_p"] == pytest.approx(2 / 120)


def test_large_samples_use_the_t_approximation():
    rng = np.random.default_rng(1)
    mix = pd.DataFrame({"dataset": [f"mix-{i:03d}" for i in range(30)], "reward": rng.normal(0, 1, 30)})
    mix["loss"] = 1 - 0.1 * mix["reward"] + rng.normal(0, 0.1, 30)
    bins = pd.DataFrame({"dataset": [f"uni-reward-{i}" for i in range(4)], "reward": [0.0, 1, 2, 3],
                         "loss": [1.4, 1.3, 1.2, 1.1]})
    out = correlations(mix, bins, ["reward"]).set_index("scope")
    assert out.loc["mixtures", "p_method"] == "asymptotic"
    assert out.loc["mixtures", "spearman_p"] == pytest.approx(stats.spearmanr(mix["reward"], mix["loss"]).pvalue)
    assert out.loc["bins", "spearman_p"] == pytest.approx(1 / 12)  # the K = 4 case: 0.083, not 0.0


def test_undefined_correlations_are_nan_not_zero():
    mix, bins = tables(k=2)
    bins.loc[bins["dataset"].str.startswith("uni-reward"), "loss"] = 1.0
    out = correlations(mix, bins, ["reward", "output_length"]).set_index(["indicator", "scope"])
    assert out.loc[("reward", "bins")][["pearson_r", "spearman_rho"]].isna().all()  # constant loss
    assert np.isnan(out.loc[("output_length", "bins"), "spearman_p"])  # two bins: no p-value
    assert out.loc[("output_length", "bins"), "n"] == 2


def test_missing_bins_fail_clearly():
    mix, bins = tables()
    with pytest.raises(DataError, match="no uni-mtld-k datasets"):
        correlations(mix, bins.assign(mtld=1.0), ["mtld"])


def test_univariate_cli_writes_table_and_panels(tmp_path):
    mix, bins = tables()
    mix.to_csv(tmp_path / "table.tsv", sep="\t", index=False)
    bins.to_csv(tmp_path / "bins.tsv", sep="\t", index=False)
    args = ["univariate", "--table", str(tmp_path / "table.tsv"), "--bins", str(tmp_path / "bins.tsv"),
            "--indicators", "reward", "output_length", "--out", str(tmp_path / "u.tsv"), "--plot", str(tmp_path / "u.png")]
    assert main(args) == 0
    assert pd.read_csv(tmp_path / "u.tsv", sep="\t").shape == (4, 8)
    assert (tmp_path / "u.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
