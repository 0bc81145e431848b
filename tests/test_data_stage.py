"""The data stage on the shipped data, through the CLI the rules call: D_eval has the paper's
332 instructions with several references, and the same seed gives byte-identical files."""

import json
from pathlib import Path

import pandas as pd

from instructmining.cli import main
from instructmining.config import check_config, load_config

REPO = Path(__file__).resolve().parents[1]


def _data_stage(cfg: dict, data_root: Path, out: Path, seed: int) -> dict[str, bytes]:
    out.mkdir(parents=True, exist_ok=True)
    root = str(data_root)
    assert main(["build-eval", "--eval-config", json.dumps(cfg["eval"]), "--data-root", root, "--seed", str(seed),
                 "--out", str(out / "eval.parquet"), "--out-all", str(out / "eval_all.parquet")]) == 0
    assert main(["build-pool", "--sources", json.dumps(cfg["pool"]["sources"]), "--data-root", root,
                 "--eval", str(out / "eval_all.parquet"), "--multiturn", "last_turn", "--seed", str(seed),
                 "--out", str(out / "pool.parquet"), "--stats", str(out / "stats.json")]) == 0
    assert main(["make-mixtures", "--pool", str(out / "pool.parquet"), "--n", "4", "--size", "50",
                 "--seed", str(seed), "--repeats", "[1]", "--out",
                 *[str(out / "datasets" / f"{d}.parquet") for d in ("mix-000", "mix-001", "mix-002", "mix-003", "mix-000-rep1")],
                 "--manifest", str(out / "datasets" / "mixtures.tsv")]) == 0
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_eval_set_has_332_instructions_with_several_references(tmp_path, data_root):
    cfg = check_config(load_config(REPO / "config" / "paper.yaml"), base=REPO)  # hub eval: use local files
    demo = check_config(load_config(REPO / "config" / "config.yaml"), base=REPO)
    demo["eval"]["max_instructions"] = None
    demo["eval"]["max_references"] = None
    assert main(["build-eval", "--eval-config", json.dumps(demo["eval"]), "--data-root", str(data_root),
                 "--seed", "1", "--out", str(tmp_path / "e.parquet"), "--out-all", str(tmp_path / "a.parquet")]) == 0
    df = pd.read_parquet(tmp_path / "a.parquet")
    assert df.groupby("set")["eval_id"].nunique().to_dict() == {"self_instruct": 252, "vicuna": 80}
    assert (df.groupby("eval_id").size() >= 2).all()  # human/gpt-3.5 + GPT-4 for every instruction
    assert set(df["ref_label"]) == {"human", "gpt-3.5-turbo:20230327", "gpt4"}
    assert cfg["eval"]["sets"][0]["hub"] == "tatsu-lab/alpaca_eval"


def test_same_seed_gives_byte_identical_files(tmp_path, data_root):
    cfg = check_config(load_config(REPO / "config" / "ci.yaml"), base=REPO)
    one = _data_stage(cfg, data_root, tmp_path / "one", seed=5)
    two = _data_stage(cfg, data_root, tmp_path / "two", seed=5)
    assert one.keys() == two.keys() and "datasets/mix-003.parquet" in one
    assert "datasets/mix-000-rep1.parquet" in one
    for name in one:
        assert one[name] == two[name], name
    other = _data_stage(cfg, data_root, tmp_path / "three", seed=6)
    assert other["datasets/mix-000.parquet"] != one["datasets/mix-000.parquet"]
    pool = pd.read_parquet(tmp_path / "one" / "pool.parquet")
    assert pool["id"].is_unique and set(pool["role"]) == {"train", "unseen"}
    manifest = pd.read_csv(tmp_path / "one" / "datasets" / "mixtures.tsv", sep="\t")
    counts = manifest[[c for c in manifest.columns if c.startswith("n_")]].sum(axis=1)
    assert (counts == 50).all()
