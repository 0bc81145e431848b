"""UniEval boolean-QA score: P(Yes)/(P(Yes)+P(No)) on a tiny seq2seq and a tiny causal judge."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import make_frame

from instructmining.errors import ScorerError
from instructmining.indicators import registry
from instructmining.indicators.unieval import (
    CAUSAL_CUE,
    DIMENSIONS,
    QUESTION_TEXT,
    causal_parts,
    causal_sample,
    unieval_input,
    yes_no_ids,
)

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


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


def reference_causal(spec: dict, dimension: str, row) -> float:
    """One full, unpadded pass over head + sample + the dimension's question and cue."""
    tok, model = _load(spec["path"], False)
    head, suffixes, chat = causal_parts(tok)
    if not chat:  # the tiny BPE splits " Yes" as " ", "Y", "es": the shared " " ends the suffix
        yes, no = tok(" Yes", add_special_tokens=False)["input_ids"], tok(" No", add_special_tokens=False)["input_ids"]
        assert yes[0] == no[0] and yes[1] != no[1]
        assert suffixes[dimension] == tok(QUESTION_TEXT[dimension] + CAUSAL_CUE, add_special_tokens=False)["input_ids"] + [yes[0]]
    _, y, n = yes_no_ids(tok, True, chat)
    ids = head + tok(causal_sample(row.instruction, row.input, row.output), add_special_tokens=False)["input_ids"]
    ids += suffixes[dimension]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    return float(torch.sigmoid(logits[y] - logits[n]))


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
    want = [reference_causal(tiny_causal, "coherence", r) for r in rows.itertuples()]
    assert batched == pytest.approx(want, abs=1e-5)
    assert single == pytest.approx(want, abs=1e-5)  # right padding does not leak into the answer


@pytest.fixture(scope="module")
def tiny_chat(tiny_causal, tmp_path_factory) -> dict:
    """The tiny causal judge with a ChatML template (as SmolLM2-Instruct has)."""
    from transformers import AutoTokenizer

    _, model = _load(tiny_causal["path"], False)
    tok = AutoTokenizer.from_pretrained(tiny_causal["path"])  # a copy: the cached one stays template-free
    folder = tmp_path_factory.mktemp("chat")
    model.save_pretrained(str(folder))
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(folder))
    return {"path": str(folder), "kind": "causal"}


@pytest.mark.parametrize("judge", ["tiny_causal", "tiny_chat"])
def test_shared_prefix_equals_three_separate_passes(judge, frame, request):
    """One pass over each sample + three short continuations of its cache = three full passes."""
    spec = request.getfixturevalue(judge)
    rows = frame.iloc[:7]  # different lengths in one batch: right padding inside the cache
    scorer = registry.create("unieval_naturalness", model=spec, batch_size=4, max_length=4096)
    shared = scorer.score_dimensions(rows)
    assert scorer.model_calls == 2  # 7 samples in batches of 4: one prefix pass per batch is counted
    for d in DIMENSIONS:
        want = [reference_causal(spec, d, r) for r in rows.itertuples()]
        assert shared[d] == pytest.approx(want, abs=1e-5)
        assert registry.create(f"unieval_{d}", model=spec, batch_size=3, max_length=4096).score(rows) == \
            pytest.approx(want, abs=1e-5)
    assert shared["coherence"] != shared["naturalness"]  # the question matters


def test_chat_judge_prompt_puts_the_sample_first(tiny_chat):
    tok, _ = _load(tiny_chat["path"], False)
    head, suffixes, chat = causal_parts(tok)
    assert chat
    assert tok.decode(head).endswith("<|im_start|>user\n")
    assert tok.decode(suffixes["coherence"]).startswith("Is this a coherent response")
    assert tok.decode(suffixes["coherence"]).endswith("Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n")


def test_causal_truncation_keeps_the_question(tiny_causal, frame):
    rows = frame.iloc[:3]
    tok, model = _load(tiny_causal["path"], False)
    head, suffixes, _ = causal_parts(tok)
    fixed = len(head) + max(len(s) for s in suffixes.values())  # room for the longest question
    scorer = registry.create("unieval_understandability", model=tiny_causal, batch_size=3, max_length=fixed + 20)
    short = scorer.score(rows)
    _, y, n = yes_no_ids(tok, True)
    for r, got in zip(rows.itertuples(), short, strict=True):
        body = tok(causal_sample(r.instruction, r.input, r.output), add_special_tokens=False)["input_ids"]
        assert len(body) > 20  # the sample is cut at its tail, the question is whole
        with torch.no_grad():
            logits = model(torch.tensor([head + body[:20] + suffixes["understandability"]])).logits[0, -1]
        assert got == pytest.approx(float(torch.sigmoid(logits[y] - logits[n])), abs=1e-5)
    with pytest.raises(ScorerError, match="leaves no room"):
        registry.create("unieval_understandability", model=tiny_causal, max_length=fixed).score(rows)


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
