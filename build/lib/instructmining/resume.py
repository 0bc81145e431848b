"""`instructmining resume -- <snakemake args>`: the one command after a killed run.

A SIGKILLed snakemake (closed session, OOM killer, node failure) leaves its working directory
locked and its running jobs marked incomplete; the plain rerun then fails with a lock error whose
hint, `--unlock`, is wrong when another run is still active (two runs then write the same files).
`resume` unlocks only when no snakemake and no job of this workflow still runs in that directory
(found by scanning /proc: a process whose command line names snakemake or instructmining and whose
working directory, or `-d/--directory`, is that directory), then reruns with `--rerun-incomplete`
so the interrupted jobs start over; finished jobs are not repeated. If a run is active it refuses
and names its pid. Processes on other machines (SLURM jobs on compute nodes) are invisible here:
`squeue --me` first (docs/slurm.md)."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import InstructMiningError

LOG = logging.getLogger("instructmining.resume")
DRY_RUN_FLAGS = {"-n", "--dry-run", "--dryrun", "--unlock", "--list", "-l", "--summary", "-S"}


@dataclass(frozen=True)
class Proc:
    pid: int
    cwd: Path
    argv: list[str]

    @property
    def command(self) -> str:
        return " ".join(self.argv)


def workdir_of(argv: list[str], cwd: Path) -> Path:
    """The working directory a snakemake command line uses (-d/--directory, else its cwd)."""
    for i, arg in enumerate(argv):
        if arg in ("-d", "--directory") and i + 1 < len(argv):
            return (cwd / argv[i + 1]).resolve()
        if arg.startswith("--directory="):
            return (cwd / arg.split("=", 1)[1]).resolve()
    return cwd.resolve()


def _ancestors(pid: int) -> set[int]:
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return seen


def processes(proc_root: Path = Path("/proc")) -> list[Proc]:
    """Live (not zombie) processes with a readable command line and working directory."""
    out = []
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            argv = (entry / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone, or another user's process
            continue
        argv = [a for a in argv if a]
        if argv:
            out.append(Proc(int(entry.name), cwd, argv))
    return out


def active_runs(workdir: Path, procs: list[Proc] | None = None) -> list[Proc]:
    """Snakemake runs (not dry runs) and workflow jobs that use `workdir`, except this process
    and its ancestors (the shell that started `resume`)."""
    workdir = workdir.resolve()
    mine = _ancestors(os.getpid())
    found = []
    for proc in processes() if procs is None else procs:
        if proc.pid in mine:
            continue
        words = " ".join(Path(a).name for a in proc.argv[:3])
        if "snakemake" in words:
            if DRY_RUN_FLAGS & set(proc.argv) or workdir_of(proc.argv, proc.cwd) != workdir:
                continue
        elif "instructmining" in " ".join(proc.argv[:4]):
            if proc.cwd.resolve() != workdir:  # a job runs in the workflow's directory
                continue
        else:
            continue
        found.append(proc)
    return found


def resume(snakemake_args: list[str], cwd: Path | None = None) -> int:
    """Refuse if a run is active in the directory; else unlock a stale lock and rerun with
    --rerun-incomplete. Returns snakemake's exit status."""
    cwd = (cwd or Path.cwd()).resolve()
    args = [a for a in snakemake_args if a != "--"]
    workdir = workdir_of(args, cwd)
    active = active_runs(workdir)
    if active:
        shown = "; ".join(f"pid {p.pid}: {p.command[:120]}" for p in active[:3])
        raise InstructMiningError(
            f"another Snakemake run is active in {workdir} ({shown}). Wait for it to finish, or stop "
            f"it (`kill -INT {active[0].pid}`: Ctrl-C, which also cancels its SLURM jobs), then run "
            "`instructmining resume` again. Do not `--unlock` while it runs: two runs would write the "
            "same files.")
    snakemake = [sys.executable, "-m", "snakemake"]
    locks = workdir / ".snakemake" / "locks"
    if locks.is_dir() and any(locks.iterdir()):
        LOG.info("no run is active in %s: removing the stale lock of a killed run", workdir)
        done = subprocess.run([*snakemake, "--unlock", *args], cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            return done.returncode
    rerun = [] if "--rerun-incomplete" in args or "--ri" in args else ["--rerun-incomplete"]
    LOG.info("snakemake %s", " ".join([*rerun, *args]))
    return subprocess.run([*snakemake, *rerun, *args], cwd=cwd).returncode


def _cmd_resume(args: argparse.Namespace) -> int:
    return resume(args.snakemake_args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "resume", help="continue a killed run: unlock only if no run is active, then --rerun-incomplete",
        description="Continue the run after snakemake was killed (SIGKILL, node failure, closed session). "
                    "Pass the run's own snakemake arguments after `--`, e.g. "
                    "`instructmining resume -- -c2 --configfile config/ci.yaml`.")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="the run's snakemake arguments (after --)")
    p.set_defaults(func=_cmd_resume)
