"""InstructMining indicators: per-sample scorers (cached over the pool) and set-level indicators.

Public API (imports are lazy, so importing this package never imports torch):
validate_names, sample_level_scores, knn_distances, score_frame. See docs/indicators.md."""

from __future__ import annotations

from typing import Any


def validate_names(names: list[str]) -> None:
    """Raise InstructMiningError (did-you-mean + the list) if a name is not a registered indicator."""
    from .registry import validate_names as _validate

    _validate(list(names))


def sample_level_scores(ids: list[str], names: list[str], score_files: list[str]) -> Any:
    """DataFrame: id + one float64 column per sample-level indicator, from its `<name>.parquet` score file."""
    from .aggregate import sample_level_scores as _sls

    return _sls(ids, names, score_files)


def knn_distances(embeddings: Any, i: int) -> Any:
    """Per-sample Euclidean distance to the i-th nearest neighbour within the set (self excluded)."""
    from .knn import knn_distances as _knn

    return _knn(embeddings, i)


def score_frame(df: Any, names: list[str], models: dict[str, Any], options: dict[str, Any],
                progress: bool = False) -> Any:
    """Per-sample indicator columns for an arbitrary frame (instruction, input, output), from scratch."""
    from .aggregate import score_frame as _sf

    return _sf(df, names, models, options, progress=progress)


__all__ = ["validate_names", "sample_level_scores", "knn_distances", "score_frame"]
