"""Bad-input corpus for `instructmining select` (issue #10): one case per bad input, each with
the message fragment the user must see, exit code 2, no output file and no scoring started.

Every case is caught by a cheap check, so scoring is replaced by a function that fails the test:
a case that reached the scorers (models, minutes of work) before reporting would fail here."""

import json
from pathlib import Path

import pytest

from instructmining.cli import main

GOOD = [{"instruction": f"Name fact {i}.", "input": "", "output": f"Fact {i} is true {i} times."} for i in range(4)]
MTLD_RULE = {"indicators": ["mtld"], "coefficients": {"intercept": 1.0, "mtld": -0.01}}


def _jsonl(*records: object) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _rule(**changes: object) -> bytes:
    return json.dumps({**MTLD_RULE, **changes}).encode()


# (case id, files {name: bytes}, extra argv, expected message fragment). Defaults: --data
# data.jsonl (GOOD), --rule rule.json (MTLD_RULE), --n 2, --out out/sel.jsonl.
CASES = [
    # --- the data file ---
    ("data-missing", {}, ["--data", "nope.jsonl"], "nope.jsonl: file not found (check the --data path)"),
    ("data-is-directory", {"d.jsonl/x": b""}, ["--data", "d.jsonl"], "d.jsonl: is a directory"),
    ("data-unknown-extension", {"d.txt": b"instruction,output\n"}, ["--data", "d.txt"],
     "d.txt: unknown extension '.txt' (use .json, .jsonl, .parquet, .csv)"),
    ("latin1-jsonl", {"data.jsonl": _jsonl(GOOD[0]) + '{"instruction": "caf\xe9", "output": "x"}\n'.encode("latin-1")},
     [], "data.jsonl:line 2: not valid UTF-8 (byte 0xe9); re-save the file as UTF-8"),
    ("latin1-json-array", {"d.json": '[\n{"instruction": "a", "output": "b"},\n{"instruction": "\xe9", "output": "c"}]'
                           .encode("latin-1")}, ["--data", "d.json"], "d.json:line 3: not valid UTF-8"),
    ("malformed-jsonl-line", {"data.jsonl": _jsonl(GOOD[0]) + b"{broken\n"}, [], "data.jsonl:line 2: malformed JSON"),
    ("jsonl-line-not-object", {"data.jsonl": _jsonl(GOOD[0], [1, 2])}, [],
     "data.jsonl:line 2: expected a JSON object, got list"),
    ("json-not-array", {"d.json": json.dumps({"instruction": "a"}).encode()}, ["--data", "d.json"],
     "d.json: expected a JSON array of records, got dict"),
    ("json-record-not-object", {"d.json": json.dumps([GOOD[0], 7]).encode()}, ["--data", "d.json"],
     "d.json:record 2: expected a JSON object, got int"),  # 1-based, like line numbers
    ("missing-output", {"data.jsonl": _jsonl(GOOD[0], {"instruction": "x"})}, [],
     "data.jsonl:line 2: field 'output': missing"),
    ("input-not-string", {"data.jsonl": _jsonl(GOOD[0], GOOD[1], {**GOOD[2], "input": 5})}, [],
     "data.jsonl:line 3: field 'input': expected a string, got int"),
    ("instruction-not-string", {"data.jsonl": _jsonl({**GOOD[0], "instruction": {"text": "hi"}})}, [],
     "data.jsonl:line 1: field 'instruction': expected a string, got dict"),
    ("blank-instruction", {"data.jsonl": _jsonl(GOOD[0], {**GOOD[1], "instruction": " \t\n "})}, [],
     "data.jsonl:line 2: field 'instruction': empty instruction (blank after trimming whitespace): fill it in "
     "or remove the record, or pass --on-invalid skip"),
    ("empty-output-json", {"d.json": json.dumps([{**GOOD[0], "output": ""}, GOOD[1]]).encode()},
     ["--data", "d.json"], "d.json:record 1: field 'output': empty output"),
    ("corrupt-parquet", {"d.parquet": b"PAR1 this is not parquet"}, ["--data", "d.parquet"],
     "d.parquet: not a readable parquet file"),
    ("nan-for-json-output", {"data.jsonl": _jsonl(*GOOD[:3]) + b'{"instruction": "q", "output": "a", "w": NaN}\n'},
     [], "data.jsonl:line 4: cannot be written as JSON (Out of range float values are not JSON compliant"),
    ("mixed-types-for-parquet", {"data.jsonl": _jsonl({**GOOD[0], "id": 1}, {**GOOD[1], "id": "b"})},
     ["--out", "out/sel.parquet"], "cannot be stored as one parquet table for out/sel.parquet"),
    ("score-column-taken", {"data.jsonl": _jsonl(GOOD[0], {**GOOD[1], "im_score_mtld": 3})}, ["--with-scores"],
     "data.jsonl:line 2: field 'im_score_mtld': --with-scores would overwrite this user field"),
    # --- --n ---
    ("n-zero", {}, ["--n", "0"], "--n must be a positive count (e.g. 1000) or a fraction in (0, 1] (e.g. 0.1), got 0"),
    ("n-negative", {}, ["--n", "-5"], "--n must be a positive count"),
    ("n-fraction-above-one", {}, ["--n", "1.5"], "--n 1.5: a fraction must be a decimal in (0, 1]"),
    ("n-not-a-number", {}, ["--n", "ten"], "--n ten: a fraction must be a decimal in (0, 1]"),
    ("n-fraction-rounds-to-zero", {}, ["--n", "0.01"], "--n 0.01 of the 4 usable records in data.jsonl is 0 records"),
    ("n-more-than-usable", {"data.jsonl": _jsonl(*GOOD[:3], GOOD[0])}, ["--n", "4"],
     "--n 4 is more than the 3 usable records in data.jsonl (4 records read, 1 exact duplicates dropped "
     "(e.g. line 4 repeats line 1; the first is kept)"),
    ("knn-needs-more-rows", {"rule.json": json.dumps({"indicators": ["knn6"], "coefficients": {"intercept": 1, "knn6": 1}})
                             .encode()}, [], "the rule's knn6 needs at least 7 records; data.jsonl has 4 usable"),
    # --- --out ---
    ("out-is-directory", {"out/sel.jsonl/x": b""}, [], "--out out/sel.jsonl: is a directory"),
    ("out-folder-missing", {}, ["--out", "missing/sel.jsonl"], "folder missing does not exist; create it first"),
    ("out-unknown-extension", {}, ["--out", "out/sel.tsv"], "use a .jsonl, .json, .parquet or .csv file name"),
    # --- the rule ---
    ("rule-is-list", {"rule.json": b"[1, 2]"}, [], "rule.json: a rule is a JSON object with 'indicators' and "
     "'coefficients', got a list"),
    ("rule-not-json", {"rule.json": b'{"indicators": [\n'}, [], "rule.json:line 2: not JSON"),
    ("rule-not-utf8", {"rule.json": '{"note": "\xe9"}'.encode("latin-1")}, [], "rule.json: not valid UTF-8"),
    ("rule-coefficient-not-listed", {"rule.json": _rule(coefficients={**MTLD_RULE["coefficients"], "reward": -0.2})},
     [], "rule.json: field 'coefficients.reward': not one of the rule's indicators ['mtld']"),
    ("rule-coefficient-true", {"rule.json": _rule(coefficients={"intercept": 1.0, "mtld": True})}, [],
     "rule.json: field 'coefficients.mtld': must be a finite number, got true"),
    ("rule-coefficient-string", {"rule.json": _rule(coefficients={"intercept": "1", "mtld": 0.1})}, [],
     "field 'coefficients.intercept': must be a finite number, got \"1\""),
    ("rule-unknown-indicator", {"rule.json": _rule(indicators=["mtdl"], coefficients={"intercept": 1, "mtdl": 1})},
     [], "unknown indicator 'mtdl'"),
    ("rule-models-not-object", {"rule.json": _rule(models=["base"])}, [], "field 'models': must be a JSON object"),
    ("rule-not-found", {}, ["--rule", "paper-v9"], "rule 'paper-v9': neither a file nor a shipped rule"),
    # --- the JSON flags ---
    ("models-flag-not-json", {}, ["--models", "{base: x}"], "--models: not JSON"),
    ("options-flag-not-object", {}, ["--options", "[4]"], "--options: expected a JSON object, got list"),
]


def _argv(extra: list[str]) -> list[str]:
    defaults = {"--rule": "rule.json", "--data": "data.jsonl", "--n": "2", "--out": "out/sel.jsonl"}
    flags = [a for a in extra if a.startswith("--")]
    argv = ["select"]
    for flag, value in defaults.items():
        if flag not in flags:
            argv += [flag, value]
    return argv + extra


@pytest.mark.parametrize("name,files,extra,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_select_input_is_a_clear_error(name, files, extra, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "rule.json").write_bytes(_rule())
    (tmp_path / "data.jsonl").write_bytes(_jsonl(*GOOD))
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    def no_scoring(*args, **kwargs):
        pytest.fail("select started scoring before rejecting the bad input")

    monkeypatch.setattr("instructmining.indicators.score_frame", no_scoring)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(_argv(extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("instructmining select: error: ")
    assert expected in err
    assert "Traceback" not in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_every_case_uses_good_inputs_otherwise(tmp_path, monkeypatch, capsys):
    """The defaults the cases start from are valid: without a bad input, select succeeds, so each
    case's failure comes from its own bad input."""
    monkeypatch.chdir(tmp_path)
    Path("out").mkdir()
    Path("rule.json").write_bytes(_rule())
    Path("data.jsonl").write_bytes(_jsonl(*GOOD))
    assert main(_argv([])) == 0
    assert len(Path("out/sel.jsonl").read_text().splitlines()) == 2
