"""How long does `snakemake -n --configfile config/paper.yaml` take to plan the paper's DAG?

Target (issue 2): under 10 s. Printed as a ratio against bare snakemake start-up measured in the
same run (`snakemake --version`), so a slow machine does not hide a slow Snakefile.
Run: python benchmarks/bench_dag_plan.py"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> tuple[float, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return dt, out.stdout + out.stderr


def main() -> None:
    snakemake = shutil.which("snakemake") or sys.exit("snakemake not on PATH")
    startup = min(timed([snakemake, "--version"])[0] for _ in range(3))
    runs = [timed([snakemake, "-n", "--configfile", "config/paper.yaml", "--quiet", "rules"]) for _ in range(3)]
    best, text = min(runs, key=lambda r: r[0])
    counts: dict[str, int] = collections.OrderedDict()
    for line in text.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
    for rule, n in counts.items():
        print(f"  {rule:24s} {n:5d}")
    print(f"snakemake start-up: {startup:.2f} s; paper dry run (best of 3): {best:.2f} s")
    print(f"paper-config dry run: {best:.2f} s = {best / startup:.1f}x snakemake start-up; "
          f"target < 10 s: {'met' if best < 10 else 'MISSED'} ({counts.get('total', '?')} jobs)")


if __name__ == "__main__":
    main()
