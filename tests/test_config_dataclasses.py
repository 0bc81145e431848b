"""Each stage's typed config dataclass mirrors its block of src/instructmining/schemas/config.schema.yaml:
the same keys, the same defaults, and a docstring line per field (one fact, one place: a default
changed on one side fails here)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from instructmining.evaluate import EvalLossConfig
from instructmining.finetune import FinetuneConfig
from instructmining.indicators.reward_train import RewardTrainingConfig
from instructmining.pretrain import PretrainConfig

CASES = [  # (dataclass, schema path, the module that defines it)
    (FinetuneConfig, ("finetune",), "src/instructmining/finetune.py"),
    (EvalLossConfig, ("eval_loss",), "src/instructmining/evaluate.py"),
    (PretrainConfig, ("base_model", "pretrain"), "src/instructmining/pretrain.py"),
    (RewardTrainingConfig, ("indicators", "reward_training"), "src/instructmining/indicators/reward_train.py"),
]


def _plain(value):
    """Tuples (frozen dataclass fields) compare as the schema's lists."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize(("cls", "where", "module"), CASES, ids=[c[0].__name__ for c in CASES])
def test_config_dataclass_mirrors_the_schema(repo, cls, where, module):
    node = yaml.safe_load((repo / "src/instructmining/schemas/config.schema.yaml").read_text())
    for key in where:
        node = node["properties"][key]
    props = node["properties"]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(fields) == set(props)
    defaults = cls()
    for name, spec in props.items():
        assert _plain(getattr(defaults, name)) == spec["default"], name
    assert cls.from_dict({}) == defaults
    src = (repo / module).read_text()
    for name in fields:  # each field carries a docstring line right below it
        assert re.search(rf"\n    {name}: [^\n]+\n    \"\"\"[^\n]+\"\"\"", src), name


@pytest.mark.parametrize("cls", [c[0] for c in CASES], ids=[c[0].__name__ for c in CASES])
def test_config_dataclass_rejects_an_unknown_key(cls):
    with pytest.raises(Exception, match="no_such_key"):
        cls.from_dict({"no_such_key": 1})
