"""Per-rule retries that skip what a retry cannot fix, checked in real Snakemake runs (local
executor) of tests/workflow/retry_guard.smk, which uses the workflow's own resource helpers:

- a deterministic failure (an InstructMiningError, exit 2) runs its command once: Snakemake 9
  still schedules the rule's retries (it cannot be told otherwise, snakemake/snakemake#2441), but
  they ask for no GPU and the stub size, and exit at once with the recorded error;
- a retryable failure (any other exit) is retried with 2x, 3x the memory/runtime, capped by the
  config's resources.max_mem_mb / max_runtime, and succeeds;
- `--resources gpu=1` is honoured because the rules declare their GPU."""

import os
import re
import shutil
import subprocess

REPO_CONFIG = "config/ci.yaml"


def _run(repo, workdir, data_root, *targets):
    caps = workdir / "caps.yaml"  # merged over the ci config
    caps.write_text("resources: {max_mem_mb: 1500, max_runtime: 120}\n")
    cmd = [shutil.which("snakemake"), "-s", str(repo / "tests" / "workflow" / "retry_guard.smk"), "-d", str(workdir),
           "-c1", "--resources", "gpu=1", "--keep-going", *targets, "--configfile", str(repo / REPO_CONFIG),
           str(caps), "--config", f"data_root={data_root}"]
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600, env=env)


def _attempts(workdir, rule):
    text = (workdir / "attempts" / f"{rule}.txt").read_text()
    rows = [dict(kv.split("=") for kv in line.split()) for line in text.splitlines() if line.startswith("attempt=")]
    return text, [{k: int(v) for k, v in row.items()} for row in rows]


def test_deterministic_failure_runs_once_and_retryable_failure_is_retried(repo, data_root, tmp_path):
    proc = _run(repo, tmp_path, data_root, "all_probes")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]  # the deterministic rule fails in the end

    # Deterministic: the command ran once; the two retries Snakemake scheduled only reprinted it.
    text, rows = _attempts(tmp_path, "deterministic")
    assert len(re.findall(r"(?m)^instructmining validate-config: error: config key 'not_a_key'", text)) == 1, text
    assert text.count("not retried: attempt 1 failed with an error a retry cannot fix") == 2, text
    assert rows[0] == {"attempt": 1, "mem_mb": 600, "runtime": 50, "gpu": 1}
    # The retries ask for no GPU and the stub size, not 2x/3x.
    assert rows[1:] == [{"attempt": 2, "mem_mb": 600, "runtime": 5, "gpu": 0},
                        {"attempt": 3, "mem_mb": 600, "runtime": 5, "gpu": 0}], rows
    record = (tmp_path / "logs" / "deterministic" / "deterministic.log.failure.json").read_text()
    assert '"attempt": 1' in record and '"exit_code": 2' in record
    assert "Error in rule deterministic" in out

    # Retryable: attempts 1 and 2 failed without a record, so each retry got more, capped:
    # mem 600 -> 1200 -> 1500 (cap; 3x would be 1800), runtime 50 -> 100 -> 120 (cap; not 150).
    _, rows = _attempts(tmp_path, "transient")
    assert rows == [{"attempt": 1, "mem_mb": 600, "runtime": 50, "gpu": 1},
                    {"attempt": 2, "mem_mb": 1200, "runtime": 100, "gpu": 1},
                    {"attempt": 3, "mem_mb": 1500, "runtime": 120, "gpu": 1}], rows
    assert "transient.yaml: ok" in (tmp_path / "out" / "transient.txt").read_text()
    assert not (tmp_path / "logs" / "transient" / "transient.log.failure.json").exists()


def test_a_new_run_retries_a_recorded_failure_from_scratch(repo, data_root, tmp_path):
    """The record only spans one run: attempt 1 of the next run (the user fixed the cause, or not)
    runs the command again instead of trusting an old record."""
    first = _run(repo, tmp_path, data_root, "out/deterministic.txt")
    assert first.returncode != 0
    second = _run(repo, tmp_path, data_root, "out/deterministic.txt")
    assert second.returncode != 0
    text, rows = _attempts(tmp_path, "deterministic")
    assert [r["attempt"] for r in rows] == [1, 2, 3, 1, 2, 3]
    assert len(re.findall(r"(?m)^instructmining validate-config: error: config key 'not_a_key'", text)) == 2
