"""eval-loss: response-only masking, token weighting, per-instruction pooling, NaN is an error."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import alpaca_rows, tiny_base, write_eval

from instructmining.errors import InstructMiningError
from instructmining.evaluate import eval_loss, read_eval
from instructmining.prompts import IGNORE_INDEX, collate, encode_example, format_prompt, token_nll


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_base(tmp_path_factory.mktemp("base"), hidden=32, layers=1, vocab=300)
    return AutoTokenizer.from_pretrained(str(folder)), AutoModelForCausalLM.from_pretrained(str(folder))


def test_prompt_tokens_are_masked(tiny):
    tok, _ = tiny
    prompt = format_prompt("Name a color.", "")
    enc = encode_example(tok, prompt, "Blue is a color.", max_length=512)
    n_prompt = 1 + len(tok(prompt, add_special_tokens=False)["input_ids"])  # + BOS
    n_resp = len(tok("Blue is a color.", add_special_tokens=False)["input_ids"]) + 1  # + EOS
    assert enc.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert enc.labels[n_prompt:] == enc.input_ids[n_prompt:]
    assert enc.num_response_tokens == n_resp
    assert enc.input_ids[-1] == tok.eos_token_id


def test_with_and_without_input_templates():
    assert "### Input:\nctx" in format_prompt("Do it.", "ctx")
    assert "### Input" not in format_prompt("Do it.", "")
    assert "### Input" not in format_prompt("Do it.", None)
    assert "### Input" not in format_prompt("Do it.", float("nan"))  # a missing parquet value
    with pytest.raises(ValueError, match="unknown prompt template"):
        format_prompt("x", "", template="vicuna")


def test_truncation_keeps_the_response(tiny):
    tok, _ = tiny
    enc = encode_example(tok, format_prompt("word " * 400, ""), "short answer here", max_length=64)
    assert len(enc.input_ids) <= 64
    # A prompt longer than the budget must not crowd the reference out of the scored tokens.
    assert enc.num_response_tokens == len(tok("short answer here", add_special_tokens=False)["input_ids"]) + 1


def test_prompt_positions_add_no_loss_terms(tiny):
    tok, model = tiny
    a = encode_example(tok, format_prompt("Name a color.", ""), "Blue.", 128)
    b = encode_example(tok, format_prompt("Write a long essay about oceans.", "with input"), "Blue.", 128)
    per_a, n_a = token_nll(model, collate([a], tok.pad_token_id))
    # Reference: full logits, cross entropy over every position whose label is a response token.
    batch = collate([a], tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"]).logits[0, :-1]
    target = batch["labels"][0, 1:]
    ref = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum")
    assert per_a.item() == pytest.approx(ref.item(), rel=1e-5)
    # Labels unmasked on the prompt would add terms: the masked loss must be strictly smaller.
    full = torch.nn.functional.cross_entropy(logits, batch["input_ids"][0, 1:], reduction="sum")
    assert full.item() > per_a.item() + 1.0
    # A different prompt changes the context but not which tokens are counted.
    _, n_b = token_nll(model, collate([b], tok.pad_token_id))
    assert int(n_a) == int(n_b) == a.num_response_tokens


def test_padding_does_not_change_per_example_loss(tiny):
    tok, model = tiny
    short = encode_example(tok, format_prompt("Hi.", ""), "Hello there.", 128)
    long_ = encode_example(tok, format_prompt("Explain rain.", ""), "Water falls from clouds " * 5, 128)
    alone, _ = token_nll(model, collate([short], tok.pad_token_id))
    both, _ = token_nll(model, collate([short, long_], tok.pad_token_id))
    assert both[0].item() == pytest.approx(alone[0].item(), rel=1e-4)


def test_eval_loss_is_token_weighted(tiny, tmp_path):
    tok, model = tiny
    path = write_eval(tmp_path / "eval.parquet", alpaca_rows(4, 500), refs_per=2)
    df = read_eval(path)
    res = eval_loss(model, tok, df, "alpaca", batch_size=3, max_length=96)
    per = res["per_instruction"]
    assert len(per) == 4 and res["num_references"] == 8
    assert res["num_tokens"] == sum(p["num_tokens"] for p in per)
    # Token-weighted mean: instructions with more reference tokens weigh more.
    assert res["loss"] == pytest.approx(sum(p["loss"] * p["num_tokens"] for p in per) / res["num_tokens"])
    expect = 0
    for r in df.itertuples():
        expect += encode_example(tok, format_prompt(r.instruction, r.input), r.reference, 96).num_response_tokens
    assert res["num_tokens"] == expect
    # Throughput of the scoring (speed.Throughput): every batch counted, real = unpadded tokens.
    lengths = [len(encode_example(tok, format_prompt(r.instruction, r.input), r.reference, 96).input_ids)
               for r in df.itertuples()]
    speed = res["speed"]
    assert speed["real_tokens_this_run"] == sum(lengths) and speed["timed_steps"] == 3  # 8 refs / 3
    assert speed["padded_tokens_this_run"] >= sum(lengths) and speed["real_tokens_per_second"] > 0
    assert speed["peak_memory_bytes"] > 0 and speed["device"] == "cpu"
    # Batch size changes padding only.
    again = eval_loss(model, tok, df, "alpaca", batch_size=8, max_length=96)
    assert again["loss"] == pytest.approx(res["loss"], rel=1e-5)


def test_nan_loss_is_an_error(tiny, tmp_path):
    import copy

    tok, model = tiny
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.model.norm.weight.fill_(math.nan)
    df = read_eval(write_eval(tmp_path / "eval.parquet", alpaca_rows(2, 500)))
    with pytest.raises(InstructMiningError, match="non-finite"):
        eval_loss(broken, tok, df, "alpaca", batch_size=4, max_length=64)


def test_eval_file_errors_name_the_field(tmp_path):
    import pandas as pd

    from instructmining.errors import DataError

    p = tmp_path / "eval.parquet"
    pd.DataFrame({"eval_id": ["a"], "instruction": ["x"], "input": [""]}).to_parquet(p)
    with pytest.raises(DataError, match="reference"):
        read_eval(p)
    pd.DataFrame({"eval_id": ["a"], "instruction": ["x"], "input": [""], "reference": [" "]}).to_parquet(p)
    with pytest.raises(DataError, match="eval_id=a"):
        read_eval(p)
