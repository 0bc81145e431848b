"""docs/indicators.md is generated from the docstrings and must be in sync."""

from pathlib import Path

from instructmining.indicators.docs import render


def test_docs_in_sync():
    path = Path(__file__).resolve().parents[2] / "docs" / "indicators.md"
    assert path.read_text() == render(), "regenerate: python -m instructmining.indicators.docs > docs/indicators.md"
    text = path.read_text()
    assert "MTLD = 0.0 when a text has no word tokens" in " ".join(text.split()) and "knn<i>" in text
