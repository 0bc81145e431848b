"""The fitted rule's per-sample value on the visible quality ladder (issue #9, "Must show").

Takes the validity prompts of a finished run (the reward model's held-out AlpacaEval prompts, no
eval or pool prompt: docs/indicator_validity.md), writes every answer of the five answer sets to
one JSONL file, scores it with the real user command

    instructmining select --rule <rule.json> --data <answers.jsonl> --n 1.0 --with-scores

and prints, per answer set, the mean predicted log loss (lower = the rule thinks better), the
Spearman correlation of that mean with the set's known quality rank, and the pairwise accuracy of
the per-sample prediction on same-prompt pairs of different rank (ties 0.5).

    python benchmarks/rule_on_ladder.py --config config/config.yaml --rule results/analysis/rule.json \
        --out results/analysis/rule_ladder
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from instructmining import plan
from instructmining.config import check_config, load_config, resolve_data_root
from instructmining.data import eval_keys
from instructmining.io import read_parquet
from instructmining.selection import PREDICTION_COLUMN
from instructmining.validity_data import answer_frame, ladder_pairs, validity_prompts

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--rule", default="results/analysis/rule.json")
    ap.add_argument("--out", default="results/analysis/rule_ladder")
    args = ap.parse_args()

    cfg = check_config(load_config(args.config), base=REPO)
    data_root = resolve_data_root(cfg["data_root"], REPO)
    outputs = plan.validity_outputs(cfg)
    pool = read_parquet(plan.POOL, columns=["instruction"])
    evals = read_parquet(plan.EVAL_ALL, columns=["instruction", "input"]).fillna({"input": ""})
    prompts = validity_prompts(data_root, outputs, list(pool["instruction"]), eval_keys(evals),
                               plan.validity_split(cfg), cfg["validity"]["max_prompts"], cfg["seed"])
    answers = answer_frame(data_root, outputs, prompts).reset_index(drop=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "answers.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for k, row in answers.iterrows():
            fh.write(json.dumps({"instruction": row["instruction"], "input": row["input"], "output": row["output"],
                                 "ladder_row": int(k)}) + "\n")
    scored = out / "scored.jsonl"
    subprocess.run(["instructmining", "select", "--rule", args.rule, "--data", str(data), "--n", "1.0",
                    "--with-scores", "--out", str(scored)], check=True)
    rows = [json.loads(line) for line in scored.read_text(encoding="utf-8").splitlines()]
    pred = pd.Series({r["ladder_row"]: r[PREDICTION_COLUMN] for r in rows})
    # select drops exact duplicate records (two answer sets giving one prompt the same answer):
    # those answers are left out here too, with the pairs they would form.
    dropped = len(answers) - len(pred)
    answers = answers.loc[sorted(pred.index)].copy()
    answers["predicted_log_loss"] = pred.sort_index().to_numpy()

    levels = answers.groupby(["set", "rank"], as_index=False)["predicted_log_loss"].mean().sort_values("rank")
    rho = spearmanr(-levels["predicted_log_loss"], -levels["rank"]).statistic  # + : better sets predicted better
    wins = []
    for better, worse in ladder_pairs(answers)[["better", "worse"]].itertuples(index=False):
        a, b = answers.loc[better, "predicted_log_loss"], answers.loc[worse, "predicted_log_loss"]
        wins.append(0.5 if a == b else float(a < b))
    result = {"rule": args.rule, "indicators": json.loads(Path(args.rule).read_text())["indicators"],
              "prompts": len(prompts), "answers": len(answers), "duplicates_dropped": dropped, "pairs": len(wins),
              "pairwise_accuracy": float(np.mean(wins)), "ladder_spearman": float(rho),
              "levels": levels.to_dict(orient="records")}
    (out / "rule_ladder.json").write_text(json.dumps(result, indent=2) + "\n")
    print(levels.to_string(index=False))
    print(f"rule {result['indicators']}: ladder Spearman {rho:.3f} over {len(levels)} sets "
          f"(tie group shares a rank); pairwise accuracy {result['pairwise_accuracy']:.3f} on {len(wins)} pairs, "
          f"{len(prompts)} prompts ({dropped} duplicate answer(s) dropped by select)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
