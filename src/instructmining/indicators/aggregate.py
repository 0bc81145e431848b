"""From per-sample scores to per-dataset indicator rows, and scoring arbitrary user frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InstructMiningError, ScorerError
from ..io import read_parquet
from . import registry
from .base import BATCH_SIZE, MAX_LENGTH, check_columns

DEFAULT_OPTIONS = {"batch_size": BATCH_SIZE, "max_length": MAX_LENGTH, "knn_model_max_length": 256, "device": "cpu",
                   "finetune_view": None}


def make_scorer(name: str, models: dict[str, Any], options: dict[str, Any]) -> Any:
    """A sample-level scorer for `name` with its configured model and batch/length options."""
    info = registry.info(name)
    if info.level != "sample":
        raise InstructMiningError(f"indicator {name!r} is set-level: it has no per-sample scores")
    unknown = set(options) - set(DEFAULT_OPTIONS)
    if unknown:
        raise InstructMiningError(f"unknown scorer option(s) {sorted(unknown)}; known: {sorted(DEFAULT_OPTIONS)}")
    opts = {**DEFAULT_OPTIONS, **options}
    spec = None
    if info.model is not None:
        spec = models.get(info.model) or models.get(registry.FALLBACK_ROLES.get(info.model, ""))
        if not spec:
            raise InstructMiningError(f"indicator {name!r} needs the {info.model!r} model; models given: {sorted(models)}")
    view = opts["finetune_view"]  # {max_length, template}: score the text the finetune sees
    if view is not None and "tokenizer" not in view:
        if not models.get("base"):
            raise InstructMiningError("finetune_view needs the base model's tokenizer: give a 'base' model")
        view = {**view, "tokenizer": models["base"]}
    return registry.create(name, model=spec, batch_size=opts["batch_size"], max_length=opts["max_length"],
                           device=opts["device"], finetune_view=view)


def sample_level_scores(ids: list[str], names: list[str], score_files: Sequence[str | Path]) -> Any:
    """id + one float64 column per sample-level indicator in `names`, read from the score files
    (`<name>.parquet`, one per indicator), rows in the order of `ids`. Set-level names are skipped."""
    import pandas as pd

    registry.validate_names(names)
    by_name = {Path(p).name.removesuffix(".parquet"): Path(p) for p in score_files}
    out = pd.DataFrame({"id": list(ids)})
    for name in names:
        if registry.info(name).level != "sample":
            continue
        path = by_name.get(name)
        if path is None or not path.exists():
            raise InstructMiningError(f"no score file {name}.parquet among {sorted(map(str, score_files))} "
                                      f"(run the score_pool rule for {name!r})")
        scores = read_parquet(path, columns=["id", "score"]).set_index("id")["score"]
        col = out["id"].map(scores)
        if col.isna().any():
            missing = out["id"][col.isna()].iloc[0]
            raise ScorerError(f"{path}: no {name} score for sample {missing}")
        out[name] = col.astype("float64")
    return out


def dataset_row(dataset: str, df: Any, names: list[str], score_files: Sequence[str | Path],
                embeddings: Any = None, embedding_ids: list[str] | None = None) -> Any:
    """One row: `dataset` + one float64 column per name. Sample-level: mean of the cached
    per-sample scores of the dataset's rows; knn<i>: mean i-th-neighbour distance within the
    dataset, from the pool embeddings."""
    import numpy as np
    import pandas as pd

    registry.validate_names(names)
    ids = [str(i) for i in df["id"]]
    if not ids:
        raise InstructMiningError(f"dataset {dataset!r} has no samples")
    per_sample = sample_level_scores(ids, names, score_files)
    row: dict[str, Any] = {"dataset": dataset}
    emb = None
    for name in names:
        info = registry.info(name)
        if info.level == "sample":
            row[name] = float(per_sample[name].mean())
            continue
        if emb is None:
            if embeddings is None or embedding_ids is None:
                raise InstructMiningError(f"indicator {name!r} needs the pool embeddings")
            index = {sid: k for k, sid in enumerate(embedding_ids)}
            missing = [i for i in ids if i not in index]
            if missing:
                raise ScorerError(f"no embedding for sample {missing[0]} (dataset {dataset})")
            emb = np.asarray(embeddings)[[index[i] for i in ids]]
        row[name] = registry.create(name).dataset_value(emb)
    return pd.DataFrame([row]).astype({n: "float64" for n in names})


def _score_in_chunks(scorer: Any, frame: Any, name: str) -> list[float]:
    """scorer.score over chunks of rows with a tqdm bar (model scorers on user data: minutes)."""
    from .base import progress

    size = max(64, 16 * scorer.batch_size)
    values: list[float] = []
    with progress(len(frame), name) as bar:
        for start in range(0, len(frame), size):
            values += scorer.score(frame.iloc[start : start + size])
            bar.update(min(size, len(frame) - start))
    return values


def score_frame(df: Any, names: list[str], models: dict[str, Any], options: dict[str, Any],
                progress: bool = False) -> Any:
    """Per-sample indicator columns computed from scratch for an arbitrary frame with columns
    instruction, input, output (and optionally id): id + one float64 column per name. knn<i> is
    computed within this frame (each row's distance to its i-th neighbour in the frame).

    models: {"base"|"reward"|"embedding"|"unieval"|"perplexity": model spec}; options: batch_size,
    max_length, knn_model_max_length, device. progress: a tqdm bar per model scorer."""
    import pandas as pd

    from ..io import sha256_text
    from .knn import embed_frame

    registry.validate_names(names)
    frame = df.copy()
    if "input" not in frame.columns:
        frame["input"] = ""
    frame["input"] = frame["input"].fillna("")
    if "id" not in frame.columns:
        frame["id"] = [sha256_text(a, b, c) for a, b, c in zip(frame["instruction"], frame["input"], frame["output"], strict=True)]
    check_columns(frame)
    opts = {**DEFAULT_OPTIONS, **options}
    out = pd.DataFrame({"id": frame["id"].astype(str).to_numpy()})
    emb = None
    for name in names:
        info = registry.info(name)
        if info.level == "sample":
            scorer = make_scorer(name, models, options)
            use_bar = progress and info.model is not None
            out[name] = _score_in_chunks(scorer, frame, name) if use_bar else scorer.score(frame)
            continue
        if emb is None:
            spec = models.get("embedding")
            if not spec:
                raise InstructMiningError(f"indicator {name!r} needs the 'embedding' model")
            emb = embed_frame(frame, spec, opts["batch_size"], opts["knn_model_max_length"], opts["device"])
        out[name] = registry.create(name).dataset_distances(emb)
    return out.astype({n: "float64" for n in names})
