"""Shared test setup: never touch the network (a hub id fails fast instead of retrying ~27 s)."""

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("INSTRUCTMINING_DATA_ROOT", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not DATA_ROOT.is_dir():
        pytest.fail(f"shared data not found at {DATA_ROOT} (set INSTRUCTMINING_DATA_ROOT)")
    return DATA_ROOT


def pytest_collection_modifyitems(config, items):
    """SLURM tests last: they install slurm-client, after which every snakemake start pays
    scontrol's retries unless a controller runs (see docs/slurm.md)."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)
