"""`instructmining select` passes the user's rows through unchanged (issue #10): same keys,
types and nesting, file order; scores only under im_score_<indicator> / im_predicted_log_loss;
duplicates and blank records handled and counted as the pool stage does. A model-free rule
(MTLD of the response) keeps these tests fast."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from instructmining.cli import main
from instructmining.indicators.mtld import mtld

RULE = {"indicators": ["mtld"], "coefficients": {"intercept": 1.0, "mtld": -0.01}}
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()


def records() -> list[dict]:
    """Records with user fields that collide with indicator names, ints, nesting, missing keys."""
    out = []
    for i in range(8):
        text = " ".join(WORDS[: 3 + 2 * i] + ["alpha"] * (i % 3) * 4)  # varied lexical diversity
        rec = {"instruction": f"List some letters ({i}).", "output": text, "reward": 10 + i,
               "output_length": i, "tags": ["greek", str(i)], "meta": {"page": i, "refs": [i, i + 1]}}
        if i % 2:
            rec["input"] = "Use Greek names."
        if i == 5:
            del rec["reward"]  # missing in one record: must stay missing, not become NaN/null
        out.append(rec)
    return out


def _strict_json(line: str) -> object:
    def refuse(const: str) -> None:
        raise AssertionError(f"invalid JSON constant {const} in {line}")

    return json.loads(line, parse_constant=refuse)


def _run(tmp_path, data: str, out: str, n: int, *extra: str) -> int:
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps(RULE))
    return main(["select", "--rule", str(rule), "--data", str(tmp_path / data), "--n", str(n),
                 "--out", str(tmp_path / out), *extra])


def test_jsonl_rows_come_back_as_given_with_prefixed_scores(tmp_path):
    recs = records()
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert _run(tmp_path, "d.jsonl", "all.jsonl", len(recs), "--with-scores") == 0
    assert _run(tmp_path, "d.jsonl", "top.jsonl", 3, "--with-scores") == 0
    scored = [_strict_json(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    top = [_strict_json(line) for line in (tmp_path / "top.jsonl").read_text().splitlines()]
    for got, rec in zip(scored, recs, strict=True):  # n = all: every row, in file order
        assert {k: v for k, v in got.items() if not k.startswith("im_")} == rec  # same keys, values, types
        assert got["im_score_mtld"] == pytest.approx(mtld(rec["output"]))
        assert got["im_predicted_log_loss"] == pytest.approx(1.0 - 0.01 * got["im_score_mtld"])
    assert "reward" not in scored[5]  # missing stays missing
    # == alone would accept 14.0 for 14: the types must match too (json.loads keeps int vs float)
    assert all(type(got[k]) is type(v) for got, rec in zip(scored, recs, strict=True) for k, v in rec.items())
    # the 3 lowest predictions, written in file order (not rank order)
    best = sorted(range(len(recs)), key=lambda i: (scored[i]["im_predicted_log_loss"], i))[:3]
    assert top == [scored[i] for i in sorted(best)]
    # without --with-scores, not one key is added
    assert _run(tmp_path, "d.jsonl", "plain.jsonl", 3) == 0
    plain = [_strict_json(line) for line in (tmp_path / "plain.jsonl").read_text().splitlines()]
    assert plain == [recs[i] for i in sorted(best)]


def test_parquet_keeps_the_users_schema_and_nesting(tmp_path):
    recs = records()
    table = pa.Table.from_pylist(recs)
    pq.write_table(table, tmp_path / "d.parquet")
    assert _run(tmp_path, "d.parquet", "top.parquet", 4, "--with-scores") == 0
    out = pq.read_table(tmp_path / "top.parquet")
    user = out.select(table.column_names)
    assert user.schema == table.schema  # int64 stays int64, list<string> and struct stay nested
    assert out.schema.field("im_score_mtld").type == pa.float64()
    rows = user.to_pylist()
    assert all(r in table.to_pylist() for r in rows) and len(rows) == 4
    assert rows == [r for r in table.to_pylist() if r in rows]  # file order
    # parquet in, JSON lines out: nested values stay JSON lists/objects, not "['x']" strings
    assert _run(tmp_path, "d.parquet", "top.jsonl", 4) == 0
    lines = [_strict_json(line) for line in (tmp_path / "top.jsonl").read_text().splitlines()]
    assert lines == rows
    assert isinstance(lines[0]["tags"], list) and isinstance(lines[0]["meta"]["refs"], list)


def test_json_array_in_and_out(tmp_path):
    recs = records()
    (tmp_path / "d.json").write_text(json.dumps(recs, indent=1))
    assert _run(tmp_path, "d.json", "top.json", 2) == 0
    top = _strict_json((tmp_path / "top.json").read_text())
    assert isinstance(top, list) and len(top) == 2 and all(r in recs for r in top)


def test_duplicates_and_blank_records_are_dropped_and_counted(tmp_path, capsys):
    recs = records()[:4]
    # line 5 is line 2 again once normalized (CRLF, edge whitespace): an exact duplicate
    dup = {**recs[1], "instruction": "  " + recs[1]["instruction"] + "\r\n", "note": "copy"}
    blank = {**recs[2], "instruction": " \n\t"}
    lines = [*recs, dup, blank]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert _run(tmp_path, "d.jsonl", "o.jsonl", 4, "--on-empty", "skip") == 0
    err = capsys.readouterr().err
    assert ("d.jsonl (alpaca): 6 records read, 1 exact duplicates dropped (e.g. line 5 repeats line 2; the first "
            "is kept), 1 invalid skipped (instruction: empty instruction: 1); 4 scored in") in err
    assert "; 4 of 4 selected -> " in err
    out = [_strict_json(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert out == recs  # the first occurrence is kept, the blank one is not selectable
    # the same file without --on-empty skip: the blank record is an error naming its line
    assert _run(tmp_path, "d.jsonl", "o2.jsonl", 2) == 2
    assert "d.jsonl:line 6: field 'instruction': empty instruction" in capsys.readouterr().err
    assert not (tmp_path / "o2.jsonl").exists()
