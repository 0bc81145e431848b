"""The DAG as Snakemake plans it: the paper config (78 mixtures, K = 8 bins per indicator, one
finetune + eval per dataset), the demo and ci configs, and `snakemake --lint`."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from instructmining import plan
from instructmining.config import check_config, load_config

REPO = Path(__file__).resolve().parents[2]


def _snakemake(*args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([shutil.which("snakemake"), *args], cwd=REPO, capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def _counts(text: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", text, re.M)}


@pytest.mark.parametrize("name", ["paper", "config", "ci"])
def test_dry_run_plans_every_dataset(name):
    cfg = check_config(load_config(REPO / "config" / f"{name}.yaml"), base=REPO)
    # --forceall: plan every job even where a local run already made the outputs
    counts = _counts(_snakemake("-n", "--forceall", "--configfile", f"config/{name}.yaml", "--quiet", "rules"))
    datasets = plan.all_datasets(cfg)
    # One finetune job per dataset, which also writes its eval loss: no eval_loss jobs (issue #15).
    assert counts["finetune"] == counts["dataset_indicators"] == len(datasets) and "eval_loss" not in counts
    assert counts["make_bins"] == len(cfg["bins"]["indicators"])
    assert counts["select_dataset"] == len(plan.selection_names(cfg))
    # Every config validates its scorers (the paper's hub ones too) before the rule uses them.
    assert counts["validate_indicators"] == 1
    if name == "paper":
        assert len(plan.mixture_names(cfg)) == 78
        assert len(plan.bin_names(cfg)) == 8 * 9
        assert len(datasets) == 78 + 1 + 20 + 72 + 18  # mixtures, rep, held-out, bins, selections


def test_paper_dry_run_lists_the_mixture_files():
    # the target goes before --configfile, which takes several values
    text = _snakemake("-n", "results/datasets/mixtures.tsv", "--configfile", "config/paper.yaml")
    assert "results/datasets/mix-077.parquet" in text and "results/datasets/mix-078.parquet" not in text


def test_lint_is_clean():
    text = _snakemake("--lint")
    assert "Lints for" not in text, text


def test_spanning_design_plans_make_mixtures_after_the_score_merge(tmp_path, data_root):
    """mixtures.design: spanning (the ci config): make_mixtures reads the merged per-sample score file of every
    sample-level candidate indicator (so it runs after merge_scores) and writes design.json; the
    mixture names, and so everything downstream, are those of the random design."""
    assert load_config(REPO / "config" / "ci.yaml")["mixtures"]["design"] == "spanning"
    text = _snakemake("-n", "-p", "-d", str(tmp_path / "run"), "results/datasets/mixtures.tsv", "--configfile",
                      "config/ci.yaml", "--config", f"data_root={data_root}")
    jobs = {m.group(1): m.group(2) for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", text, re.M | re.S)}
    block = jobs["make_mixtures"]
    names = load_config(REPO / "config" / "ci.yaml")["indicators"]["names"]
    scored = [n for n in names if n != "knn6"]  # knn6 is set-level: no per-sample score to design with
    inputs = re.search(r"input: (.*)", block).group(1).split(", ")
    assert sorted(inputs) == sorted(["results/pool/pool.parquet"] + [f"results/scores/{n}.parquet" for n in scored])
    assert "results/datasets/design.json" in re.search(r"output: (.*)", block).group(1)
    assert "results/datasets/mix-005.parquet" in block and "make-mixtures" in text and "--design spanning" in text
    assert "merge_scores" in jobs  # the score files it reads are planned, so it runs after them
    overlay = tmp_path / "random.yaml"
    overlay.write_text("mixtures: {n: 6, size: 30, repeats: [1], design: random}\n")
    plain = _snakemake("-n", "-p", "-d", str(tmp_path / "plain"), "results/datasets/mixtures.tsv", "--configfile",
                       "config/ci.yaml", str(overlay), "--config", f"data_root={data_root}")
    assert "merge_scores" not in plain and "design.json" not in plain  # random: the pool only
