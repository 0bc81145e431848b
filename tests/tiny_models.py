"""Tiny models and datasets for the finetune / eval / pretrain tests (built in-test, no hub)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

DATA_ROOT = Path(os.environ.get("INSTRUCTMINING_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
ALPACA = DATA_ROOT / "pool" / "alpaca" / "cherry_alpaca_5_percent.json"


def alpaca_rows(n: int, offset: int = 0) -> list[dict]:
    """n Alpaca records (instruction, input, output) from the shared data."""
    return json.loads(ALPACA.read_text())[offset : offset + n]


def write_dataset(path: Path, rows: list[dict]) -> Path:
    """A results/datasets/{dataset}.parquet with the pool's columns."""
    df = pd.DataFrame([{"id": f"s{i:04d}", "source": "alpaca", "role": "train",
                        "instruction": r["instruction"], "input": r.get("input", ""),
                        "output": r["output"]} for i, r in enumerate(rows)])
    df.to_parquet(path, index=False)
    return path


def write_eval(path: Path, rows: list[dict], refs_per: int = 2) -> Path:
    """A results/eval/eval.parquet: each instruction with `refs_per` references."""
    out = []
    for i, r in enumerate(rows):
        for k in range(refs_per):
            ref = r["output"] if k == 0 else r["output"][: max(8, len(r["output"]) // 2)]
            out.append({"eval_id": f"e{i:03d}", "set": "self_instruct", "instruction": r["instruction"],
                        "input": r.get("input", ""), "reference": ref, "ref_label": f"ref{k}"})
    pd.DataFrame(out).to_parquet(path, index=False)
    return path


def tiny_base(folder: Path, hidden: int = 32, layers: int = 1, vocab: int = 400) -> Path:
    """A tiny random LlamaForCausalLM + a BPE tokenizer trained here, saved as an HF folder."""
    from instructmining.pretrain import build_llama, train_tokenizer

    texts = [f"{r['instruction']}\n{r.get('input', '')}\n{r['output']}" for r in alpaca_rows(200)]
    tok = train_tokenizer(texts, vocab)
    model = build_llama(tok, hidden, layers, 2, 128, seed=0)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder
