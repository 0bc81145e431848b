"""Dry-run inspection works offline for the paper and CI configs: `--dag`, `--rulegraph` and
`--summary` (what a user runs before submitting ~1,000 jobs to a cluster; `snakemake -n` is
tests/workflow/test_dag.py), and the README's rule graph image exists."""

import os
import re
import subprocess
import sys

import pytest

CONFIGS = ["paper.yaml", "ci.yaml"]
# Rules every config's DAG must contain (the paper's pipeline end to end).
# finetune also writes each dataset's eval loss (issue #15: no separate eval_loss rule).
CORE_RULES = {"build_eval", "build_pool", "make_mixtures", "score_pool", "finetune",
              "dataset_indicators", "fit_rule", "all"}


def _snakemake(repo, configfile: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--configfile", f"config/{configfile}", *args],
        cwd=repo, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _dot_nodes(dot: str) -> set[str]:
    """Rule names in a --dag/--rulegraph dot text (labels like `label = "finetune\\ndataset: x"`)."""
    return set(re.findall(r'label = "([A-Za-z_][A-Za-z0-9_]*)', dot))


@pytest.mark.parametrize("configfile", CONFIGS)
def test_rulegraph_and_dag_are_dot(repo, configfile):
    rulegraph = _snakemake(repo, configfile, "--rulegraph").stdout
    assert rulegraph.lstrip().startswith("digraph snakemake_dag")
    assert CORE_RULES <= _dot_nodes(rulegraph)
    dag = _snakemake(repo, configfile, "--dag").stdout
    assert dag.lstrip().startswith("digraph snakemake_dag")
    # The job DAG has one node per job: many finetune nodes, one build_pool.
    labels = re.findall(r'label = "([A-Za-z_][A-Za-z0-9_]*)', dag)
    assert labels.count("build_pool") == 1
    assert labels.count("finetune") == labels.count("dataset_indicators") >= 10
    assert "eval_loss" not in labels  # the finetune job scores D_eval with its model in memory


@pytest.mark.parametrize("configfile", CONFIGS)
def test_summary_lists_every_output(repo, tmp_path, configfile):
    # A fresh working directory: the summary of a clean checkout (every file missing).
    # (The paper config reads only its indicator-validity ladder locally; every dataset is hub.)
    out = _snakemake(repo, configfile, "--summary", "-d", str(tmp_path), "--config",
                     f"data_root={repo.parent / 'shared' / 'data'}").stdout
    lines = [ln for ln in out.splitlines() if ln.strip()]
    header = lines[0].split("\t")
    assert header[:3] == ["output_file", "date", "rule"]
    rows = [ln.split("\t") for ln in lines[1:]]
    assert {r[2] for r in rows} >= CORE_RULES - {"all"}
    assert any(r[0] == "results/pool/pool.parquet" for r in rows)
    assert all(r[1] == "-" for r in rows)  # nothing built yet in a fresh directory


def _graph(dot: str) -> set[tuple[str, str]]:
    """The rule graph as (upstream rule, downstream rule) pairs, independent of node numbering."""
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, flags=re.M))
    return {(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M)}


def test_readme_rulegraph_image_is_current(repo):
    """docs/rulegraph.png (shown in the README) is rendered from docs/rulegraph.dot, which must
    still be the paper config's rule graph: a rule added, removed or rewired makes it stale."""
    regenerate = ("snakemake --configfile config/paper.yaml --rulegraph > docs/rulegraph.dot && "
                  "dot -Tpng docs/rulegraph.dot > docs/rulegraph.png")
    png, dot = repo / "docs" / "rulegraph.png", repo / "docs" / "rulegraph.dot"
    assert png.is_file() and dot.is_file(), f"generate them: {regenerate}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    current = _graph(_snakemake(repo, "paper.yaml", "--rulegraph").stdout)
    assert _graph(dot.read_text()) == current, f"docs/rulegraph.dot is stale: {regenerate}"
