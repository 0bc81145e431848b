"""The ci config's planned jobs (rule, inputs, outputs) against a recorded list, so a refactoring
of the planning code cannot silently add, drop or rewire a job. The list was recorded before the
planning moved from common.smk into the package (plus the two intended changes of that move:
KNN-i pool scores in score_pool_set, and the selection's declared pool.ids.parquet input).
After an intended DAG change, rewrite it: UPDATE_PLANNED_JOBS=1 pytest tests/workflow/test_planned_jobs.py"""

import os
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECORDED = Path(__file__).with_name("ci_planned_jobs.txt")


def planned_jobs(text: str, data_root: str) -> list[str]:
    """`snakemake -n -p` output -> sorted 'rule | inputs | outputs' lines (data_root written as <data_root>)."""
    jobs, cur = [], None
    for line in text.splitlines():
        if m := re.match(r"^\s*(?:local)?rule (\w+):", line):  # indented: a member of a group job
            cur = {"rule": m.group(1), "input": "", "output": ""}
            jobs.append(cur)
        elif cur is not None and (m := re.match(r"^\s+(input|output): (.*)$", line)):
            cur[m.group(1)] = ", ".join(sorted(m.group(2).replace(data_root, "<data_root>").split(", ")))
    return sorted(f"{j['rule']} | {j['input']} | {j['output']}" for j in jobs)


def test_ci_plans_the_recorded_jobs(tmp_path, data_root):
    cmd = [shutil.which("snakemake"), "-n", "-p", "-d", str(tmp_path), "--configfile", str(REPO / "config" / "ci.yaml"),
           "--config", f"data_root={data_root}"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = planned_jobs(out.stdout + out.stderr, str(data_root))
    if os.environ.get("UPDATE_PLANNED_JOBS"):
        RECORDED.write_text("\n".join(jobs) + "\n")
    assert jobs == RECORDED.read_text().splitlines()
