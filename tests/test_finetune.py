"""finetune: real 4-bit QLoRA on a tiny Llama, kill + resume, seeds, config errors."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_models import alpaca_rows, tiny_base, write_dataset, write_eval

from instructmining.cli import main
from instructmining.errors import ConfigError
from instructmining.finetune import FinetuneConfig

BASE_CFG = {"method": "qlora", "bits": 4, "compute_dtype": "float32", "lora_r": 4, "lora_alpha": 8,
            "lora_dropout": 0.1, "target_modules": ["q_proj", "v_proj"], "epochs": 2, "batch_size": 4,
            "learning_rate": 0.02, "warmup_ratio": 0.1, "max_length": 96, "save_steps": 3, "seed": 1}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    base = tiny_base(root / "base", hidden=64, layers=1, vocab=300)  # bnb CPU 4-bit kernel: K >= 64
    data = write_dataset(root / "mix-000.parquet", alpaca_rows(16))
    ev = write_eval(root / "eval.parquet", alpaca_rows(3, 400), refs_per=2)
    return {"root": root, "model": json.dumps({"path": str(base)}), "data": data, "eval": ev}


def finetune(setup, name: str, cfg: dict, dataset: str = "mix-000") -> list[str]:
    """The CLI argv of one finetune into root/name/{adapter,checkpoints}."""
    d = setup["root"] / name
    return ["finetune", "--data", str(setup["data"]), "--model", setup["model"], "--config", json.dumps(cfg),
            "--dataset", dataset, "--out", str(d / "adapter"), "--checkpoints", str(d / "checkpoints")]


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_qlora_4bit_trains_reloads_and_changes_eval_loss(setup, capsys):
    import bitsandbytes as bnb

    from instructmining.basemodel import load_model

    _, model = load_model(json.loads(setup["model"]), "qlora", 4, "float32")
    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)  # really quantized

    assert main(finetune(setup, "q4", BASE_CFG)) == 0
    err = capsys.readouterr().err
    assert err.index("resolved arguments") < err.index("method ran")  # arguments are logged first
    assert "method ran: QLoRA 4-bit" in err
    adapter = setup["root"] / "q4" / "adapter"
    metrics = json.loads((adapter / "train_metrics.json").read_text())
    assert metrics["steps"] == 8 and metrics["real_tokens_per_second"] > 0 and metrics["method"] == "qlora"
    assert metrics["loss_history"][-1] < metrics["loss_history"][0]
    lora_b = [v for k, v in adapter_tensors(adapter).items() if "lora_B" in k]
    assert lora_b and all(float(v.abs().max()) > 0 for v in lora_b)  # B starts at zero: it trained

    out_base, out_ft = setup["root"] / "base.json", setup["root"] / "ft.json"
    assert main(["eval-loss", "--eval", str(setup["eval"]), "--model", setup["model"], "--out", str(out_base),
                 "--config", '{"batch_size": 4, "max_length": 96}']) == 0
    assert main(["eval-loss", "--eval", str(setup["eval"]), "--adapter", str(adapter), "--out", str(out_ft),
                 "--config", '{"batch_size": 4, "max_length": 96}']) == 0
    base, ft = json.loads(out_base.read_text()), json.loads(out_ft.read_text())
    assert ft["method"] == "qlora" and ft["dataset"] == "q4" and len(ft["adapter_sha256"]) == 64
    assert ft["provenance"]["seed"] == 1 and "package_version" in ft["provenance"]
    assert ft["num_tokens"] == base["num_tokens"] > 0
    assert abs(ft["loss"] - base["loss"]) > 1e-3
    assert [p["eval_id"] for p in ft["per_instruction"]] == ["e000", "e001", "e002"]


def test_8bit_and_plain_lora_run_and_say_which(setup, capsys):
    cfg = {**BASE_CFG, "epochs": 1, "save_steps": 100}
    assert main(finetune(setup, "q8", {**cfg, "bits": 8})) == 0
    assert "method ran: QLoRA 8-bit" in capsys.readouterr().err
    assert main(finetune(setup, "lora", {**cfg, "method": "lora"})) == 0
    assert "method ran: LoRA (full-precision base)" in capsys.readouterr().err
    meta = json.loads((setup["root"] / "lora" / "adapter" / "finetune_config.json").read_text())
    assert meta["config"]["method"] == "lora" and meta["seed"] == 1


def test_seed_follows_dataset_name(setup):
    cfg = {**BASE_CFG, "epochs": 1, "save_steps": 100, "method": "lora"}
    assert main(finetune(setup, "s1", cfg)) == 0
    assert main(finetune(setup, "s1b", cfg)) == 0
    assert main(finetune(setup, "rep1", cfg, dataset="mix-000-rep1")) == 0
    a, b, c = (adapter_tensors(setup["root"] / n / "adapter") for n in ("s1", "s1b", "rep1"))
    assert all((a[k] == b[k]).all() for k in a)  # same seed: identical adapters
    assert any(not (a[k] == c[k]).all() for k in a)  # rep1: seed + 1
    meta = json.loads((setup["root"] / "rep1" / "adapter" / "finetune_config.json").read_text())
    assert meta["seed"] == 2


def test_killed_run_resumes_and_matches_uninterrupted(setup, capsys):
    import torch

    cfg = {**BASE_CFG, "epochs": 40, "batch_size": 2, "save_steps": 5}  # 320 steps
    total = 320
    argv = finetune(setup, "killed", cfg)
    ckpts = setup["root"] / "killed" / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-m", "instructmining.cli", *argv, "--threads", "1"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(ckpts.glob("step-*/trainer_state.json")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (setup["root"] / "killed" / "adapter").exists()  # no half-written output
    done = max(int(d.name.split("-")[1]) for d in ckpts.glob("step-*") if (d / "trainer_state.json").exists())
    assert 5 <= done < total

    assert main(finetune(setup, "killed", cfg)) == 0
    err = capsys.readouterr().err
    m = re.search(r"resumed from checkpoint \S+ at step (\d+)/320", err)
    assert m and int(m.group(1)) >= done, err[-2000:]
    resumed_at = int(m.group(1))
    metrics = json.loads((setup["root"] / "killed" / "adapter" / "train_metrics.json").read_text())
    assert metrics["resumed_from_step"] == resumed_at and len(metrics["loss_history"]) == total

    assert main(finetune(setup, "straight", cfg)) == 0
    assert "training from step 0/320" in capsys.readouterr().err
    a = adapter_tensors(setup["root"] / "killed" / "adapter")
    b = adapter_tensors(setup["root"] / "straight" / "adapter")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_changed_config_discards_stale_checkpoints(setup, capsys):
    cfg = {**BASE_CFG, "epochs": 1, "method": "lora", "save_steps": 1}
    assert main(finetune(setup, "stale", cfg)) == 0
    capsys.readouterr()
    assert main(finetune(setup, "stale", {**cfg, "learning_rate": 0.01})) == 0
    err = capsys.readouterr().err
    assert "removing stale checkpoint" in err and "training from step 0/" in err


def test_config_errors_name_the_key():
    assert FinetuneConfig.from_dict(BASE_CFG).bits == 4
    with pytest.raises(ConfigError, match="finetune.lr"):
        FinetuneConfig.from_dict({**BASE_CFG, "lr": 0.1})
    with pytest.raises(ConfigError, match="finetune.bits"):
        FinetuneConfig.from_dict({**BASE_CFG, "bits": 3})


def test_missing_base_model_is_a_clear_error(setup, tmp_path, capsys):
    argv = finetune(setup, "nobase", BASE_CFG)
    argv[argv.index("--model") + 1] = json.dumps({"path": str(tmp_path / "absent")})
    assert main(argv) == 2
    assert "absent: no config.json" in capsys.readouterr().err


def test_config_dataclass_mirrors_the_schema(repo):
    import dataclasses

    import yaml

    schema = yaml.safe_load((repo / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["properties"]["finetune"]["properties"]
    fields = {f.name: f for f in dataclasses.fields(FinetuneConfig)}
    assert set(fields) == set(props)
    defaults = FinetuneConfig()
    for name, spec in props.items():
        assert getattr(defaults, name) == spec["default"], name
    src = (repo / "src/instructmining/finetune.py").read_text()
    for name in fields:  # each field carries a docstring line right below it
        assert re.search(rf"\n    {name}: [^\n]+\n    \"\"\"[^\n]+\"\"\"", src), name


def test_length_grouped_batches_cover_each_epoch_once_replay_and_pad_less():
    import random

    from instructmining.finetune import epoch_batches

    rng = random.Random(0)
    lengths = [rng.randint(20, 500) for _ in range(1000)]
    grouped = epoch_batches(lengths, 8, seed=3, epoch=1)
    assert sorted(i for b in grouped for i in b) == list(range(1000))  # each example once
    assert grouped == epoch_batches(lengths, 8, seed=3, epoch=1)  # replayed on resume
    assert grouped != epoch_batches(lengths, 8, seed=3, epoch=2)
    rand = epoch_batches(lengths, 8, seed=3, epoch=1, grouped=False)
    assert len(rand) == len(grouped) == 125

    def padded(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    assert padded(grouped) / sum(lengths) < 1.05 < 1.4 < padded(rand) / sum(lengths)


def test_per_example_losses_in_grouped_batches_equal_unpadded(setup):
    """The response-only, token-weighted loss of each example is the same alone (no padding) and
    inside a length-grouped padded batch."""
    import torch

    from instructmining.basemodel import load_model
    from instructmining.finetune import add_lora, epoch_batches, read_dataset
    from instructmining.prompts import collate, token_nll

    cfg = FinetuneConfig.from_dict({**BASE_CFG, "method": "lora", "lora_dropout": 0.0, "max_length": 2000})
    tok, model = load_model(json.loads(setup["model"]), "lora", 4, "float32")
    model = add_lora(model, cfg).eval()
    examples = read_dataset(setup["data"], tok, cfg)
    lengths = [len(e.input_ids) for e in examples]
    assert len(set(lengths)) > 4  # the batches really are padded
    with torch.no_grad():
        alone = [token_nll(model, collate([e], tok.pad_token_id)) for e in examples]
        for idx in epoch_batches(lengths, 4, seed=1, epoch=0):
            per_ex, ntok = token_nll(model, collate([examples[i] for i in idx], tok.pad_token_id))
            for j, i in enumerate(idx):
                assert int(ntok[j]) == int(alone[i][1][0]) == examples[i].num_response_tokens
                torch.testing.assert_close(per_ex[j], alone[i][0][0], rtol=1e-4, atol=1e-4)


def test_train_metrics_report_real_and_padded_throughput(setup):
    cfg = {**BASE_CFG, "epochs": 1, "save_steps": 100, "method": "lora", "gradient_checkpointing": True}
    assert main(finetune(setup, "speed", cfg)) == 0
    m = json.loads((setup["root"] / "speed" / "adapter" / "train_metrics.json").read_text())
    assert m["timing_warmup_steps"] == 2 and m["timed_steps"] == m["steps"] - 2 == 2
    assert m["padded_tokens_per_second"] >= m["real_tokens_per_second"] > 0
    assert m["padded_tokens_this_run"] >= m["real_tokens_this_run"] > 0 and m["padding_waste"] >= 1
    assert 0 < m["achieved_flops_per_second"] and m["matmul_peak_flops_per_second"] > 0
    assert m["peak_memory_bytes"] > 0 and m["device"] == "cpu" and m["gradient_checkpointing"] is True


def test_changed_base_at_same_path_retrains_from_step_0(setup, tmp_path, capsys):
    """Issue #10: a retrained base (same path) must not resume the old checkpoints, and an adapter
    of the old base must not be evaluated on the new one."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    base = tmp_path / "base"
    shutil.copytree(json.loads(setup["model"])["path"], base)
    cfg = {**BASE_CFG, "epochs": 1, "save_steps": 1}
    argv = finetune(setup, "rebased", cfg)
    argv[argv.index("--model") + 1] = json.dumps({"path": str(base)})
    assert main(argv) == 0
    capsys.readouterr()
    adapter = setup["root"] / "rebased" / "adapter"
    old = adapter_tensors(adapter)
    old_fp = json.loads((adapter / "train_metrics.json").read_text())["base_model_fingerprint"]
    ev = ["eval-loss", "--eval", str(setup["eval"]), "--adapter", str(adapter), "--out", str(tmp_path / "l.json")]
    assert main(ev) == 0
    old_loss = json.loads((tmp_path / "l.json").read_text())

    # "Retrain" the base in place: same path, same file names, other weights.
    weights = base / "model.safetensors"
    state = load_file(str(weights))
    torch.manual_seed(7)
    save_file({k: v + 0.05 * torch.randn_like(v) for k, v in state.items()}, str(weights),
              metadata={"format": "pt"})
    assert main(ev) == 2  # old adapter + new base: refused, not a silently wrong loss
    err = capsys.readouterr().err
    assert f"trained on base model fingerprint {old_fp}" in err and "rerun its finetune" in err

    assert main(argv) == 0
    err = capsys.readouterr().err
    assert re.search(rf"base model changed: fingerprint {old_fp[:12]} != (?!{old_fp[:12]})\w{{12}}", err), err
    assert "training from step 0/" in err and "resumed from checkpoint" not in err
    metrics = json.loads((adapter / "train_metrics.json").read_text())
    assert metrics["resumed_from_step"] == 0 and metrics["base_model_fingerprint"] != old_fp
    new = adapter_tensors(adapter)
    assert any(not torch.equal(old[k], new[k]) for k in old)
    assert main(ev) == 0
    new_loss = json.loads((tmp_path / "l.json").read_text())
    assert new_loss["base_model_fingerprint"] == metrics["base_model_fingerprint"]
    assert new_loss["loss"] != old_loss["loss"]


def with_eval(setup, argv: list[str], name: str, eval_cfg: dict) -> list[str]:
    """argv + scoring D_eval in the finetune job into root/name/loss.json."""
    return [*argv, "--eval", str(setup["eval"]), "--eval-config", json.dumps(eval_cfg),
            "--loss", str(setup["root"] / name / "loss.json")]


def standalone_loss(setup, name: str, eval_cfg: dict, out: Path) -> dict:
    """`instructmining eval-loss` of root/name/adapter: a fresh process state, the base reloaded."""
    assert main(["eval-loss", "--eval", str(setup["eval"]), "--adapter", str(setup["root"] / name / "adapter"),
                 "--config", json.dumps(eval_cfg), "--dataset", "mix-000", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def assert_same_losses(a: dict, b: dict) -> None:
    assert [p["eval_id"] for p in a["per_instruction"]] == [p["eval_id"] for p in b["per_instruction"]]
    for pa, pb in zip(a["per_instruction"], b["per_instruction"], strict=True):
        assert pa["num_tokens"] == pb["num_tokens"] and abs(pa["loss"] - pb["loss"]) <= 1e-5, (pa, pb)
    assert abs(a["loss"] - b["loss"]) <= 1e-5 and a["num_tokens"] == b["num_tokens"]


def test_loss_in_finetune_job_equals_standalone_eval_loss(setup, tmp_path, capsys):
    """Issue #15.5: the finetune job scores D_eval with its trained model still in memory; the
    result must be what `eval-loss` gives after reloading base + adapter (QLoRA 4-bit, dropout on)."""
    ev_cfg = {"batch_size": 3, "max_length": 96}
    assert main(with_eval(setup, finetune(setup, "injob", BASE_CFG), "injob", ev_cfg)) == 0
    err = capsys.readouterr().err
    assert err.count("loaded ") == 1  # one base-model load for training + eval
    inline = json.loads((setup["root"] / "injob" / "loss.json").read_text())
    alone = standalone_loss(setup, "injob", ev_cfg, tmp_path / "alone.json")
    assert_same_losses(inline, alone)
    for key in ("dataset", "method", "adapter", "adapter_sha256", "base_model_fingerprint", "num_references"):
        assert inline[key] == alone[key], key
    assert inline["provenance"]["config"] == alone["provenance"]["config"]
    assert inline["method"] == "qlora" and inline["provenance"]["config"]["eval_loss"] == ev_cfg
    speed = inline["speed"]
    assert speed["real_tokens_per_second"] > 0 and speed["peak_memory_bytes"] > 0
    assert speed["padded_tokens_this_run"] >= speed["real_tokens_this_run"] >= inline["num_tokens"]


def test_changed_eval_setting_reevaluates_without_retraining(setup, tmp_path, capsys):
    """What Snakemake does when the eval_loss: block changes: delete the job's outputs and rerun it.
    The final checkpoint is still there, so the job trains 0 steps and only re-scores D_eval."""
    cfg = {**BASE_CFG, "epochs": 1, "method": "lora"}
    argv = finetune(setup, "reeval", cfg)
    assert main(with_eval(setup, argv, "reeval", {"batch_size": 4, "max_length": 96})) == 0
    first = json.loads((setup["root"] / "reeval" / "loss.json").read_text())
    adapter = setup["root"] / "reeval" / "adapter"
    trained = adapter_tensors(adapter)
    total = json.loads((adapter / "train_metrics.json").read_text())["steps"]
    capsys.readouterr()

    import shutil

    shutil.rmtree(adapter)
    (setup["root"] / "reeval" / "loss.json").unlink()
    new_cfg = {"batch_size": 2, "max_length": 48}
    assert main(with_eval(setup, argv, "reeval", new_cfg)) == 0
    err = capsys.readouterr().err
    assert re.search(rf"resumed from checkpoint \S+ at step {total}/{total}", err), err[-2000:]
    metrics = json.loads((adapter / "train_metrics.json").read_text())
    assert metrics["resumed_from_step"] == total == metrics["steps"] and metrics["real_tokens_this_run"] == 0
    again = adapter_tensors(adapter)
    assert again.keys() == trained.keys() and all(bool((again[k] == trained[k]).all()) for k in trained)
    second = json.loads((setup["root"] / "reeval" / "loss.json").read_text())
    assert second["provenance"]["config"]["eval_loss"] == new_cfg
    assert second["num_tokens"] < first["num_tokens"]  # really re-scored, with the shorter max_length
    assert second["adapter_sha256"] == first["adapter_sha256"]
    assert_same_losses(second, standalone_loss(setup, "reeval", new_cfg, tmp_path / "alone.json"))


def test_eval_without_loss_path_is_an_error(setup, capsys):
    argv = [*finetune(setup, "noloss", BASE_CFG), "--eval", str(setup["eval"])]
    assert main(argv) == 2
    assert "--eval and --loss together" in capsys.readouterr().err
    assert not (setup["root"] / "noloss").exists()
