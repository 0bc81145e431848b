"""Perplexity, reward and lengths against direct model computations; loud failures."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_frame

from instructmining.errors import ScorerError
from instructmining.indicators import registry
from instructmining.prompts import encode_example, format_prompt


def test_perplexity_equals_hf_loss(tiny_causal, frame):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = frame.iloc[:6]
    got = registry.create("perplexity", model=tiny_causal, batch_size=4, max_length=96).score(rows)
    tok = AutoTokenizer.from_pretrained(tiny_causal["path"])
    model = AutoModelForCausalLM.from_pretrained(tiny_causal["path"]).eval()
    want = []
    for r in rows.itertuples():
        e = encode_example(tok, format_prompt(r.instruction, r.input), r.output, 96)
        with torch.no_grad():
            loss = model(torch.tensor([e.input_ids]), labels=torch.tensor([e.labels])).loss
        want.append(math.exp(float(loss)))
    assert got == pytest.approx(want, rel=1e-4)


def test_perplexity_empty_response_names_sample(tiny_causal):
    df = make_frame([{"instruction": "Say hi", "input": "", "output": ""}])
    with pytest.raises(ScorerError, match=f"sample {df['id'][0]}: empty response"):
        registry.create("perplexity", model=tiny_causal).score(df)


def test_reward_equals_model_logit(tiny_reward, frame):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = frame.iloc[:5]
    got = registry.create("reward", model=tiny_reward, batch_size=2, max_length=64).score(rows)
    tok = AutoTokenizer.from_pretrained(tiny_reward["path"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward["path"]).eval()
    for value, r in zip(got, rows.itertuples(), strict=True):
        prompt = f"{r.instruction}\n\n{r.input}" if r.input else r.instruction
        enc = tok(prompt, r.output, truncation="longest_first", max_length=64, return_tensors="pt")
        with torch.no_grad():
            assert value == pytest.approx(float(model(**enc).logits[0, 0]), abs=1e-5)


def test_reward_missing_model_is_a_scorer_error(tmp_path, frame):
    with pytest.raises(ScorerError, match="does not exist"):
        registry.create("reward", model={"path": str(tmp_path / "nope"), "kind": "reward"}).score(frame.iloc[:1])
    with pytest.raises(ScorerError, match="needs a model spec"):
        registry.create("reward", model=None)


def test_lengths_count_base_tokens(tiny_causal, frame):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_causal["path"])
    rows = frame.iloc[:8]
    out_len = registry.create("output_length", model=tiny_causal).score(rows)
    in_len = registry.create("input_length", model=tiny_causal).score(rows)
    assert out_len == [len(tok(o, add_special_tokens=False)["input_ids"]) for o in rows["output"]]
    assert in_len == [len(tok(f"{i}\n\n{x}" if x else i, add_special_tokens=False)["input_ids"])
                      for i, x in zip(rows["instruction"], rows["input"], strict=True)]
    assert registry.create("output_length", model=tiny_causal).score(
        make_frame([{"instruction": "x", "input": "", "output": ""}])) == [0.0]


def test_non_text_field_names_sample(frame):
    df = frame.iloc[:2].copy()
    df.loc[df.index[1], "output"] = None
    with pytest.raises(ScorerError, match=f"sample {df['id'].iloc[1]}: field 'output'"):
        registry.create("mtld").score(df)
