"""KNN-i: distance to the i-th nearest neighbour in sentence-embedding space (a set-level
indicator: computed within each dataset, never over the pool).

Embeddings are L2-normalized sentence embeddings (MiniLM in the demo) of the sample text
(instruction, input, response; see `embed_text`). The distance is the Euclidean distance between
unit vectors, sqrt(2 - 2 cos). A dataset's KNN-i is the mean over its samples of the distance to
their i-th nearest neighbour inside the same dataset (the sample itself excluded; a duplicate
sample in the dataset is a neighbour at distance 0). `instructmining score knn<i>` also writes a
per-sample score file over the whole pool (distance within the pool), used only to bin the pool
by KNN-i (uni-knn<i>-k datasets)."""

from __future__ import annotations

from typing import Any

from ..errors import ScorerError
from .base import prompt_text
from .registry import register

# Rows per block of the distance computation: bounds memory at block x n floats.
BLOCK = 2048
EMBED_TEXT_VERSION = "instruction-input-output-v1"


def embed_text(instruction: str, input_: str | None, output: str) -> str:
    """The text embedded for KNN: the instruction (and input) and the response."""
    return f"{prompt_text(instruction, input_)}\n\n{output}"


def knn_distances(embeddings: Any, i: int) -> Any:
    """Per-row Euclidean distance to the i-th nearest other row (self excluded), exact.

    Blocked Gram matmul + argpartition: the cost is one n x n x d matmul (the floor for exact
    search), memory BLOCK x n. Rows need not be normalized."""
    import numpy as np

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ScorerError(f"knn{i}: embeddings must be a 2-d array, got shape {x.shape}")
    n = x.shape[0]
    if i < 1:
        raise ScorerError(f"knn: i must be >= 1, got {i}")
    if n <= i:
        raise ScorerError(f"knn{i}: a set of {n} samples has no {i}-th neighbour (needs at least {i + 1})")
    sq = np.einsum("ij,ij->i", x, x)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        d2 = sq[start:stop, None] + sq[None, :] - 2.0 * (x[start:stop] @ x.T)
        np.maximum(d2, 0.0, out=d2)
        # Exclude self by index (not by value: a duplicate sample is a genuine neighbour).
        d2[np.arange(stop - start), np.arange(start, stop)] = np.inf
        kth = np.partition(d2, i - 1, axis=1)[:, i - 1]
        out[start:stop] = np.sqrt(kth)
    return out


@register("knn<i>", version=1, level="set", sign=-1, model="embedding")
class KNN:
    """Mean distance to the i-th nearest neighbour within the dataset (sentence embeddings; knn6 in the paper)."""

    def __init__(self, i: int) -> None:
        self.i = int(i)
        self.name = f"knn{self.i}"
        self.min_set_size = self.i + 1  # the set-level interface: the smallest set with a value

    def dataset_distances(self, embeddings: Any) -> Any:
        """Per-sample i-th-neighbour distances within the given set."""
        return knn_distances(embeddings, self.i)

    def dataset_value(self, embeddings: Any) -> float:
        """The dataset-level value: mean of the per-sample i-th-neighbour distances."""
        return float(self.dataset_distances(embeddings).mean())


def embed_frame(df: Any, spec: dict[str, Any], batch_size: int, max_length: int, device: str = "cpu") -> Any:
    """L2-normalized float32 embeddings of a frame's samples (rows in frame order)."""
    import numpy as np
    import torch

    from .base import check_text
    from .models import load_sentence

    texts = [
        embed_text(check_text(s, "instruction", a), check_text(s, "input", b), check_text(s, "output", c))
        for s, a, b, c in zip(df["id"], df["instruction"], df["input"], df["output"], strict=True)
    ]
    model = load_sentence(spec, device=device)
    model.max_seq_length = int(max_length)
    with torch.inference_mode():
        # sentence-transformers sorts by length internally and shows a tqdm bar on stderr.
        emb = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=len(texts) > batch_size)
    return np.ascontiguousarray(emb, dtype=np.float32)
