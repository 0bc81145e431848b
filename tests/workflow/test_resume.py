"""README "When a run stops": after a SIGKILL (node failure) one command, `instructmining resume`,
finishes the run; while another run is active in the directory it refuses and names that run."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instructmining.resume import Proc, active_runs, workdir_of

REPO = Path(__file__).resolve().parents[2]
DATA = (REPO / ".." / "shared" / "data").resolve()
TARGET = "results/pool/pool.parquet"  # build_eval then build_pool: two jobs of a few seconds each


def _args(workdir: Path) -> list[str]:
    return [TARGET, "-c1", "--configfile", "config/ci.yaml", "--config", f"data_root={DATA}", "-d", str(workdir)]


def _resume(workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "instructmining.cli", "resume", "--", *_args(workdir)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def _locked(workdir: Path) -> bool:
    locks = workdir / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


def _wait_for_running_job(workdir: Path, run: subprocess.Popen) -> None:
    incomplete = workdir / ".snakemake" / "incomplete"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if incomplete.is_dir() and any(incomplete.iterdir()):
            return
        assert run.poll() is None, "the run ended before any job started"
        time.sleep(0.05)
    pytest.fail("no job started within 120 s")


def test_resume_after_sigkill_and_refusal_while_active(tmp_path):
    workdir = tmp_path / "run"
    snakemake = shutil.which("snakemake")
    assert snakemake
    run = subprocess.Popen([snakemake, *_args(workdir)], cwd=REPO, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_running_job(workdir, run)
        refused = _resume(workdir)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "another Snakemake run is active" in refused.stderr and f"pid {run.pid}" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # a node failure: snakemake and its job die at once
        run.wait()
    assert not (workdir / TARGET).exists()
    assert _locked(workdir), "the killed run leaves its lock"
    assert any((workdir / ".snakemake" / "incomplete").iterdir()), "and its job marked incomplete"
    plain = subprocess.run([snakemake, *_args(workdir)], capture_output=True, text=True, cwd=REPO)
    assert plain.returncode != 0 and "lock" in (plain.stdout + plain.stderr).lower()  # what users hit

    done = _resume(workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (workdir / TARGET).is_file()
    assert not _locked(workdir)


def test_active_runs_match_only_this_directory(tmp_path):
    """A run elsewhere, a dry run and jobs of other directories do not block; this directory's
    snakemake (by cwd or -d) and its jobs do."""
    here, other = tmp_path / "here", tmp_path / "other"
    here.mkdir(), other.mkdir()
    procs = [
        Proc(101, REPO, ["python", "/venv/bin/snakemake", "-c2", "-d", str(here)]),
        Proc(102, here, ["/venv/bin/snakemake", "-c2"]),
        Proc(103, here, ["/bin/bash", "-c", "instructmining build-pool --out x"]),
        Proc(201, REPO, ["python", "/venv/bin/snakemake", "-c2", "-d", str(other)]),
        Proc(202, here, ["python", "/venv/bin/snakemake", "-n"]),
        Proc(203, other, ["python", "/venv/bin/instructmining", "finetune"]),
        Proc(204, here, ["vim", "notes.txt"]),
    ]
    assert [p.pid for p in active_runs(here, procs)] == [101, 102, 103]
    assert workdir_of(["--directory=sub"], tmp_path) == tmp_path / "sub"
