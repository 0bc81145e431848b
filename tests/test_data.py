"""The pool: normalization, duplicates, leakage guard, multi-turn rule, and bad input that stops
with file:line/record + field and leaves nothing half-written."""

import json
from pathlib import Path

import pandas as pd
import pytest

from instructmining.cli import main
from instructmining.data import build_pool, sample_id

EVAL = pd.DataFrame({
    "eval_id": ["si-1", "si-2", "v-1"], "set": ["si", "si", "vicuna"],
    "instruction": ["Rewrite the sentence to be concise.", "Write a haiku about the sea.",
                    "How can I improve my time management skills?"],
    "input": ["The meeting, which was long, ended.", "", ""],
    "reference": ["r1", "r2", "r3"], "ref_label": ["human"] * 3,
})


def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _src(path: Path, **kw) -> dict:
    return {"label": kw.pop("label", "s"), "role": "train", "path": str(path), "format": "auto", "fields": {},
            "filters": {}, "max_samples": None, **kw}


def test_leakage_guard_removes_planted_eval_instructions(tmp_path):
    clean = [{"instruction": f"Task {i}", "input": "", "output": f"Answer {i}"} for i in range(5)]
    planted = [
        {"instruction": "How can I improve my time management skills?", "input": "", "output": "x"},
        {"instruction": "  how can i improve my   TIME management skills ", "input": "", "output": "y"},
        {"instruction": "Write a haiku about the sea.", "input": "", "output": "z"},
        # the eval instruction with its input appended, as AlpacaEval writes it
        {"instruction": "Rewrite the sentence to be concise.\n\nThe meeting, which was long, ended.", "input": "",
         "output": "w"},
        {"instruction": "Rewrite the sentence to be concise.", "input": "The meeting, which was long, ended.",
         "output": "v"},
    ]
    path = _jsonl(tmp_path / "s.jsonl", clean + planted)
    pool, stats = build_pool([_src(path)], None, EVAL, "last_turn", seed=1)
    assert stats["s"]["leaked_eval"] == 5 and stats["s"]["kept"] == 5
    assert set(pool["instruction"]) == {f"Task {i}" for i in range(5)}


def test_duplicates_removed_across_sources_and_ids_are_content_hashes(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"instruction": "Say hi", "input": "", "output": "Hi!"},
                                      {"instruction": "Say hi\r\n", "input": "", "output": "Hi!"}])
    b = _jsonl(tmp_path / "b.jsonl", [{"instruction": "Say hi", "input": None, "output": " Hi!"},
                                      {"instruction": "Say bye", "input": "", "output": "Bye"}])
    pool, stats = build_pool([_src(a, label="a"), _src(b, label="b")], None, EVAL, "last_turn", seed=1)
    assert stats["a"]["duplicates"] == 1 and stats["b"]["duplicates"] == 1
    assert len(pool) == 2 and pool.loc[pool.source == "a", "id"].item() == sample_id("Say hi", "", "Hi!")


def test_multiturn_rules(tmp_path):
    rec = {"instruction": "And in French?", "input": "", "output": "Bonjour",
           "history": [["Say hello", "Hello"], ["In Spanish?", "Hola"]]}
    path = _jsonl(tmp_path / "m.jsonl", [rec, {"instruction": "Single", "input": "", "output": "One"}])
    src = _src(path, fields={"history": "history"})
    last, st = build_pool([src], None, EVAL, "last_turn", seed=1)
    row = last[last.instruction == "And in French?"].iloc[0]
    assert row.output == "Bonjour"
    assert row.input == "User: Say hello\nAssistant: Hello\nUser: In Spanish?\nAssistant: Hola"
    assert st["s"]["multi_turn"] == 1
    first, _ = build_pool([src], None, EVAL, "first_turn", seed=1)
    assert set(first.instruction) == {"Say hello", "Single"}
    dropped, st = build_pool([src], None, EVAL, "drop", seed=1)
    assert list(dropped.instruction) == ["Single"] and st["s"]["dropped_multi_turn"] == 1


def test_oasst_transcript_and_filters(tmp_path):
    recs = [
        {"input": "### Human: Hi there ### Assistant:", "output": "Hello!", "lang": "en"},
        {"input": "### Human: Q1 ### Assistant: A1 ### Human: Q2 ### Assistant:", "output": "A2", "lang": "en"},
        {"input": "### Human: Hola ### Assistant:", "output": "Hola!", "lang": "es"},
    ]
    path = _jsonl(tmp_path / "oa.jsonl", recs)
    src = _src(path, format="oasst_transcript", fields={"instruction": "input", "input": None, "output": "output"},
               filters={"equals": {"lang": "en"}})
    pool, st = build_pool([src], None, EVAL, "last_turn", seed=1)
    assert st["s"]["filtered"] == 1
    assert set(zip(pool.instruction, pool.input, pool.output, strict=True)) == {
        ("Hi there", "", "Hello!"), ("Q2", "User: Q1\nAssistant: A1", "A2")}


def _run(argv: list[str], capsys) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().err


def _build_pool_argv(tmp_path: Path, path: Path, eval_path: Path, **src) -> list[str]:
    return ["build-pool", "--sources", json.dumps([_src(path, **src)]), "--data-root", "none",
            "--eval", str(eval_path), "--seed", "1", "--out", str(tmp_path / "out" / "pool.parquet"),
            "--stats", str(tmp_path / "out" / "stats.json")]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n', r"bad\.jsonl:line 2: malformed JSON"),
        (b'{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n', r"bad\.jsonl:line 2: field 'output': missing"),
        (b'{"instruction": "  ", "output": "b"}\n', r"bad\.jsonl:line 1: field 'instruction': empty instruction"),
        (b'{"instruction": "a", "output": "b"}\n{"instruction": "caf\xe9", "output": "b"}\n',
         r"bad\.jsonl:line 2: not valid UTF-8 \(byte 0xe9\)"),
        (b'{"instruction": "a", "output": 5}\n', r"bad\.jsonl:line 1: field 'output': expected a string"),
    ],
    ids=["malformed-line", "missing-output", "empty-instruction", "non-utf8", "wrong-type"],
)
def test_bad_input_names_file_line_field_and_writes_nothing(tmp_path, capsys, content, expected):
    import re

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    eval_path = tmp_path / "eval.parquet"
    EVAL.to_parquet(eval_path)
    rc, err = _run(_build_pool_argv(tmp_path, bad, eval_path), capsys)
    assert rc == 2 and re.search(expected, err), err
    assert not (tmp_path / "out" / "pool.parquet").exists()
    assert not (tmp_path / "out" / "stats.json").exists()
    assert not list((tmp_path / "out").glob(".*tmp")) if (tmp_path / "out").exists() else True


def test_bad_json_array_names_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n')
    eval_path = tmp_path / "eval.parquet"
    EVAL.to_parquet(eval_path)
    rc, err = _run(_build_pool_argv(tmp_path, bad, eval_path), capsys)
    assert rc == 2 and "bad.json:line 3: malformed JSON" in err


def test_empty_records_can_be_skipped_and_counted(tmp_path):
    path = _jsonl(tmp_path / "e.jsonl", [{"instruction": "", "output": "b"}, {"instruction": "a", "output": "b"}])
    pool, st = build_pool([_src(path, on_empty="skip")], None, EVAL, "last_turn", seed=1)
    assert len(pool) == 1 and st["s"]["skipped_empty"] == 1
