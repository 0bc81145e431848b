"""UniEval boolean-QA score: P(Yes)/(P(Yes)+P(No)) on a tiny seq2seq and a tiny causal judge."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import make_frame

from instructmining.errors import ScorerError
from instructmining.indicators import registry
from instructmining.indicators.unieval import CAUSAL_CUE, unieval_input, yes_no_ids


@functools.lru_cache
def _load(path: str, seq2seq: bool):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    return AutoTokenizer.from_pretrained(path), cls.from_pretrained(path).eval()


def reference_seq2seq(spec: dict, text: str) -> float:
    """UniEval's own recipe, unbatched: softmax over the vocabulary at the first decoder step."""
    tok, model = _load(spec["path"], True)
    yes, no = tok("Yes")["input_ids"][0], tok("No")["input_ids"][0]
    enc = tok(text, return_tensors="pt")
    dec = torch.tensor([[model.config.decoder_start_token_id]])
    with torch.no_grad():
        probs = model(**enc, decoder_input_ids=dec).logits[0, 0].softmax(-1)
    return float(probs[yes] / (probs[yes] + probs[no]))


def reference_causal(spec: dict, text: str) -> float:
    tok, model = _load(spec["path"], False)
    yes, no = tok(" Yes", add_special_tokens=False)["input_ids"], tok(" No", add_special_tokens=False)["input_ids"]
    assert yes[0] == no[0] and yes[1] != no[1]  # the tiny BPE splits " Yes" as " ", "Y", "es"
    ids = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"] + tok(CAUSAL_CUE, add_special_tokens=False)["input_ids"]
    ids, yes, no = ids + [yes[0]], yes[1], no[1]
    with torch.no_grad():
        probs = model(torch.tensor([ids])).logits[0, -1].softmax(-1)
    return float(probs[yes] / (probs[yes] + probs[no]))


@pytest.mark.parametrize("dimension", ["naturalness", "coherence", "understandability"])
def test_seq2seq_judge_matches_unieval_recipe(tiny_t5, frame, dimension):
    rows = frame.iloc[:6]
    scorer = registry.create(f"unieval_{dimension}", model=tiny_t5, batch_size=4, max_length=4096)  # no truncation
    got = scorer.score(rows)
    want = [reference_seq2seq(tiny_t5, unieval_input(dimension, r.instruction, r.input, r.output))
            for r in rows.itertuples()]
    assert got == pytest.approx(want, abs=1e-5)
    assert all(0.0 < p < 1.0 for p in got)
    assert scorer.model_calls == 2  # 6 samples in batches of 4


def test_causal_judge_matches_reference_and_batching(tiny_causal, frame):
    rows = frame.iloc[:5]
    batched = registry.create("unieval_coherence", model=tiny_causal, batch_size=5, max_length=4096).score(rows)
    single = registry.create("unieval_coherence", model=tiny_causal, batch_size=1, max_length=4096).score(rows)
    want = [reference_causal(tiny_causal, unieval_input("coherence", r.instruction, r.input, r.output))
            for r in rows.itertuples()]
    assert batched == pytest.approx(want, abs=1e-5)
    assert single == pytest.approx(want, abs=1e-5)  # right padding does not leak into the answer


def test_judge_kind_is_part_of_the_identity(tiny_causal, tiny_t5):
    a = registry.create("unieval_naturalness", model=tiny_causal).identity()
    b = registry.create("unieval_naturalness", model=tiny_t5).identity()
    assert a["judge_kind"] == "causal" and b["judge_kind"] == "seq2seq" and a != b


def test_empty_response_and_unloadable_judge_raise(tiny_t5, tmp_path):
    df = make_frame([{"instruction": "Say hi", "input": "", "output": "   "}])
    with pytest.raises(ScorerError, match=f"sample {df['id'][0]}: empty response"):
        registry.create("unieval_naturalness", model=tiny_t5).score(df)
    (tmp_path / "broken").mkdir()
    bad = make_frame([{"instruction": "Say hi", "input": "", "output": "hi"}])
    with pytest.raises(ScorerError, match="cannot load"):
        registry.create("unieval_naturalness", model={"path": str(tmp_path / "broken"), "kind": "seq2seq"}).score(bad)


def test_yes_no_must_differ(tiny_causal):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_causal["path"])
    prefix, y, n = yes_no_ids(tok, causal=True)
    assert len(prefix) == 1 and y != n

    class Same:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [5, 6]}

    with pytest.raises(ScorerError, match="cannot tell"):
        yes_no_ids(Same(), causal=True)
