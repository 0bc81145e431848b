"""The SLURM profiles, checked without a cluster: the rules themselves declare their GPU (so a
workstation's `--resources gpu=N` works too) and slurm-cpu/ drops exactly those requests; the
profile keeps the plugin's status-check defaults, sets no global retries (they are per rule) and
groups dataset_indicators by the names the workflow gives (a typo in a profile is silently
ignored by Snakemake, so the job would run without its GPU or ungrouped)."""

import os
import re
import subprocess
import sys

import yaml

from instructmining.resources import INDICATOR_GROUPS

GPU_RULES = {"finetune", "score_pool_model", "embed_pool", "train_reward_model",
             "prepare_base_model", "search_size", "validate_indicators"}


def _profile(repo, name):
    return yaml.safe_load((repo / name / "config.yaml").read_text())


def test_gpu_profile_is_polite(repo):
    prof = _profile(repo, "slurm")
    assert prof["executor"] == "slurm"
    # Status checks: the plugin's defaults (40 s, reset to it whenever a job finishes). A lower
    # value is polled every few seconds for hours on a DAG of hundreds of jobs.
    assert prof.get("slurm-init-seconds-before-status-checks", 40) >= 40
    assert "slurm-status-command" not in prof
    # Retries are per rule (workflow/rules/*.smk): a global value would retry bookkeeping too.
    assert "retries" not in prof
    assert prof["rerun-incomplete"] is True and prof["keep-going"] is True
    assert prof["latency-wait"] >= 5
    assert "HF_HUB_OFFLINE=1" in prof["precommand"]
    # A job without mem_mb would get DefMemPerCPU or the whole node.
    assert {"mem_mb", "runtime"} <= set(prof["default-resources"])
    # Partition/account are site settings: never active in the shipped profile.
    assert not {"slurm_partition", "slurm_account"} & set(prof["default-resources"])
    # GPUs come from the rules, not from the profile.
    assert not any("gpu" in res for res in (prof.get("set-resources") or {}).values())
    assert 1 <= prof["local-cores"] <= 4
    # --cores caps every job's threads in cluster mode: never below what the paper asks per GPU.
    paper = yaml.safe_load((repo / "config" / "paper.yaml").read_text())
    assert prof["cores"] >= max(r.get("threads", 1) for r in paper["resources"]["rules"].values())
    groups = dict(item.split("=") for item in prof["group-components"])
    assert set(groups) == set(INDICATOR_GROUPS.values()) and all(int(n) > 1 for n in groups.values())


def test_cpu_profile_overrides_only_the_gpu_requests(repo):
    cpu = _profile(repo, "slurm-cpu")
    assert set(cpu) == {"set-resources"}
    assert cpu["set-resources"] == {rule: {"gpu": 0} for rule in GPU_RULES}


def test_rules_declare_their_gpus(repo):
    """gpu=1 in the dry run's resources of exactly the model rules (union over the configs:
    prepare_base_model and train_reward_model exist only when the workflow builds those models)."""
    gpu_of = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for cfg in ("config.yaml", "paper.yaml"):
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", f"config/{cfg}"],
                              cwd=repo, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        for m in re.finditer(r"^ *rule (\w+):\n(?: +.*\n)*? +resources: (.*)$", proc.stdout, flags=re.M):
            gpu = re.search(r"\bgpu=(\d+)", m.group(2))
            gpu_of.setdefault(m.group(1), set()).add(int(gpu.group(1)) if gpu else 0)
    assert {rule for rule, gpus in gpu_of.items() if gpus == {1}} == GPU_RULES
    assert all(gpus == {0} for rule, gpus in gpu_of.items() if rule not in GPU_RULES)
