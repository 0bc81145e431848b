"""Job resources for the rules, and the retry guard (issue #12).

A rule declares what one job needs at attempt 1 (`mem_mb`, `runtime` in minutes, `gpu`, `threads`);
the config's `resources:` block may replace those sizes per rule (config/paper.yaml: a LLaMA-7B
finetune needs far more than the demo's) and caps what a retry may ask for. A retry (Snakemake
`retries:`) asks for `attempt` times the base, never more than the cap, so an OOM-killed or
timed-out job gets more without attempt 3 of a 12 h search asking for 36 h.

Retries only help failures that more memory or time can fix. A failure a retry cannot fix (a bad
config, bad data, a NaN loss: every `InstructMiningError`, exit code 2) is recorded by the CLI in
`<log>.failure.json` (`instructmining --attempt N --retry-log LOG <command>`). Snakemake 9 cannot
be told to skip the retries of one failure (snakemake/snakemake#2441), so the retry still happens,
but it is free: its resources drop to `RETRY_STUB` (no GPU, 1 GB, 5 minutes) and the CLI exits at
once with the recorded error instead of training again. Attempt 1 of a new run removes the record.

Standard library only: the Snakefile imports this at parse time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Exit code of a failure a retry cannot fix (cli.main: an InstructMiningError).
DETERMINISTIC_EXIT = 2

# What a retry of a recorded deterministic failure asks for: it only reprints the error.
RETRY_STUB = {"mem_mb": 1000, "runtime": 5, "gpu": 0, "threads": 1}

SIZES = ("mem_mb", "runtime", "threads")


def _block(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config.get("resources") or {}


def base_size(config: Mapping[str, Any], rule: str, name: str, default: int) -> int:
    """The attempt-1 size `name` of `rule`: `resources.rules.<rule>.<name>` if the config sets it,
    else the rule's own `default`."""
    rules = _block(config).get("rules") or {}
    return int((rules.get(rule) or {}).get(name, default))


def cap(config: Mapping[str, Any], name: str) -> int | None:
    """The most a job may ask for of `name`: resources.max_mem_mb / max_runtime (the schema's
    defaults fill them in a validated config); None: no cap."""
    value = _block(config).get({"mem_mb": "max_mem_mb", "runtime": "max_runtime"}.get(name, ""))
    return None if value is None else int(value)


def scaled(base: int, attempt: int, limit: int | None = None) -> int:
    """`base * attempt`, at most `limit` (and never below the base when the base itself is larger:
    a rule that needs more than the cap fails loudly at submission, it is not silently shrunk)."""
    value = int(base) * max(1, int(attempt))
    if limit is not None:
        value = min(value, max(int(limit), int(base)))
    return value


def record_path(log: str | os.PathLike[str]) -> Path:
    """Where a job's deterministic failure is recorded: next to its log, which Snakemake keeps."""
    return Path(f"{os.fspath(log)}.failure.json")


def read_record(log: str | os.PathLike[str]) -> dict[str, Any] | None:
    path = record_path(log)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def retry_is_futile(log: str | os.PathLike[str] | None, attempt: int) -> bool:
    """True on a retry (attempt > 1) of a job whose earlier attempt in this run failed with an
    error a retry cannot fix."""
    if log is None or attempt <= 1:
        return False
    record = read_record(log)
    return bool(record) and int(record.get("attempt", attempt)) < attempt


def job_size(config: Mapping[str, Any], rule: str, name: str, default: int, attempt: int,
             log: str | os.PathLike[str] | None = None) -> int:
    """The request for `name` of one attempt: the base (rule default or config), scaled by the
    attempt and capped for mem_mb/runtime; the stub size on a futile retry."""
    if retry_is_futile(log, attempt):
        return min(RETRY_STUB[name], base_size(config, rule, name, default))
    base = base_size(config, rule, name, default)
    if name == "threads":
        return base
    return scaled(base, attempt, cap(config, name))


def gpus(rule_gpus: int, attempt: int, log: str | os.PathLike[str] | None = None) -> int:
    """The GPUs of one attempt: the rule's, none on a futile retry."""
    return 0 if retry_is_futile(log, attempt) else int(rule_gpus)


# --- the CLI side -------------------------------------------------------------------------------


def start_attempt(log: str | os.PathLike[str], attempt: int) -> dict[str, Any] | None:
    """Called before a command runs. Attempt 1 removes a record left by an earlier run (the user may
    have fixed the cause) and returns None. A later attempt returns the record of this run's
    deterministic failure, if any: the caller then exits with it instead of running again."""
    if attempt <= 1:
        record_path(log).unlink(missing_ok=True)
        return None
    return read_record(log) if retry_is_futile(log, attempt) else None


def record_failure(log: str | os.PathLike[str], attempt: int, command: str, error: str) -> None:
    """Record a deterministic failure of `command` at `attempt` (read by the retries)."""
    path = record_path(log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"command": command, "attempt": attempt, "error": error,
                               "exit_code": DETERMINISTIC_EXIT}, indent=1) + "\n")
    os.replace(tmp, path)


# --- SLURM group jobs ---------------------------------------------------------------------------

# dataset_indicators runs once per dataset (169 jobs at paper scale, ~1 s each): on SLURM they run
# as a few group jobs (the profile's `group-components` says how many datasets per job). One group
# per dataset kind, so that a group never mixes datasets that become ready at different stages
# (a selection subset exists only after the rule is fitted from the mixtures' rows).
INDICATOR_GROUPS = {"mixture": "indicators_mix", "rep": "indicators_mix", "heldout": "indicators_mix", "bin": "indicators_bin",
                    "selection": "indicators_sel"}


def indicator_group(dataset: str) -> str:
    """The group job name of `dataset`'s dataset_indicators job."""
    from .dataset_names import kind

    return INDICATOR_GROUPS[kind(dataset)]
