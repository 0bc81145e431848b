"""Issue #10 through real Snakemake: retraining the base model (ci config, pretrain.steps 20 -> 30)
reruns every finetune from step 0 (never resuming the old base's checkpoints) and changes the eval
losses. Two datasets keep it to a few minutes; the finetune/eval jobs are start-up bound."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATASETS = ["mix-000", "mix-001"]
TARGETS = [f"results/loss/{d}.json" for d in DATASETS]

pytestmark = pytest.mark.slow


def _snakemake(workdir: Path, data_root: Path, *configfiles: Path) -> subprocess.CompletedProcess:
    # An override file, not `--config base_model=...`: snakemake's --config passes nested values
    # as strings ('30'), which the schema rejects.
    cmd = [shutil.which("snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2",
           "--configfile", str(REPO / "config" / "ci.yaml"), *map(str, configfiles),
           "--config", f"data_root={data_root}", "--", *TARGETS]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INSTRUCTMINING_FINGERPRINT_CACHE": str(workdir / "fp-memo")}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)


def _losses(workdir: Path) -> dict[str, dict]:
    return {d: json.loads((workdir / "results" / "loss" / f"{d}.json").read_text()) for d in DATASETS}


def test_retrained_base_retrains_every_finetune_and_changes_losses(tmp_path, data_root):
    workdir = tmp_path / "wd"
    first = _snakemake(workdir, data_root)
    assert first.returncode == 0, first.stderr[-6000:]
    before = _losses(workdir)

    override = tmp_path / "steps30.yaml"
    override.write_text("base_model:\n  pretrain: {steps: 30}\n")
    second = _snakemake(workdir, data_root, override)
    assert second.returncode == 0, second.stderr[-6000:]
    assert "rule prepare_base_model" in second.stdout + second.stderr  # the base really was retrained
    after = _losses(workdir)
    old_fp = before[DATASETS[0]]["base_model_fingerprint"]
    for d in DATASETS:
        log = (workdir / "logs" / "finetune" / f"{d}.log").read_text()
        assert re.search(rf"base model changed: fingerprint {old_fp[:12]} != \w{{12}}", log), log[-3000:]
        assert "training from step 0/" in log and "resumed from checkpoint" not in log
        metrics = json.loads((workdir / "results" / "finetune" / d / "adapter" / "train_metrics.json").read_text())
        assert metrics["resumed_from_step"] == 0
        assert after[d]["base_model_fingerprint"] == metrics["base_model_fingerprint"] != old_fp
        assert after[d]["loss"] != before[d]["loss"], d
