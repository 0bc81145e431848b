"""Registry contract: duplicates raise, unknown names get did-you-mean + the list, no torch at ls."""

from __future__ import annotations

import subprocess
import sys

import pytest

from instructmining.errors import InstructMiningError
from instructmining.indicators import registry, validate_names


def test_duplicate_registration_raises():
    registry.info("mtld")  # make sure the real one is registered

    with pytest.raises(registry.DuplicateIndicatorError, match="already registered"):

        @registry.register("mtld", version=1, level="sample", sign=0, model=None)
        class Impostor:
            """Not MTLD."""

    assert registry.info("mtld").target == "instructmining.indicators.mtld:MTLD"


def test_unknown_name_did_you_mean_and_list():
    with pytest.raises(InstructMiningError) as exc:
        validate_names(["output_length", "rewrad"])
    msg = str(exc.value)
    assert "'rewrad'" in msg and "Did you mean 'reward'" in msg
    for name in registry.LAZY:
        assert name in msg


def test_knn_family_and_bad_knn():
    assert registry.create("knn6").i == 6
    assert registry.create("knn12").i == 12
    assert registry.info("knn3").level == "set"
    with pytest.raises(InstructMiningError, match="Did you mean"):
        validate_names(["knn0"])


def test_duplicate_name_in_config_list():
    with pytest.raises(InstructMiningError, match="listed twice"):
        validate_names(["mtld", "mtld"])


def test_every_lazy_entry_registers_its_class():
    infos = {i.name: i for i in registry.all_infos()}
    assert set(infos) == set(registry.LAZY)
    for name, target in registry.LAZY.items():
        assert infos[name].target == target
        assert infos[name].summary, f"{name} needs a docstring summary"


def test_ls_does_not_import_torch():
    code = ("import sys, io, contextlib\nfrom instructmining.cli import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n    rc = main(['ls', 'indicators'])\n"
            "assert rc == 0 and 'unieval_coherence' in buf.getvalue(), buf.getvalue()\n"
            "print(sorted(m for m in ('torch', 'transformers', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
