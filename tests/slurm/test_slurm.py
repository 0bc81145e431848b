"""A real one-node SLURM cluster (Debian packages, scripts/slurm/cluster-up.sh) running the ci
config through `snakemake --profile slurm --profile slurm-cpu`, from the repository root:

1. a job that SLURM grants too little memory fails, and Snakemake resubmits it with the rules'
   attempt-scaled mem_mb (common.smk scaled_mem_mb): sacct shows 600M FAILED, 1200M COMPLETED;
2. the workflow is killed (SIGKILL) while a finetune is between checkpoints, its SLURM jobs are
   cancelled, the directory is locked until `--unlock`, and the rerun runs exactly the jobs that
   had not finished, the finetune resuming from its checkpoint.

Needs root and apt-get (it installs slurmctld, slurmd, slurm-client, munge, slurmdbd,
mariadb-server if missing); skipped otherwise. It stops only the daemons it started, by pid.
Run it last (tests/slurm/conftest.py orders it so): see docs/slurm.md on slurm-client.
Set IM_SLURM_TEST_SUMMARY=path.json to keep the timings and job counts."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "slurm"
# Longer finetunes than ci.yaml's 8 steps, so that the kill lands between two checkpoints.
SLOW_FINETUNE = Path(__file__).with_name("slow_finetune.yaml")

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: installs Debian SLURM packages and starts daemons"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian/Ubuntu) to install SLURM"),
]

SUMMARY: dict = {}


def _env() -> dict:
    # Jobs inherit this environment (sbatch --export=ALL): the venv's `instructmining` on PATH.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Bring the cluster up (idempotent); afterwards stop only the daemons this fixture started."""
    state = tmp_path_factory.mktemp("slurm-state")
    env = {**_env(), "IM_SLURM_STATE": str(state)}
    t0 = time.perf_counter()
    up = subprocess.run(["bash", str(SCRIPTS / "cluster-up.sh")], env=env, capture_output=True,
                        text=True, timeout=900)
    assert up.returncode == 0, f"cluster-up.sh failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
    SUMMARY["cluster_up_s"] = round(time.perf_counter() - t0, 1)
    started = (state / "started").read_text().split() if (state / "started").exists() else []
    SUMMARY["daemons_started_by_test"] = started[::2]
    yield
    down = subprocess.run(["bash", str(SCRIPTS / "cluster-down.sh")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    if os.environ.get("IM_SLURM_TEST_SUMMARY"):
        Path(os.environ["IM_SLURM_TEST_SUMMARY"]).write_text(json.dumps(SUMMARY, indent=2) + "\n")
    print("\nSLURM test summary:", json.dumps(SUMMARY, indent=2))


def _snakemake_cmd(workdir: Path, *args: str, snakefile: Path | None = None,
                   configfiles: tuple[Path, ...] = ()) -> list[str]:
    """`snakemake --profile slurm --profile slurm-cpu` from the repository root (./slurm/ is
    found there), outputs in `workdir`. `--config` takes everything after it: keep it last."""
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "--profile", "slurm-cpu",
           "-d", str(workdir)]
    if snakefile:
        cmd += ["-s", str(snakefile)]
    cmd += [*args, "--configfile", str(REPO / "config" / "ci.yaml"), *map(str, configfiles),
            "--config", f"data_root={REPO.parent / 'shared' / 'data'}"]
    return cmd


def _run(cmd: list[str], log: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=REPO, env=_env(), stdout=fh, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
    proc.stdout = log.read_text()
    return proc


def _sacct(job_ids: list[str]) -> list[dict]:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o",
                          "JobID,ReqMem,State,Comment"], capture_output=True, text=True, check=True).stdout
    return [dict(zip(["id", "reqmem", "state", "comment"], ln.split("|"), strict=True))
            for ln in out.splitlines() if ln]


def _slurm_ids(log_text: str) -> list[str]:
    return re.findall(r"submitted with SLURM jobid (\d+)", log_text)


def test_failed_job_is_retried_with_more_memory(cluster, tmp_path):
    workdir = tmp_path / "probe"
    workdir.mkdir()
    t0 = time.perf_counter()
    proc = _run(_snakemake_cmd(workdir, snakefile=Path(__file__).with_name("retry_probe.smk")),
                tmp_path / "probe.log", timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:]
    out = proc.stdout
    # Attempt 1 failed for lack of memory (show-failed-logs prints the rule's log), attempt 2 ran.
    assert "granted 600 MB < 1000 MB: failing this attempt" in out
    assert "Trying to restart job" in out
    assert (workdir / "results" / "memory_probe" / "granted.txt").read_text().strip() == "1200"
    log = (workdir / "logs" / "memory_probe" / "memory_probe.log").read_text()
    assert "mem_mb=1200 granted=1200MB" in log and "HF_HUB_OFFLINE=1" in log  # the profile's precommand
    # What SLURM itself recorded: two jobs of the rule, the second with twice the memory.
    jobs = _sacct(_slurm_ids(out))
    assert [(j["reqmem"], j["state"]) for j in jobs] == [("600M", "FAILED"), ("1200M", "COMPLETED")]
    assert all(j["comment"] == "rule_memory_probe" for j in jobs)
    SUMMARY["retry"] = {"sacct": jobs, "wall_s": round(time.perf_counter() - t0, 1)}


def test_fetch_runs_on_the_login_node(cluster, tmp_path):
    """Rule fetch is a localrule: under the SLURM profile it runs in the snakemake process (the
    login node, which has internet), never as a SLURM job on an offline compute node."""
    workdir = tmp_path / "fetch"
    workdir.mkdir()
    proc = _run(_snakemake_cmd(workdir, "fetch"), tmp_path / "fetch.log", timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "localrule fetch:" in proc.stdout
    assert not _slurm_ids(proc.stdout)
    manifest = json.loads((workdir / "results" / "fetch" / "manifest.json").read_text())
    assert manifest["items"] == []  # the ci config names no hub ids


def _finished_outputs(log_text: str) -> dict[str, list[str]]:
    """{jobid: outputs} of the jobs the log reports finished (blocks `rule X: ... output: ...
    jobid: N`, then `Finished jobid: N`)."""
    outputs = {}
    for m in re.finditer(r"^(?:local)?rule \w+:\n((?:    .*\n)+)", log_text, flags=re.M):
        block = m.group(1)
        jid = re.search(r"^    jobid: (\d+)", block, flags=re.M)
        out = re.search(r"^    output: (.*)$", block, flags=re.M)
        if jid:
            outputs[jid.group(1)] = out.group(1).split(", ") if out else []
    done = re.findall(r"Finished jobid: (\d+)", log_text)
    return {j: outputs.get(j, []) for j in done}


def _planned_jobs(workdir: Path, tmp_path: Path, name: str) -> int:
    proc = _run(_snakemake_cmd(workdir, "-n", "--quiet", "rules", configfiles=(SLOW_FINETUNE,)),
                tmp_path / f"{name}.log", timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    m = re.search(r"^total\s+(\d+)$", proc.stdout, flags=re.M)
    return int(m.group(1)) if m else 0  # "Nothing to be done" prints no table


def _wait_for_checkpointed_finetune(workdir: Path, proc: subprocess.Popen, timeout: float) -> str:
    """The first dataset whose finetune has written a checkpoint but not its adapter yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the workflow ended before any finetune could be interrupted"
        for log in sorted((workdir / "logs" / "finetune").glob("*.log")):
            dataset = log.stem
            adapter = workdir / "results" / "finetune" / dataset / "adapter"
            if "checkpoint step" in log.read_text(errors="replace") and not adapter.exists():
                return dataset
        time.sleep(0.1)
    raise AssertionError(f"no finetune reached a checkpoint within {timeout} s")


def test_interrupted_run_reruns_only_what_is_missing(cluster, tmp_path):
    workdir = tmp_path / "ci"
    workdir.mkdir()
    t0 = time.perf_counter()
    total = _planned_jobs(workdir, tmp_path, "plan-before")
    assert total > 40, total

    # 1. Start the workflow; SIGKILL it while a finetune is between checkpoints.
    log1 = tmp_path / "run1.log"
    with log1.open("w") as fh:
        proc = subprocess.Popen(_snakemake_cmd(workdir, configfiles=(SLOW_FINETUNE,)), cwd=REPO,
                                env=_env(), stdout=fh, stderr=subprocess.STDOUT, text=True)
        try:
            dataset = _wait_for_checkpointed_finetune(workdir, proc, timeout=900)
            proc.send_signal(signal.SIGKILL)  # no clean-up: jobs keep running, the lock stays
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    run1 = log1.read_text()
    kill_s = time.perf_counter() - t0
    # The SLURM jobs survive their snakemake; cancel them, as a lost allocation would end them.
    submitted = set(_slurm_ids(run1))
    alive = set(subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True,
                               check=True).stdout.split()) & submitted
    assert alive, "SIGKILL should leave the submitted jobs running"
    subprocess.run(["scancel", *sorted(alive)], check=True)
    for _ in range(300):
        if not set(subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True,
                                  check=True).stdout.split()) & submitted:
            break
        time.sleep(0.2)
    finished = _finished_outputs(run1)
    done_before = len(finished)
    ckpt_steps = sorted(int(d.name.split("-")[1]) for d in
                        (workdir / "results" / "finetune" / dataset / "checkpoints").glob("step-*"))
    assert ckpt_steps, f"{dataset}: no checkpoint left to resume from"
    mtimes = {p: (workdir / p).stat().st_mtime_ns for outs in finished.values() for p in outs}

    # 2. The killed run left its lock: a plain rerun refuses, --unlock releases it.
    locked = _run(_snakemake_cmd(workdir, configfiles=(SLOW_FINETUNE,)), tmp_path / "locked.log", timeout=300)
    assert locked.returncode != 0 and "cannot be locked" in locked.stdout, locked.stdout[-3000:]
    unlock = _run(_snakemake_cmd(workdir, "--unlock", configfiles=(SLOW_FINETUNE,)), tmp_path / "unlock.log")
    assert unlock.returncode == 0, unlock.stdout[-3000:]

    # 3. What is left is exactly what had not finished (in-flight jobs are incomplete: rerun).
    remaining = _planned_jobs(workdir, tmp_path, "plan-after")
    assert remaining == total - done_before, (total, done_before, remaining)
    log2 = tmp_path / "run2.log"
    rerun = _run(_snakemake_cmd(workdir, configfiles=(SLOW_FINETUNE,)), log2, timeout=1200)
    assert rerun.returncode == 0, rerun.stdout[-6000:]
    rerun_done = len(re.findall(r"Finished jobid: (\d+)", rerun.stdout))
    assert rerun_done == remaining
    assert re.search(rf"\b{rerun_done} of {rerun_done} steps \(100%\) done", rerun.stdout)
    changed = [p for p, t in mtimes.items() if (workdir / p).stat().st_mtime_ns != t]
    assert not changed, f"outputs of jobs finished before the kill were rebuilt: {changed}"

    # 4. The interrupted finetune resumed from its last checkpoint, and finished.
    ft_log = (workdir / "logs" / "finetune" / f"{dataset}.log").read_text()
    m = re.search(r"resumed from checkpoint \S+ at step (\d+)/(\d+)", ft_log)
    assert m, f"{dataset}: the rerun did not resume:\n{ft_log[-3000:]}"
    assert int(m.group(1)) == ckpt_steps[-1] and int(m.group(1)) < int(m.group(2))
    metrics = json.loads((workdir / "results" / "finetune" / dataset / "adapter" / "train_metrics.json").read_text())
    assert metrics["resumed_from_step"] == ckpt_steps[-1]
    assert len(metrics["loss_history"]) == metrics["steps"]  # the history spans both runs

    # 5. Nothing left to do.
    assert _planned_jobs(workdir, tmp_path, "plan-final") == 0
    SUMMARY["interruption"] = {
        "total_jobs": total, "finished_before_kill": done_before, "rerun_jobs": rerun_done,
        "killed_after_s": round(kill_s, 1), "interrupted_finetune": dataset,
        "resumed_at_step": int(m.group(1)), "finetune_steps": int(m.group(2)),
        "slurm_jobs_cancelled": len(alive), "wall_s": round(time.perf_counter() - t0, 1),
    }
