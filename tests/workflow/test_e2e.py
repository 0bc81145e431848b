"""End to end: the ci config through real Snakemake (every stage, real models and trainers),
then the report, then a rerun that has nothing to do."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _snakemake(workdir: Path, data_root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [shutil.which("snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(REPO / "config" / "ci.yaml"), "--config", f"data_root={data_root}", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root):
    workdir = tmp_path_factory.mktemp("e2e")
    out = _snakemake(workdir, data_root, "--cores", "2")
    assert out.returncode == 0, out.stderr[-6000:]
    return workdir, out


def test_every_dataset_has_indicators_and_loss(run):
    from instructmining import plan
    from instructmining.config import check_config, load_config

    workdir, _ = run
    cfg = check_config(load_config(REPO / "config" / "ci.yaml"), base=REPO)
    datasets = plan.all_datasets(cfg)
    assert len(datasets) >= 10
    for name in datasets:
        row = pd.read_parquet(workdir / "results" / "indicators" / f"{name}.parquet")
        assert len(row) == 1 and row.notna().all().all()
        loss = json.loads((workdir / "results" / "loss" / f"{name}.json").read_text())
        assert loss["loss"] > 0 and loss["num_tokens"] > 0
    manifest = pd.read_csv(workdir / "results" / "datasets" / "manifest.tsv", sep="\t")
    assert sorted(manifest["dataset"]) == sorted(datasets)


def test_rule_and_plots_are_written(run):
    workdir, _ = run
    rule = json.loads((workdir / "results" / "analysis" / "rule.json").read_text())
    assert rule["n"] == 6
    for name in ("fit.png", "univariate.png", "selection.png", "univariate.tsv", "selection.tsv"):
        assert (workdir / "results" / "analysis" / name).stat().st_size > 0, name
    # held-out mixtures: their own table, never in the one the rule is fitted on
    heldout = pd.read_csv(workdir / "results" / "analysis" / "heldout.tsv", sep="\t")
    assert heldout["dataset"].tolist() == ["held-000", "held-001"] and not set(rule["datasets"]) & set(heldout["dataset"])
    validation = json.loads((workdir / "results" / "analysis" / "validation.json").read_text())
    assert validation["heldout"]["n"] == 2 and len(validation["heldout"]["predicted"]) == 2
    assert validation["verdict"] == "not established"  # 2 held-out mixtures are too few for a verdict
    assert set(validation["bootstrap_inclusion"]["frequency"]) == set(rule["stepwise"]["candidates"])
    study = json.loads((workdir / "results" / "analysis" / "selection_study.json").read_text())
    [row] = study["loss"]
    assert row["n"] == 20 and row["seeds"] == [1, 2] and None not in row["ci_95"]
    # The validity check ran on every configured indicator and fit_rule used it (issue #9).
    validity = pd.read_csv(workdir / "results" / "analysis" / "indicator_validity.tsv", sep="\t")
    cfg_names = ["input_length", "output_length", "mtld", "knn6", "perplexity"]
    assert list(validity["indicator"]) == cfg_names and (validity["n_prompts"] == 12).all()
    status = dict(zip(validity["indicator"], validity["status"], strict=True))
    kept, excluded = rule["validity"]["kept"], set(rule["validity"]["excluded"])
    assert sorted([*kept, *excluded]) == sorted(cfg_names) and not set(kept) & excluded
    assert {n for n, s in status.items() if s in ("chance", "inverted")} == set(rule["validity"]["excluded"])
    assert rule["stepwise"]["candidates"] == rule["validity"]["kept"]


def test_report_and_noop_rerun(run, data_root):
    workdir, _ = run
    report = workdir / "report.html"
    out = _snakemake(workdir, data_root, "--report", str(report))
    assert out.returncode == 0, out.stderr[-3000:]
    assert report.stat().st_size > 10_000
    again = _snakemake(workdir, data_root, "--cores", "2")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
