"""`snakemake --directory elsewhere` with the ci config as shipped (data_root: ../shared/data,
relative): the config check and the jobs resolve data_root the same way (against the repository),
so the data stage plans and runs in the other directory."""

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]


def test_directory_run_of_the_ci_config_runs_its_data_stage(tmp_path):
    if not (REPO.parent / "shared" / "data").is_dir():
        import pytest

        pytest.skip("../shared/data is not beside the repository")
    workdir = tmp_path / "elsewhere"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # The target before --configfile (it takes several values); the config file's own path is
    # relative to the working directory in Snakemake, so it is given absolute.
    cmd = [shutil.which("snakemake"), "-c1", "--directory", str(workdir), "results/pool/pool.parquet",
           "--configfile", str(REPO / "config" / "ci.yaml")]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    pool = pd.read_parquet(workdir / "results" / "pool" / "pool.parquet")
    assert len(pool) > 0 and set(pool["source"]) >= {"alpaca", "wikihow", "t0", "dolly"}
    assert (workdir / "results" / "eval" / "eval.parquet").is_file()
    assert not (REPO / "results" / "pool" / "pool.parquet").exists() or \
        (REPO / "results" / "pool" / "pool.parquet").stat().st_mtime < (workdir / "results" / "pool" / "pool.parquet").stat().st_mtime
