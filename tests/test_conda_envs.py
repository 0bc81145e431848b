"""The conda deployment (`snakemake --sdm conda`), tested as far as a machine without conda allows.

No conda/mamba/micromamba installs from the registries CI reaches (PyPI, Debian; see
docs/deployment.md), so the env files are checked without conda: their pins resolve from PyPI to
exactly themselves (a complete, consistent lock; CUDA torch for the GPU envs), they are what
`python -m instructmining.envlock` writes, their post-deploy script installs the package from
another working directory, and the data-stage rules run with nothing importable beyond data.yaml.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from packaging.utils import canonicalize_name

from instructmining import envlock

REPO = Path(__file__).resolve().parents[1]
PROJECT = envlock.load_project(REPO)
SPECS = envlock.env_specs(PROJECT)
# What only the GPU envs may carry: the torch stack and its CUDA wheels.
TORCH_STACK = re.compile(r"^(torch|transformers|sentence-transformers|peft|bitsandbytes|accelerate|triton|nvidia-.*|cuda-.*)$")


def pins(name: str) -> dict[str, str]:
    return envlock.read_env_pins(REPO / "envs" / f"{name}.yaml")


def test_every_conda_directive_names_an_env_of_the_table():
    used = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        used |= set(re.findall(r'conda:\s*\n\s*"\.\./\.\./envs/(\w+)\.yaml"', smk.read_text()))
    assert used == set(SPECS), f"conda: directives use {sorted(used)}, the table has {sorted(SPECS)}"
    for name in SPECS:
        assert (REPO / "envs" / f"{name}.yaml").is_file() and (REPO / "envs" / f"{name}.post-deploy.sh").is_file()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_env_files_are_the_generated_ones_and_pin_what_their_extras_need(name):
    spec, pinned = SPECS[name], pins(name)
    # The file is envlock's rendering of its own pins: header, channels and the table are in sync.
    assert (REPO / "envs" / f"{name}.yaml").read_text() == envlock.render_env(spec, pinned)
    assert (REPO / "envs" / f"{name}.post-deploy.sh").read_text() == envlock.render_post_deploy(spec)
    for req in envlock.requirements_for(PROJECT, spec):
        key = canonicalize_name(req.name)
        assert key in pinned, f"envs/{name}.yaml lacks {req} (needed by its extras)"
        assert req.specifier.contains(pinned[key], prereleases=True), f"{key}=={pinned[key]} breaks {req}"
    # Same releases as the tested CPU dev stack (requirements.txt), torch without its +cpu label.
    dev = envlock.dev_pins(REPO / "requirements.txt")
    clash = {k: (v, dev[k]) for k, v in pinned.items() if k in dev and dev[k] != v}
    assert not clash, f"envs/{name}.yaml differs from requirements.txt: {clash}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_cpu_envs_carry_no_torch_and_gpu_envs_the_cuda_build(name):
    pinned = pins(name)
    stack = sorted(k for k in pinned if TORCH_STACK.match(k))
    text = (REPO / "envs" / f"{name}.yaml").read_text()
    assert "index-url" not in text and "../" not in text
    if not SPECS[name].gpu:
        assert stack == [], f"envs/{name}.yaml pulls {stack}"
        return
    assert "+" not in pinned["torch"], "a local label (+cpu) needs the PyTorch CPU index: a CPU build"
    cuda = [k for k in pinned if k.startswith(("nvidia-", "cuda-"))]
    assert "nvidia-cublas" in cuda or any(k.startswith("nvidia-cublas") for k in cuda), cuda


def test_post_deploy_installs_the_package_from_the_workflow_dir_not_the_working_dir(tmp_path, capsys):
    venv = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    script = REPO / "envs" / "data.post-deploy.sh"
    # Without the variable the Snakefile sets, the script says so instead of installing something else.
    out = subprocess.run(["bash", str(script)], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode != 0 and "Snakefile" in out.stderr
    env[envlock.WORKFLOW_DIR_VAR] = str(REPO)
    out = subprocess.run(["bash", str(script)], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stdout.strip().endswith("instructmining 0.1.0")
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import instructmining; print(instructmining.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True, timeout=60)
    assert Path(where.stdout.strip()) == REPO / "src" / "instructmining" / "__init__.py"
    with capsys.disabled():
        print(f"\npost-deploy run from {elsewhere}: {out.stdout.strip().splitlines()[-1]}, code at {where.stdout.strip()}")


GUARD = """
import importlib, importlib.metadata as md, json, os, sys
# The code of the workflow the Snakefile names, as the post-deploy's editable install gives it.
sys.path.insert(0, os.path.join(os.environ["INSTRUCTMINING_WORKFLOW_DIR"], "src"))
allowed = set(json.loads(os.environ["ENV_ALLOWED"]))
owners = md.packages_distributions()
def canon(n):
    return n.lower().replace("_", "-").replace(".", "-")
class EnvOnly:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in owners and not {canon(d) for d in owners[top]} & allowed:
            env = os.environ["ENV_NAME"]
            raise ModuleNotFoundError(f"No module named {name!r} in envs/{env}.yaml", name=name)
        return None
sys.meta_path.insert(0, EnvOnly())
if sys.argv[1] == "--import":
    importlib.import_module(sys.argv[2])
else:
    from instructmining.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def env_only_cli(tmp_path: Path, name: str) -> tuple[Path, dict[str, str]]:
    """An `instructmining` on PATH that can import only the packages envs/<name>.yaml pins (and
    the standard library): what a rule gets under --sdm conda. Returns it and its environment."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    guard = bindir / "envguard.py"
    guard.write_text(GUARD)
    wrapper = bindir / "instructmining"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{guard}" "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "ENV_NAME": name,
           "ENV_ALLOWED": json.dumps(sorted(set(pins(name)) | {"instructmining"}))}
    return wrapper, env


def test_data_stage_rules_run_with_only_what_the_data_env_installs(tmp_path, data_root, capsys):
    """The data-stage rules of the ci config through Snakemake, each `instructmining` call limited
    to envs/data.yaml, with the code of the folder the Snakefile names (the post-deploy's install)."""
    wrapper, env = env_only_cli(tmp_path, "data")
    guard = wrapper.parent / "envguard.py"
    workdir = tmp_path / "run"
    # design random: ci's spanning make_mixtures waits for the pool's scores, which are model jobs
    # (envs/indicators.yaml); with random ratios it is the data stage alone.
    cmd = [shutil.which("snakemake"), "-c1", "--directory", str(workdir), "build_pool", "make_mixtures",
           "--configfile", str(REPO / "config" / "ci.yaml"), "--config", "mixtures={design: random}"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    done = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", out.stderr)
    assert {"build_eval", "build_pool", "make_mixtures"} <= set(done), done
    assert len(pd.read_parquet(workdir / "results" / "pool" / "pool.parquet")) > 0
    # The guard is real: under it pandas imports and torch does not.
    probe_env = {**env, envlock.WORKFLOW_DIR_VAR: str(REPO)}
    allowed = subprocess.run([sys.executable, str(guard), "--import", "pandas"], env=probe_env,
                             capture_output=True, text=True, timeout=120)
    blocked = subprocess.run([sys.executable, str(guard), "--import", "torch"], env=probe_env,
                             capture_output=True, text=True, timeout=120)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert blocked.returncode != 0 and "No module named 'torch' in envs/data.yaml" in blocked.stderr
    with capsys.disabled():
        for line in out.stderr.splitlines():
            if "Finished jobid" in line or "steps (100%) done" in line:
                print("\ndata env run:", line.strip(), end="")


@pytest.fixture(scope="module")
def resolved_from_pypi() -> dict[str, dict[str, str]]:
    """Every env's pin list resolved from PyPI with dependencies (concurrently: network-bound)."""
    with ThreadPoolExecutor(max_workers=len(SPECS)) as pool:
        jobs = {name: pool.submit(envlock.resolve, [f"{k}=={v}" for k, v in sorted(pins(name).items())])
                for name in SPECS}
        return {name: job.result() for name, job in jobs.items()}


@pytest.mark.pypi
@pytest.mark.parametrize("name", sorted(SPECS))
def test_env_pins_resolve_from_pypi_to_exactly_themselves(name, resolved_from_pypi, capsys):
    """The lock is complete and consistent: pip, given the pinned list with dependencies, installs
    exactly that list from PyPI (isolated from this machine's local wheels), CUDA torch included."""
    pinned, resolved = pins(name), resolved_from_pypi[name]
    assert resolved == pinned, {
        "missing from the lock": sorted(set(resolved) - set(pinned)),
        "not needed": sorted(set(pinned) - set(resolved)),
        "other version": {k: (pinned[k], v) for k, v in resolved.items() if k in pinned and pinned[k] != v},
    }
    stack = [k for k in resolved if TORCH_STACK.match(k)]
    if SPECS[name].gpu:
        cuda = sum(k.startswith(("nvidia-", "cuda-")) for k in resolved)
        assert "+" not in resolved["torch"] and cuda > 0
        what = f"torch {resolved['torch']} with {cuda} nvidia/cuda wheels"
    else:
        assert stack == []
        what = "no torch stack"
    with capsys.disabled():  # the CI log shows what the conda envs would install
        print(f"\nconda env {name}: {len(pinned)} pins resolve from PyPI (linux x86_64, cp311) to themselves; {what}")


def test_analysis_commands_run_with_only_what_the_analysis_env_installs(tmp_path, capsys):
    """collect-table, fit-rule (statsmodels) and plot-fit (matplotlib) on a synthetic mixture table,
    limited to envs/analysis.yaml. (The analysis rules need finetune outputs; their commands do not.)"""
    wrapper, env = env_only_cli(tmp_path, "analysis")
    env[envlock.WORKFLOW_DIR_VAR] = str(REPO)
    rng = np.random.default_rng(0)
    names = [f"mix-{i:03d}" for i in range(12)]
    losses, inds = [], []
    for name in names:
        reward, length = rng.normal(1.5, 1.0), rng.uniform(50, 1500)
        (tmp_path / f"{name}.json").write_text(json.dumps({"loss": float(np.exp(1 - 0.1 * reward + rng.normal(0, 0.01)))}))
        pd.DataFrame({"dataset": [name], "reward": [reward], "output_length": [length]}).to_parquet(tmp_path / f"{name}.parquet")
        losses.append(str(tmp_path / f"{name}.json"))
        inds.append(str(tmp_path / f"{name}.parquet"))
    steps = [
        ["collect-table", "--losses", *losses, "--indicators", *inds, "--out", "table.tsv"],
        ["fit-rule", "--table", "table.tsv", "--out", "rule.json", "--coefficients", "c.tsv", "--steps", "s.tsv"],
        ["plot-fit", "--rule", "rule.json", "--table", "table.tsv", "--out", "fit.png"],
    ]
    for args in steps:
        out = subprocess.run([str(wrapper), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{args[0]}: {out.stderr[-3000:]}"
    rule = json.loads((tmp_path / "rule.json").read_text())
    assert "reward" in rule["indicators"] and (tmp_path / "fit.png").read_bytes()[:4] == b"\x89PNG"
    with capsys.disabled():
        print(f"\nanalysis env run: collect-table, fit-rule, plot-fit ok; rule indicators {rule['indicators']}", end="")


@pytest.mark.skipif(shutil.which("conda") is None, reason="no conda on PATH (none installs from PyPI or Debian)")
def test_sdm_conda_run_of_the_ci_data_stage(tmp_path, data_root, capsys):
    """Where a conda (>= 24.7.1) and conda-forge are reachable: the real thing, data stage only."""
    workdir = tmp_path / "run"
    cmd = [shutil.which("snakemake"), "-c1", "--sdm", "conda", "--conda-prefix", str(tmp_path / "conda"),
           "--directory", str(workdir), "build_pool", "--configfile", str(REPO / "config" / "ci.yaml")]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Running post-deploy script" in out.stderr and "Finished jobid" in out.stderr
    assert len(pd.read_parquet(workdir / "results" / "pool" / "pool.parquet")) > 0
    with capsys.disabled():
        for line in out.stderr.splitlines():
            if re.search(r"conda|post-deploy|Finished jobid|steps \(100%\)", line):
                print("\nsdm conda run:", line.strip(), end="")
