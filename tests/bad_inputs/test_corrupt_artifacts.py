"""Corrupt caches and intermediate files (issue #10): a damaged score-cache entry or checkpoint is
reported naming the file and recomputed; a truncated parquet input is a clear error naming it."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/tiny_models.py
from tiny_models import alpaca_rows, tiny_base, write_dataset, write_eval  # noqa: E402

from instructmining.cli import main  # noqa: E402
from instructmining.indicators import registry  # noqa: E402
from instructmining.indicators.cache import consolidate, score_with_cache, scorer_key  # noqa: E402


def truncate(path: Path) -> None:
    """Keep the first half of a file (a killed copy, a full disk)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def pool_frame(n: int) -> pd.DataFrame:
    rows = alpaca_rows(n)
    df = pd.DataFrame([{"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
                       for r in rows])
    df["id"] = [hashlib.sha256(f"{a}\x1f{b}\x1f{c}".encode()).hexdigest()
                for a, b, c in zip(df["instruction"], df["input"], df["output"], strict=True)]
    df["source"], df["role"] = "alpaca", "train"
    return df[["id", "source", "role", "instruction", "input", "output"]]


def counting(name: str) -> object:
    """A real scorer that counts the rows it scores (cache hits are not scored)."""
    scorer = registry.create(name)
    inner, scorer.scored = scorer._score, 0

    def _score(df):
        scorer.scored += len(df)
        return inner(df)

    scorer._score = _score
    return scorer


@pytest.mark.parametrize("which", ["consolidated", "part"])
def test_corrupt_score_cache_entry_is_reported_deleted_and_rescored(tmp_path, caplog, which):
    df, cache = pool_frame(12), tmp_path / "cache"
    first = counting("mtld")
    expected = score_with_cache(first, df, cache, tag="0-of-1")
    key = scorer_key(first.identity())
    if which == "consolidated":
        consolidate(cache, key, first.identity())
    (entry,) = cache.glob(f"{key}*.parquet")
    truncate(entry)
    again = counting("mtld")
    with caplog.at_level(logging.WARNING, logger="instructmining"):
        assert score_with_cache(again, df, cache, tag="0-of-1") == expected
    assert f"corrupt score cache entry {entry}" in caplog.text
    assert again.scored == len(df)  # recomputed, never half-used
    assert pd.read_parquet(cache / f"{key}.part-0-of-1.parquet")["id"].nunique() == len(df)  # repaired


def test_cache_file_of_another_key_is_not_used(tmp_path, caplog):
    from instructmining.io import write_parquet

    df, cache = pool_frame(6), tmp_path / "cache"
    a = counting("mtld")
    score_with_cache(a, df, cache)
    (entry,) = cache.glob("*.parquet")
    # Same name, but the file says it holds another scorer's scores (a copied or renamed file).
    write_parquet(pd.read_parquet(entry), entry, metadata={"scorer_key": "0" * 64})
    b = counting("mtld")
    with caplog.at_level(logging.WARNING, logger="instructmining"):
        score_with_cache(b, df, cache)
    assert "scorer_key metadata is 000000000000" in caplog.text and b.scored == len(df)


@pytest.fixture(scope="module")
def ft(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt-ft")
    base = tiny_base(root / "base", hidden=32, layers=1, vocab=300)
    data = write_dataset(root / "mix-000.parquet", alpaca_rows(12))
    ev = write_eval(root / "eval.parquet", alpaca_rows(2, 400), refs_per=1)
    cfg = {"method": "lora", "compute_dtype": "float32", "lora_r": 4, "lora_alpha": 8, "epochs": 1,
           "batch_size": 2, "max_length": 64, "save_steps": 1, "learning_rate": 0.01}
    argv = ["finetune", "--data", str(data), "--model", json.dumps({"path": str(base)}), "--config",
            json.dumps(cfg), "--out", str(root / "adapter"), "--checkpoints", str(root / "ckpt")]
    return {"root": root, "argv": argv, "data": data, "eval": ev}


def test_corrupt_checkpoint_is_reported_removed_and_training_falls_back(ft, capsys):
    assert main(ft["argv"]) == 0  # 6 steps; keeps step-5 and step-6
    capsys.readouterr()
    ckpt = ft["root"] / "ckpt"
    newest = ckpt / "step-6"
    opt = newest / "optimizer.pt"
    raw = bytearray(opt.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # bit rot: same size, still a "file"
    opt.write_bytes(bytes(raw))
    assert main(ft["argv"]) == 0
    err = capsys.readouterr().err
    assert f"corrupt checkpoint {newest}: optimizer.pt fails its sha256 checksum; removing it" in err
    assert re.search(r"resumed from checkpoint \S+step-5 at step 5/6", err), err
    # Then an unreadable state file in every checkpoint: all removed, training from step 0.
    for d in ckpt.glob("step-*"):
        truncate(d / "trainer_state.json")
    assert main(ft["argv"]) == 0
    err = capsys.readouterr().err
    assert "trainer_state.json is unreadable" in err and "training from step 0/6" in err


@pytest.mark.parametrize("command", ["finetune", "dataset-indicators", "eval-loss"])
def test_truncated_parquet_input_is_a_clear_error_naming_it(ft, tmp_path, capsys, command):
    bad = tmp_path / "input.parquet"
    src = ft["eval"] if command == "eval-loss" else ft["data"]
    bad.write_bytes(src.read_bytes())
    truncate(bad)
    if command == "finetune":
        argv = [*ft["argv"]]
        argv[argv.index("--data") + 1] = str(bad)
        argv[argv.index("--checkpoints") + 1] = str(tmp_path / "ckpt")
        argv[argv.index("--out") + 1] = str(tmp_path / "adapter")
    elif command == "dataset-indicators":
        argv = [command, "--data", str(bad), "--name", "input", "--names", '["output_length"]',
                "--out", str(tmp_path / "i.parquet")]
    else:
        argv = [command, "--eval", str(bad), "--model", ft["argv"][ft["argv"].index("--model") + 1],
                "--out", str(tmp_path / "l.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{bad}: unreadable parquet" in err and "truncated or corrupt: delete it and rerun" in err
    assert "Traceback" not in err
    assert not [p for p in ("adapter", "i.parquet", "l.json") if (tmp_path / p).exists()]  # no output
