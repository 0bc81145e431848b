"""A real one-node SLURM cluster (Debian packages, scripts/slurm/cluster-up.sh) running the ci
config through `snakemake --profile slurm --profile slurm-cpu`, from the repository root:

1. a job that SLURM grants too little memory fails, and Snakemake resubmits it with the rules'
   attempt-scaled mem_mb (common.smk scaled_mem_mb): sacct shows 600M FAILED, 1200M COMPLETED;
2. the workflow is killed (SIGKILL) while a finetune is between checkpoints, its SLURM jobs are
   cancelled, the directory is locked until `--unlock`, and the rerun plans and runs exactly the
   jobs whose outputs are missing or incomplete on disk (read from the working directory after
   the cancel, not from the killed run's log: SLURM jobs still running at the kill may finish
   before the cancel reaches them, and their outputs rightly count as done); every interrupted
   finetune resumes from its last checkpoint.

Needs root and apt-get (it installs slurmctld, slurmd, slurm-client, munge, slurmdbd,
mariadb-server if missing); skipped otherwise. It stops only the daemons it started, by pid.
Run it last (tests/slurm/conftest.py orders it so): see docs/slurm.md on slurm-client.
Set IM_SLURM_TEST_SUMMARY=path.json to keep the timings and job counts."""

import base64
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
# Every sacct call of the test's snakemake runs (and their jobs), through a PATH shim that logs it:
# how hard the profile polls the accounting database is what a cluster admin watches (issue #12).
SACCT_SHIM: dict = {}

SHIM = """#!/bin/sh
echo "$(date +%s) ${SLURM_JOB_ID:-login} $*" >> "{log}"
exec "{real}" "$@"
"""


def _env() -> dict:
    # Jobs inherit this environment (sbatch --export=ALL): the venv's `instructmining` on PATH.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    if SACCT_SHIM:
        env["PATH"] = f"{SACCT_SHIM['dir']}:{env['PATH']}"
    return env


def _sacct_calls() -> dict:
    """sacct calls so far: status queries of the login node's snakemake, all login-node calls
    (also account guessing and failure reasons), calls from inside jobs."""
    log = SACCT_SHIM.get("log")
    lines = log.read_text().splitlines() if log and log.exists() else []
    login = [ln for ln in lines if ln.split()[1] == "login"]
    return {"status_queries": sum("JobIdRaw,State" in ln for ln in login), "login_total": len(login),
            "from_jobs": len(lines) - len(login)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, pytestconfig):
    """Bring the cluster up (idempotent); afterwards stop only the daemons this fixture started."""
    pytestconfig.im_slurm_summary = SUMMARY  # printed at the end of the session (conftest.py)
    state = tmp_path_factory.mktemp("slurm-state")
    env = {**_env(), "IM_SLURM_STATE": str(state)}
    t0 = time.perf_counter()
    up = subprocess.run(["bash", str(SCRIPTS / "cluster-up.sh")], env=env, capture_output=True,
                        text=True, timeout=900)
    assert up.returncode == 0, f"cluster-up.sh failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
    shim = state / "shim"
    shim.mkdir()
    (shim / "sacct").write_text(SHIM.replace("{log}", str(state / "sacct.log"))
                                .replace("{real}", shutil.which("sacct", path=env["PATH"])))
    (shim / "sacct").chmod(0o755)
    SACCT_SHIM.update(dir=shim, log=state / "sacct.log")
    SUMMARY["cluster_up_s"] = round(time.perf_counter() - t0, 1)
    started = (state / "started").read_text().split() if (state / "started").exists() else []
    SUMMARY["daemons_started_by_test"] = started[::2]
    yield
    SUMMARY["sacct_calls"] = _sacct_calls()
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
    # --cores: the profile's `cores: 8` caps a group job's width for real nodes; the test cluster's
    # one node has nproc CPUs (slurm-up.sh), and a group job asking more would pend forever
    # (Reason=PartitionConfig).
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm", "--profile", "slurm-cpu",
           "--cores", str(os.cpu_count()), "-d", str(workdir)]
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
    SUMMARY["retry"] = {"sacct": jobs, "wall_s": round(time.perf_counter() - t0, 1),
                        "sacct_calls_so_far": _sacct_calls()}


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


Job = tuple[str, tuple[str, ...]]  # (rule, outputs): a job's identity across runs


def _plan(workdir: Path, tmp_path: Path, name: str) -> set[Job]:
    """The jobs a dry run plans now, as (rule, outputs), parsed from its job blocks."""
    proc = _run(_snakemake_cmd(workdir, "-n", configfiles=(SLOW_FINETUNE,)), tmp_path / f"{name}.log",
                timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    jobs = set()
    # Members of a group job (dataset_indicators) are indented by 4 more spaces.
    for m in re.finditer(r"^( *)(?:local)?rule (\w+):\n((?:\1    .*\n)+)", proc.stdout, flags=re.M):
        out = re.search(r"^ *output: (.*)$", m.group(3), flags=re.M)
        jobs.add((m.group(2), tuple(out.group(1).split(", ")) if out else ()))
    if "Nothing to be done" not in proc.stdout:
        m = re.search(r"^total\s+(\d+)$", proc.stdout, flags=re.M)
        assert m and int(m.group(1)) == len(jobs), (m and m.group(0), len(jobs))
    return jobs


def _marked_incomplete(workdir: Path) -> set[str]:
    """Outputs Snakemake has marked incomplete (.snakemake/incomplete/: one file per output, named
    by the urlsafe base64 of its path, split into '@'-prefixed chunks when longer than NAME_MAX)."""
    root = workdir / ".snakemake" / "incomplete"
    paths = set()
    for f in root.rglob("*") if root.is_dir() else ():
        if f.is_file() and f.name != "migration_underway":
            b64 = "".join(part.removeprefix("@") for part in f.relative_to(root).parts)
            paths.add(base64.urlsafe_b64decode(b64).decode())
    return paths


def _unfinished(workdir: Path, jobs: set[Job]) -> set[Job]:
    """Jobs with an output missing or marked incomplete (all our writes are atomic: an output that
    exists unmarked is complete), plus target rules without outputs (always planned)."""
    marked = _marked_incomplete(workdir)
    return {(rule, outs) for rule, outs in jobs
            if not outs or any(o in marked or not (workdir / o).exists() for o in outs)}


def _interrupted_finetunes(workdir: Path) -> dict[str, int]:
    """{dataset: last complete checkpoint step} of finetunes that have a checkpoint but no adapter."""
    found = {}
    for ckpts in (workdir / "results" / "finetune").glob("*/checkpoints"):
        steps = [int(d.name.split("-")[1]) for d in ckpts.glob("step-*") if (d / "trainer_state.json").is_file()]
        if steps and not (ckpts.parent / "adapter").exists():
            found[ckpts.parent.name] = max(steps)
    return found


def _squeue_ids() -> set[str]:
    return set(subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True,
                              check=True).stdout.split())


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
    all_jobs = _plan(workdir, tmp_path, "plan-before")
    assert len(all_jobs) > 40, len(all_jobs)

    # 1. Start the workflow; SIGKILL it while a finetune is between checkpoints.
    log1 = tmp_path / "run1.log"
    with log1.open("w") as fh:
        proc = subprocess.Popen(_snakemake_cmd(workdir, configfiles=(SLOW_FINETUNE,)), cwd=REPO,
                                env=_env(), stdout=fh, stderr=subprocess.STDOUT, text=True)
        try:
            _wait_for_checkpointed_finetune(workdir, proc, timeout=900)
            proc.send_signal(signal.SIGKILL)  # no clean-up: jobs keep running, the lock stays
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    kill_s = time.perf_counter() - t0
    # The SLURM jobs outlive their snakemake; cancel them, as a lost allocation would end them.
    # Some may finish between the kill and the cancel (how many depends on the machine's speed):
    # what counts from here on is what the working directory holds once nothing runs any more.
    submitted = set(_slurm_ids(log1.read_text()))
    alive = _squeue_ids() & submitted
    if alive:
        subprocess.run(["scancel", *sorted(alive)], check=True)
    deadline = time.monotonic() + 120
    while _squeue_ids() & submitted:
        assert time.monotonic() < deadline, "cancelled SLURM jobs still in the queue after 120 s"
        time.sleep(0.2)
    logged_done = len(re.findall(r"Finished jobid: (\d+)", log1.read_text()))
    unfinished = _unfinished(workdir, all_jobs)
    finished_outputs = [o for job in all_jobs - unfinished for o in job[1]]
    assert finished_outputs, "nothing finished before the kill"
    mtimes = {o: (workdir / o).stat().st_mtime_ns for o in finished_outputs}
    interrupted = _interrupted_finetunes(workdir)
    assert interrupted, "no finetune left between checkpoints (the kill came after a checkpoint)"

    # 2. The killed run left its lock: a plain rerun refuses, --unlock releases it.
    locked = _run(_snakemake_cmd(workdir, configfiles=(SLOW_FINETUNE,)), tmp_path / "locked.log", timeout=300)
    assert locked.returncode != 0 and "cannot be locked" in locked.stdout, locked.stdout[-3000:]
    unlock = _run(_snakemake_cmd(workdir, "--unlock", configfiles=(SLOW_FINETUNE,)), tmp_path / "unlock.log")
    assert unlock.returncode == 0, unlock.stdout[-3000:]

    # 3. The rerun plans exactly the unfinished jobs (in-flight ones were incomplete: rerun), runs
    #    them all, and leaves every complete output untouched.
    planned = _plan(workdir, tmp_path, "plan-after")
    assert planned == unfinished, {"planned, not unfinished": sorted(planned - unfinished),
                                   "unfinished, not planned": sorted(unfinished - planned)}
    log2 = tmp_path / "run2.log"
    rerun = _run(_snakemake_cmd(workdir, configfiles=(SLOW_FINETUNE,)), log2, timeout=1200)
    assert rerun.returncode == 0, rerun.stdout[-6000:]
    rerun_done = len(re.findall(r"Finished jobid: (\d+)", rerun.stdout))
    assert rerun_done == len(planned)
    assert re.search(rf"\b{rerun_done} of {rerun_done} steps \(100%\) done", rerun.stdout)
    changed = [p for p, t in mtimes.items() if (workdir / p).stat().st_mtime_ns != t]
    assert not changed, f"outputs complete before the rerun were rebuilt: {changed}"

    # 4. Every interrupted finetune resumed from its last checkpoint, and finished.
    resumed = {}
    for dataset, step in interrupted.items():
        ft_log = (workdir / "logs" / "finetune" / f"{dataset}.log").read_text()
        m = re.search(r"resumed from checkpoint \S+ at step (\d+)/(\d+)", ft_log)
        assert m, f"{dataset}: the rerun did not resume:\n{ft_log[-3000:]}"
        assert int(m.group(1)) == step < int(m.group(2)), (dataset, step, m.group(0))
        metrics = json.loads((workdir / "results" / "finetune" / dataset / "adapter" / "train_metrics.json").read_text())
        assert metrics["resumed_from_step"] == step
        assert len(metrics["loss_history"]) == metrics["steps"]  # the history spans both runs
        resumed[dataset] = f"{step}/{m.group(2)}"

    # 5. Nothing left to do.
    assert _plan(workdir, tmp_path, "plan-final") == set()
    SUMMARY["interruption"] = {
        "total_jobs": len(all_jobs), "finished_in_log_before_kill": logged_done,
        "complete_on_disk_after_cancel": len(all_jobs) - len(unfinished), "planned_after": len(planned),
        "rerun_jobs": rerun_done, "killed_after_s": round(kill_s, 1),
        "slurm_jobs_cancelled": len(alive), "resumed_finetunes": resumed,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
