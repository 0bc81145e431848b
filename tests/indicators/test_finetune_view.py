"""indicators.truncate_to_finetune (issue #16 part 3): scorers see each sample as the finetune
trains on it, the prompt's end and the response's start that finetune.max_length keeps."""

import pytest

from instructmining.indicators.aggregate import make_scorer
from instructmining.indicators.cache import score_with_cache
from instructmining.indicators.models import load_tokenizer
from instructmining.prompts import encode_example, finetune_view, format_prompt


def _long(frame):
    """The frame with long responses and instructions (so max_length 48 truncates them)."""
    out = frame.copy()
    out["output"] = out["output"] + (" and then some more words follow" * 12)
    out["instruction"] = ("Please read carefully. " * 6) + out["instruction"]
    return out


def test_view_keeps_what_encode_example_keeps(tiny_causal, frame):
    tok = load_tokenizer(tiny_causal)
    for row in _long(frame).itertuples():
        enc = encode_example(tok, format_prompt(row.instruction, row.input), row.output, 48)
        ins, inp, out = finetune_view(tok, row.instruction, row.input, row.output, 48)
        kept_response = enc.num_response_tokens - (enc.labels[-1] == tok.eos_token_id)
        assert len(tok(out, add_special_tokens=False)["input_ids"]) == pytest.approx(kept_response, abs=1)
        assert row.output.startswith(out[:20]) and len(out) < len(row.output)
        assert row.instruction.endswith(ins[-10:]) and len(ins) < len(row.instruction)
        if not row.input:  # the kept prompt: the instruction's end + the "### Response:" tail
            kept_prompt = len(enc.input_ids) - enc.num_response_tokens
            tail = len(tok("\n\n### Response:\n", add_special_tokens=False)["input_ids"])
            assert abs(len(tok(ins, add_special_tokens=False)["input_ids"]) + tail - kept_prompt) <= 2


def test_short_samples_are_unchanged(tiny_causal, frame):
    tok = load_tokenizer(tiny_causal)
    row = frame.iloc[0]
    assert finetune_view(tok, row.instruction, row.input, row.output, 4096) == (row.instruction, row.input, row.output)


def test_lengths_count_the_viewed_tokens_and_the_cache_keeps_them_apart(tiny_causal, frame, tmp_path):
    data = _long(frame)
    view = {"max_length": 48, "template": "alpaca"}
    full = make_scorer("output_length", {"base": tiny_causal}, {})
    cut = make_scorer("output_length", {"base": tiny_causal}, {"finetune_view": view})
    full_values, cut_values = full.score(data), cut.score(data)
    assert max(cut_values) <= 48 and min(full_values) > 48  # every response is cut to the budget
    assert full.identity() != cut.identity() and cut.identity()["finetune_view"]["max_length"] == 48
    # one cache folder, two scorer keys: the viewed scores never answer for the full ones
    assert score_with_cache(cut, data, tmp_path) == cut_values
    assert score_with_cache(full, data, tmp_path) == full_values


def test_view_needs_the_base_tokenizer(frame):
    from instructmining.errors import InstructMiningError

    with pytest.raises(InstructMiningError, match="base model's tokenizer"):
        make_scorer("mtld", {}, {"finetune_view": {"max_length": 48, "template": "alpaca"}})


def test_the_workflow_passes_the_view_to_every_sample_level_score_job(repo):
    """Demo (truncate_to_finetune: true): each score job gets finetune.max_length, the template and
    the base tokenizer, reads the base model folder (mtld too), and rule.json records the view for
    `instructmining select`; the paper scores full text."""
    from instructmining import score_plan
    from instructmining.config import check_config, load_config

    demo = check_config(load_config(repo / "config" / "config.yaml"), base=repo)
    view = score_plan.score_view(demo)
    assert view == {"max_length": demo["finetune"]["max_length"], "template": "alpaca",
                    "tokenizer": demo["base_model"]["model"]}
    assert "results/models/base" in score_plan.score_job(demo, "mtld").model_dirs
    assert score_plan.score_job(demo, "knn6").model_dirs == []  # set-level: from the embeddings
    assert score_plan.quality_rule_options(demo)["finetune_view"] == {"max_length": 128, "template": "alpaca"}
    paper = check_config(load_config(repo / "config" / "paper.yaml"), base=repo)
    assert score_plan.score_view(paper) is None and "finetune_view" not in score_plan.quality_rule_options(paper)
    assert score_plan.score_job(paper, "mtld").model_dirs == []
