"""Config validation stops the run before any job, naming the key."""

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from instructmining.config import check_config, load_config
from instructmining.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def demo():
    return load_config(REPO / "config" / "config.yaml")


@pytest.mark.parametrize("name", ["config.yaml", "ci.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    check_config(load_config(REPO / "config" / name), base=REPO)


def _overlay(base: dict, extra: dict) -> dict:
    """Snakemake's merge of several --configfile values: nested dicts merge, other values replace."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _overlay(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_study_overlay_is_valid():
    # scripts/study.sh: --configfile config/config.yaml config/study.yaml
    study = yaml.safe_load((REPO / "config" / "study.yaml").read_text())
    cfg = check_config(_overlay(load_config(REPO / "config" / "config.yaml"), study), base=REPO)
    assert cfg["mixtures"]["n"] == 14 and cfg["mixtures"]["heldout"] == 12 and cfg["selection"]["n"] == []


def _err(cfg) -> str:
    with pytest.raises(ConfigError) as info:
        check_config(cfg, base=REPO)
    return str(info.value)


def test_unknown_key_is_named(demo):
    demo["mixtures"]["szie"] = 10
    assert "'mixtures.szie'" in _err(demo) and "unknown key" in _err(copy.deepcopy(demo))
    top = load_config(REPO / "config" / "config.yaml")
    top["mixturess"] = {}
    assert "'mixturess'" in _err(top)


def test_wrong_type_is_named(demo):
    demo["mixtures"]["size"] = "many"
    assert "'mixtures.size'" in _err(demo)
    other = load_config(REPO / "config" / "config.yaml")
    other["pool"]["sources"][0]["max_samples"] = "x"
    assert "'pool.sources[0].max_samples'" in _err(other)


def test_k_below_two(demo):
    demo["bins"]["k"] = 1
    assert "'bins.k'" in _err(demo)


def test_unknown_indicator_gets_did_you_mean(demo):
    demo["indicators"]["names"][2] = "rewrd"
    msg = _err(demo)
    assert "'indicators.names[2]'" in msg and "reward" in msg
    other = load_config(REPO / "config" / "config.yaml")
    other["bins"]["indicators"] = ["mtld_x"]
    assert "'bins.indicators[0]'" in _err(other)


def test_mixture_larger_than_sources(demo):
    demo["mixtures"]["size"] = 5000  # six sources capped at 150 each
    msg = _err(demo)
    assert "'mixtures.size'" in msg and "900 samples" in msg


def test_spanning_design_checks(demo):
    demo["mixtures"].update(design="spanning", candidates=10)  # n = 14
    assert "'mixtures.candidates'" in _err(demo)
    other = load_config(REPO / "config" / "config.yaml")
    other["mixtures"]["design"] = "spanning"
    other["analysis"]["candidates"] = ["knn6"]  # set-level only: nothing per-sample to design with
    assert "'mixtures.design'" in _err(other)


def test_missing_data_root_says_how_to_fix(demo, tmp_path):
    demo["data_root"] = None
    msg = _err(demo)
    assert "'data_root'" in msg and "config/paper.yaml" in msg and "data_root" in msg
    other = load_config(REPO / "config" / "config.yaml")
    other["data_root"] = str(tmp_path / "nowhere")
    assert "does not exist" in _err(other)


def test_cross_references(demo):
    demo["mixtures"]["sources"] = ["alpaca", "dolly"]
    assert "'mixtures.sources[1]'" in _err(demo)
    other = load_config(REPO / "config" / "config.yaml")
    other["selection"]["rule"] = "paper-v9"
    assert "'selection.rule'" in _err(other)


def test_cli_and_snakemake_stop_before_any_job(tmp_path):
    cfg = load_config(REPO / "config" / "ci.yaml")
    cfg["bins"]["kk"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "instructmining.cli", "validate-config", str(bad)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and "'bins.kk'" in out.stderr
    snakemake = shutil.which("snakemake")
    assert snakemake, "snakemake is part of the test environment"
    out = subprocess.run([snakemake, "-n", "--configfile", str(bad)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode != 0 and "bins.kk" in (out.stdout + out.stderr)


def test_config_readme_documents_every_schema_key():
    from instructmining.config import config_docs, schema_rows

    text = (REPO / "config" / "README.md").read_text()
    assert text == config_docs(), "regenerate: instructmining config-docs > config/README.md"
    keys = [row[0] for row in schema_rows()]
    assert "mixtures.size" in keys and "pool.sources[].fields.output" in keys
    assert all(row[3] for row in schema_rows()), "every schema key needs a description"
