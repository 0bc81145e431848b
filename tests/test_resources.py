"""instructmining.resources: attempt-scaled sizes with caps and config overrides, the retry guard's
record, and the indicator group names (unit level; tests/workflow/test_retry_guard.py runs them
in Snakemake)."""

import json

import pytest

from instructmining import resources as r
from instructmining.cli import main

PAPER = {"resources": {"max_mem_mb": 100000, "max_runtime": 1440,
                       "rules": {"finetune": {"mem_mb": 48000, "runtime": 360, "threads": 8}}}}


def test_scaled_is_capped_but_never_below_the_base():
    assert [r.scaled(600, a, 1500) for a in (1, 2, 3)] == [600, 1200, 1500]
    assert r.scaled(2000, 3, 1500) == 2000  # a base above the cap is not shrunk
    assert r.scaled(600, 3, None) == 1800


def test_config_overrides_the_rule_base_and_caps_attempts():
    size = [r.job_size(PAPER, "finetune", "runtime", 75, a) for a in (1, 2, 3)]
    assert size == [360, 720, 1080]
    assert [r.job_size(PAPER, "finetune", "mem_mb", 6000, a) for a in (1, 2, 3)] == [48000, 96000, 100000]
    assert r.job_size(PAPER, "finetune", "threads", 1, 3) == 8  # threads do not scale
    assert r.job_size(PAPER, "fit_rule", "mem_mb", 2000, 2) == 4000  # not overridden: the rule's own
    # The search_size at budget 12: 60 x 12 min x 3 = 36 h before; now at most 24 h.
    assert r.job_size(PAPER, "search_size", "runtime", 720, 3) == 1440


def test_retry_guard_record_lifecycle(tmp_path):
    log = tmp_path / "logs" / "finetune" / "mix-000.log"
    assert r.start_attempt(log, 1) is None and not r.retry_is_futile(log, 2)
    r.record_failure(log, 1, "finetune", "instructmining finetune: error: loss is nan")
    assert json.loads(r.record_path(log).read_text())["attempt"] == 1
    assert r.retry_is_futile(log, 2) and not r.retry_is_futile(log, 1)
    assert r.job_size(PAPER, "finetune", "mem_mb", 6000, 2, log) == 1000
    assert r.job_size(PAPER, "finetune", "runtime", 75, 2, log) == 5
    assert r.gpus(1, 2, log) == 0 and r.gpus(1, 1, log) == 1
    assert r.start_attempt(log, 2)["error"].endswith("loss is nan")
    assert r.start_attempt(log, 1) is None and not r.record_path(log).exists()  # a new run starts clean


def test_cli_records_only_errors_a_retry_cannot_fix(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("not_a_key: 1\n")
    log = tmp_path / "v.log"
    assert main(["--attempt", "1", "--retry-log", str(log), "validate-config", str(bad)]) == r.DETERMINISTIC_EXIT
    assert r.read_record(log)["command"] == "validate-config"
    assert main(["--attempt", "2", "--retry-log", str(log), "validate-config", str(bad)]) == r.DETERMINISTIC_EXIT
    assert "not retried: attempt 1 failed" in capsys.readouterr().err
    # Any other exception is not recorded: the retry runs it again (more memory or time may help).
    log2 = tmp_path / "w.log"
    with pytest.raises(FileNotFoundError):
        main(["--attempt", "1", "--retry-log", str(log2), "validate-config", str(tmp_path / "missing.yaml")])
    assert r.read_record(log2) is None


def test_indicator_groups_follow_the_dataset_kind():
    assert r.indicator_group("mix-003") == r.indicator_group("mix-003-rep1") == "indicators_mix"
    assert r.indicator_group("uni-reward-7") == "indicators_bin"
    assert r.indicator_group("sel-rule-1000-2") == "indicators_sel"
    with pytest.raises(ValueError):
        r.indicator_group("whatever")
