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
