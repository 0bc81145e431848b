"""The SLURM profiles, checked without a cluster: slurm/ asks a GPU for exactly the model rules,
slurm-cpu/ drops every one of those requests, and every rule they name exists in the workflow
(a typo in a profile is silently ignored by Snakemake, so the job would run without its GPU)."""

import os
import re
import subprocess
import sys

import yaml

GPU_RULES = {"finetune", "score_pool_model", "embed_pool", "train_reward_model",
             "prepare_base_model", "search_size", "validate_indicators"}


def _profile(repo, name):
    return yaml.safe_load((repo / name / "config.yaml").read_text())


def test_gpu_profile_requests_a_gpu_for_model_rules_only(repo):
    prof = _profile(repo, "slurm")
    assert prof["executor"] == "slurm"
    assert {rule: res.get("gpu") for rule, res in prof["set-resources"].items()} == dict.fromkeys(GPU_RULES, 1)
    # Retries only help because the rules' memory/runtime grow with the attempt.
    assert prof["retries"] >= 1 and prof["rerun-incomplete"] is True and prof["keep-going"] is True
    assert prof["latency-wait"] >= 5
    assert "HF_HUB_OFFLINE=1" in prof["precommand"]
    # A job without mem_mb would get DefMemPerCPU or the whole node.
    assert {"mem_mb", "runtime"} <= set(prof["default-resources"])
    # Partition/account are site settings: never active in the shipped profile.
    assert not {"slurm_partition", "slurm_account"} & set(prof["default-resources"])


def test_cpu_profile_overrides_only_the_gpu_requests(repo):
    cpu = _profile(repo, "slurm-cpu")
    assert set(cpu) == {"set-resources"}
    assert cpu["set-resources"] == {rule: {"gpu": 0} for rule in GPU_RULES}


def test_profile_rules_exist_in_the_workflow(repo):
    """Union over the three configs (prepare_base_model exists only when the workflow builds the
    base model, train_reward_model only when it trains the reward model, ...)."""
    names = set()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for cfg in ("config.yaml", "paper.yaml", "ci.yaml"):
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules", "--configfile",
                               f"config/{cfg}"], cwd=repo, capture_output=True, text=True, env=env,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        names |= set(re.findall(r"^(\w+)$", proc.stdout, flags=re.M))
    missing = GPU_RULES - names
    assert not missing, f"profile names rules the workflow does not have: {sorted(missing)}"


def test_profile_merge_drops_gpu_requests(repo, tmp_path):
    """What Snakemake makes of `--profile slurm --profile slurm-cpu`: finetune jobs get gpu=0,
    with `--profile slurm` alone gpu=1 (dry run of the ci config, no cluster needed)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    data_root = repo.parent / "shared" / "data"

    def finetune_resources(*profiles):
        args = [a for p in profiles for a in ("--profile", p)]
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", *args, "-n", "-d", str(tmp_path), "--executor", "dryrun",
             "--configfile", str(repo / "config" / "ci.yaml"), "--config", f"data_root={data_root}"],
            cwd=repo, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        block = proc.stdout.split("rule finetune:", 1)[1].split("\n\n", 1)[0]
        return re.search(r"resources: (.*)", block).group(1)

    assert "gpu=1" in finetune_resources("slurm")
    assert "gpu=0" in finetune_resources("slurm", "slurm-cpu")
