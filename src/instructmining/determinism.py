"""Deterministic torch settings for every model job (finetune, eval-loss, base-model build,
scorers): the same config and seed on one machine give the same numbers.

- a fixed intra-op thread count, the job's `threads` (a float sum split over a different number of
  threads is added in a different order);
- torch.use_deterministic_algorithms(True, warn_only=True): ops with a deterministic kernel use it;
  an op without one warns instead of failing (on CPU the ops these jobs run are deterministic; on
  CUDA, cuBLAS needs CUBLAS_WORKSPACE_CONFIG, set here before CUDA starts);
- cuDNN autotuning off (it may pick a different kernel per run).
Call it once, after `basemodel.before_torch_import` and before any model is built."""

from __future__ import annotations

import os


def deterministic_torch(threads: int | None) -> None:
    """Apply the settings above; threads None/0 leaves torch's own thread count."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
