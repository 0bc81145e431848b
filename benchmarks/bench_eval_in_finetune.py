"""Benchmark: one dataset's cost as two jobs (finetune, then eval-loss: two processes, two base-model
loads) against the one finetune job that also scores D_eval (issue #15.5).

Run inside a finished workflow run (it reads the run's base model, one dataset and D_eval):
    snakemake -c2 --configfile config/ci.yaml -d /tmp/ci --config data_root=../shared/data
    cd /tmp/ci && python /path/to/benchmarks/bench_eval_in_finetune.py --configfile /path/to/config/ci.yaml

Each side runs as subprocesses of `instructmining` (a job pays its interpreter and import start-up
too), `--repeats` times alternately (a shared machine's load then hits both sides alike); wall and
CPU seconds (the children's user + system) are printed per repeat, then the medians, and the
largest per-instruction loss difference between the two sides (0 expected: same code path)."""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "instructmining.cli"]


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one `instructmining` subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(CLI + argv, check=True, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t0, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    from instructmining.config import load_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", required=True, help="the config the run in the current directory used")
    ap.add_argument("--dataset", default="mix-000")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config(args.configfile)
    ev = json.dumps(cfg["eval_loss"])
    eval_path = "results/eval/eval.parquet"
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))

    def finetune(side: str) -> list[str]:
        shutil.rmtree(tmp / side, ignore_errors=True)  # no checkpoint to resume: both sides train
        return ["finetune", "--data", f"results/datasets/{args.dataset}.parquet",
                "--model", json.dumps(cfg["base_model"]["model"]), "--config", json.dumps(cfg["finetune"]),
                "--dataset", args.dataset, "--out", str(tmp / side / "adapter"),
                "--checkpoints", str(tmp / side / "checkpoints")]

    two, one = [], []
    for rep in range(args.repeats):
        ft = timed(finetune("two"))
        el = timed(["eval-loss", "--eval", eval_path, "--adapter", str(tmp / "two" / "adapter"), "--config", ev,
                    "--dataset", args.dataset, "--out", str(tmp / "two" / "loss.json")])
        two.append((ft[0] + el[0], ft[1] + el[1]))
        one.append(timed([*finetune("one"), "--eval", eval_path, "--eval-config", ev,
                          "--loss", str(tmp / "one" / "loss.json")]))
        a, b = (json.loads((tmp / side / "loss.json").read_text()) for side in ("two", "one"))
        diff = max(abs(x["loss"] - y["loss"]) for x, y in zip(a["per_instruction"], b["per_instruction"], strict=True))
        print(f"repeat {rep}: two jobs {two[-1][0]:.1f} s wall / {two[-1][1]:.1f} s CPU (eval-loss alone "
              f"{el[0]:.1f} / {el[1]:.1f}); one job {one[-1][0]:.1f} / {one[-1][1]:.1f}; "
              f"max per-instruction loss difference {diff:.2e}", flush=True)
    shutil.rmtree(tmp)
    for name, runs in (("two jobs (finetune + eval-loss)", two), ("one job (finetune --eval)", one)):
        print(f"{name}: median {statistics.median(r[0] for r in runs):.1f} s wall, "
              f"{statistics.median(r[1] for r in runs):.1f} s CPU")


if __name__ == "__main__":
    main()
