"""MTLD equals lexicalrichness on real responses; texts without word tokens have MTLD 0.0."""

from __future__ import annotations

import logging

import pytest
from conftest import make_frame
from lexicalrichness import LexicalRichness
from lexicalrichness.lexicalrichness import tokenize as lr_tokenize

from instructmining.indicators import registry
from instructmining.indicators.mtld import NO_WORDS_MTLD, mtld, mtld_tokens, tokenize


def test_equals_lexicalrichness_on_real_texts(alpaca):
    texts = [r["output"] for r in alpaca[:400]]
    compared = 0
    for text in texts:
        assert tokenize(text) == lr_tokenize(text)
        if not tokenize(text):
            continue
        ref = LexicalRichness(text).mtld(threshold=0.72)
        assert mtld(text) == pytest.approx(ref, abs=1e-9)
        compared += 1
    assert compared >= 100


def test_wordless_texts_are_defined_not_errors(alpaca):
    wordless = [r["output"] for r in alpaca if not tokenize(r["output"])]
    assert wordless, "the shipped data has digit-only responses (e.g. '15', '23.')"
    for text in wordless + ["15", "23.", "1 2 3\n4 5 6", "", "  "]:
        with pytest.raises(ZeroDivisionError):
            LexicalRichness(text).mtld(threshold=0.72)  # the library has no value here
        assert mtld(text) == NO_WORDS_MTLD == 0.0


def test_edge_cases_match_library():
    for words in (["a"], ["a", "b"], ["the"] * 5, "one two two three three three".split()):
        assert mtld_tokens(words) == pytest.approx(LexicalRichness(words, tokenizer=None).mtld(0.72), abs=1e-12)


def test_indicator_scores_frame_and_logs_wordless(alpaca, caplog):
    rows = alpaca[:5] + [{"instruction": "Add 7 and 8.", "input": "", "output": "15"}]
    df = make_frame(rows)
    with caplog.at_level(logging.INFO, logger="instructmining"):
        scores = registry.create("mtld").score(df)
    assert scores[-1] == 0.0
    assert scores[:-1] == [pytest.approx(LexicalRichness(r["output"]).mtld(0.72)) for r in alpaca[:5]]
    assert "1 of 6 responses have no word tokens" in caplog.text
