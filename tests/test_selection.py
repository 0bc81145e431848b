"""Rule-guided and random selection, the selection plot, and the report captions."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from instructmining.cli import main
from instructmining.errors import DataError, InstructMiningError
from instructmining.indicators import knn_distances
from instructmining.plots import summarize_runs
from instructmining.selection import POOL_COLUMNS, load_rule, predict, random_n, top_n, unseen_pool


def pool(n_unseen: int = 30, n_train: int = 10) -> pd.DataFrame:
    rows = []
    for i in range(n_unseen + n_train):
        role = "unseen" if i < n_unseen else "train"
        rows.append({"id": f"{(i * 7919) % 1000:04d}-{i}", "source": "dolly" if role == "unseen" else "alpaca",
                     "role": role, "instruction": f"q{i}", "input": "", "output": "a" * (i + 1)})
    return pd.DataFrame(rows, columns=POOL_COLUMNS)


def test_top_n_takes_lowest_predicted_log_loss():
    frame = pd.DataFrame({"id": ["c", "a", "b", "d"]})
    chosen = top_n(frame, [0.5, 0.2, 0.2, 0.9], 3)
    assert chosen["id"].tolist() == ["a", "b", "c"]  # ties (a, b) broken by id
    with pytest.raises(InstructMiningError, match="n = 5 samples from 4"):
        top_n(frame, [0, 0, 0, 0], 5)


def test_random_is_reproducible_nested_and_order_free():
    p = unseen_pool(pool())
    a, b = random_n(p, 10, seed=1, master_seed=1), random_n(p.sample(frac=1, random_state=3), 10, 1, 1)
    assert a["id"].tolist() == b["id"].tolist()  # same seed, shuffled input: same draw
    assert random_n(p, 10, seed=2, master_seed=1)["id"].tolist() != a["id"].tolist()
    assert random_n(p, 10, seed=1, master_seed=2)["id"].tolist() != a["id"].tolist()
    assert random_n(p, 5, 1, 1)["id"].tolist() == a["id"].tolist()[:5]  # nested in n
    assert set(a["role"]) == {"unseen"}


def test_unseen_pool_filters():
    p = pool()
    assert len(unseen_pool(p)) == 30
    with pytest.raises(DataError, match="no unseen rows from \\['alpaca'\\]"):
        unseen_pool(p, ["alpaca"])


def test_paper_rule_and_prediction():
    rule = load_rule("paper-v1")
    assert rule["indicators"] == ["reward", "output_length", "knn6"]
    feats = pd.DataFrame({"id": ["x", "y"], "reward": [1.0, 0.0], "output_length": [100.0, 0.0], "knn6": [0.5, 0.0]})
    assert predict(rule, feats) == pytest.approx([1.0694 - 0.1498 + 8.257e-3 - 0.4675, 1.0694])
    with pytest.raises(DataError, match="sample y: field 'knn6'"):
        predict(rule, feats.assign(knn6=[0.5, np.nan]))
    with pytest.raises(InstructMiningError, match="neither a file nor a shipped rule \\['paper-v1'\\]"):
        load_rule("paper-v2")


def test_intercept_only_rule_is_refused(tmp_path):
    path = tmp_path / "rule.json"
    path.write_text(json.dumps({"indicators": [], "coefficients": {"intercept": 1.0}}))
    with pytest.raises(DataError, match="chose no indicator"):
        load_rule(str(path))


def test_select_dataset_cli(tmp_path):
    p = pool()
    p.to_parquet(tmp_path / "pool.parquet")
    scores = tmp_path / "scores"
    scores.mkdir()
    lengths = p["output"].str.len().astype(float)
    pd.DataFrame({"id": p["id"], "score": lengths}).to_parquet(scores / "output_length.parquet")
    emb = np.random.default_rng(0).normal(size=(len(p), 8)).astype(np.float32)
    np.save(tmp_path / "emb.npy", emb)
    pd.DataFrame({"id": p["id"]}).to_parquet(tmp_path / "emb.ids.parquet")
    rule = {"indicators": ["output_length", "knn6"], "coefficients": {"intercept": 1.0, "output_length": -0.01, "knn6": 0.5}}
    (tmp_path / "rule.json").write_text(json.dumps(rule))
    common = ["--pool", str(tmp_path / "pool.parquet"), "--n", "5", "--master-seed", "1",
              "--scores", str(scores / "output_length.parquet"), "--embeddings", str(tmp_path / "emb.npy"),
              "--embedding-ids", str(tmp_path / "emb.ids.parquet")]
    assert main(["select-dataset", "--method", "rule", "--seed", "1", "--rule", str(tmp_path / "rule.json"),
                 *common, "--out", str(tmp_path / "r1.parquet")]) == 0
    assert main(["select-dataset", "--method", "rule", "--seed", "2", "--rule", str(tmp_path / "rule.json"),
                 *common, "--out", str(tmp_path / "r2.parquet")]) == 0
    r1 = pd.read_parquet(tmp_path / "r1.parquet")
    assert r1.columns.tolist() == POOL_COLUMNS and set(r1["role"]) == {"unseen"}
    assert r1["id"].tolist() == pd.read_parquet(tmp_path / "r2.parquet")["id"].tolist()  # seed-free
    # The expected choice, computed independently: knn6 within the unseen rows only.
    unseen = p[p["role"] == "unseen"].sort_values("id").reset_index(drop=True)
    knn = knn_distances(emb[unseen.index.map(lambda i: p.index[p["id"] == unseen["id"][i]][0])], 6)
    pred = 1.0 - 0.01 * unseen["output"].str.len() + 0.5 * knn
    assert r1["id"].tolist() == unseen["id"][np.argsort(pred.to_numpy(), kind="stable")[:5]].tolist()
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"rand-{name}.parquet"
        assert main(["select-dataset", "--method", "random", "--seed", str(seed), *common, "--out", str(out)]) == 0
    rand = {name: (tmp_path / f"rand-{name}.parquet").read_bytes() for name in "abc"}
    assert rand["a"] == rand["b"] != rand["c"]  # same seed: byte-identical file


def test_summarize_runs_and_plot(tmp_path):
    runs = pd.DataFrame({"dataset": ["sel-rule-20-1", "sel-rule-20-2", "sel-random-20-2", "sel-random-20-1"],
                         "loss": [1.0, 1.2, 1.5, 1.3]})
    runs["log_loss"] = np.log(runs["loss"])
    s = summarize_runs(runs).set_index("method")
    assert s.loc["rule", "loss_mean"] == pytest.approx(1.1)
    assert s.loc["random", "loss_sd"] == pytest.approx(np.std([1.3, 1.5], ddof=1))
    assert s.loc["random", "seeds"] == "1;2" and s.loc["random", "losses"] == "1.3;1.5"
    runs.to_csv(tmp_path / "runs.tsv", sep="\t", index=False)
    assert main(["plot-selection", "--table", str(tmp_path / "runs.tsv"), "--out", str(tmp_path / "s.tsv"),
                 "--plot", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_every_report_output_has_a_caption(repo):
    """Each report(...) in the rule files names a caption .rst that exists and a category from
    the style guide."""
    calls = 0
    for smk in sorted((repo / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        for start in (m.end() for m in re.finditer(r"\breport\(", text)):
            depth, end = 1, start
            while depth:  # the call's body, up to its matching parenthesis
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            body = text[start:end - 1]
            caption = re.search(r'caption="([^"]+)"', body)
            assert caption, f"{smk.name}: report() without caption: {body[:80]}"
            assert (smk.parent / caption.group(1)).is_file(), f"{smk.name}: missing {caption.group(1)}"
            assert re.search(r'category="(Data|Regression|Univariate|Selection)"', body), body[:80]
            calls += 1
    assert calls >= 9
    assert (repo / "workflow" / "report" / "workflow.rst").is_file()
