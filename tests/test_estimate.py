"""estimate: tokens and GPU-hours of a config from the pool and the plan, without torch."""

from __future__ import annotations

import subprocess
import sys

from instructmining import plan
from instructmining.config import load_config

SCRIPT = """
import sys
from instructmining.cli import main
rc = main(["estimate", "--configfile", "config/config.yaml", "--train-tokens-per-second", "1000",
           "--eval-tokens-per-second", "4000"])
assert rc == 0 and "torch" not in sys.modules, "estimate imported torch"
"""


def test_estimate_counts_the_plan_without_torch(repo):
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=repo, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = len(plan.all_datasets(load_config(repo / "config" / "config.yaml")))
    lines = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.strip()}
    ft, ev, load, total = lines["finetune"], lines["eval_loss"], lines["base_load"], lines["total"]
    # D_eval is scored inside the finetune jobs: no eval jobs, one base-model load per dataset.
    assert int(ft[1]) == int(load[1]) == int(total[1]) == jobs and int(ev[1]) == 0
    train_tokens, eval_tokens = int(ft[2].replace(",", "")), int(ev[2].replace(",", ""))
    assert train_tokens > 0 and eval_tokens > 0
    assert abs(float(ft[3]) - train_tokens / 1000 / 3600) < 0.06  # GPU-h = tokens / rate
    assert abs(float(load[3]) - jobs * 19 / 3600) < 0.06  # config.yaml: QLoRA 4-bit, 19 s per load
    assert abs(float(total[3]) - float(ft[3]) - float(ev[3]) - float(load[3])) < 0.16
    assert "characters / 4.0" in out.stdout or "base model tokenizer" in out.stdout  # says how it counted


def test_estimate_refuses_a_named_pool_that_is_absent(repo, capsys):
    from instructmining.cli import main

    assert main(["estimate", "--configfile", str(repo / "config" / "ci.yaml"), "--pool", "absent.parquet"]) == 2
    assert "--pool absent.parquet: no such file" in capsys.readouterr().err
