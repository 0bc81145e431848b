"""Throughput accounting shared by `finetune`, `eval-loss` and benchmarks/bench_finetune.py.

One place for: the device's measured matmul peak, the model FLOPs a LoRA step does on a batch,
peak memory, and a timed window that leaves warm-up steps out. Torch is imported inside the
functions (the CLI's `--help` must not pay for it)."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any


def sync(device: str) -> None:
    """Wait for queued GPU work: CUDA kernels run asynchronously, so a timer read without it
    measures the launch, not the work."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def matmul_peak_flops(device: str, dtype: str) -> float:
    """The device's dense matmul rate in FLOP/s for `dtype`, measured (not a datasheet number).

    A square matmul large enough to saturate the device (8192 on a GPU, 1024 on CPU), one warm-up
    call, then the best of several timed repeats: the ceiling that achieved FLOP/s is read against."""
    import torch

    n = 8192 if device.startswith("cuda") else 1024
    dt = getattr(torch, dtype)
    if not device.startswith("cuda") and dt != torch.float32:
        dt = torch.float32  # CPU low-precision matmul is emulated; the job computes in float32 there
    # A private generator: drawing from the global one would shift the dropout masks of the
    # training that follows (a resumed run would no longer replay an uninterrupted one).
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dt, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dt, generator=gen)
    torch.matmul(a, b)
    sync(device)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(4):
            torch.matmul(a, b)
        sync(device)
        best = min(best, (time.perf_counter() - t0) / 4)
    return 2 * n**3 / best


def decoder_matmul_params(config: Any) -> int:
    """Weights of the matmuls one token passes through in a Llama-style decoder, lm_head excluded
    (computed from the config: a quantized model's packed weights do not count their elements)."""
    d, layers = config.hidden_size, config.num_hidden_layers
    head = getattr(config, "head_dim", None) or d // config.num_attention_heads
    q = config.num_attention_heads * head
    kv = (getattr(config, "num_key_value_heads", None) or config.num_attention_heads) * head
    return layers * (d * q + 2 * d * kv + q * d + 3 * d * config.intermediate_size)


def lora_step_flops(config: Any, lengths: list[int], scored: int, train: bool = True) -> float:
    """Useful matmul FLOPs of one batch: per real token 2 x matmul weights forward (+ the same
    again backward for the input gradients: the base is frozen, so no weight gradients), logits
    only at the `scored` positions (prompts.token_nll), attention 4 x layers x d x len^2 forward
    (x3 with its backward). Padding and gradient-checkpointing recompute are not useful work."""
    p = decoder_matmul_params(config)
    d, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    tokens = sum(lengths)
    fwd = 2 * p * tokens + 2 * d * vocab * scored + 4 * layers * d * sum(n * n for n in lengths)
    if not train:
        return float(fwd)
    attn = 4 * layers * d * sum(n * n for n in lengths)
    return float(2 * fwd + attn)  # linear + logits backward = forward; attention backward = 2 x forward


def reset_peak_memory(device: str) -> None:
    """Start peak-memory accounting now (GPU); on CPU the process peak RSS is all there is."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_memory_bytes(device: str) -> int:
    """Peak GPU memory allocated by torch since reset_peak_memory, or on CPU the process peak RSS."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


@dataclass
class Throughput:
    """Real and padded tokens and FLOPs over a timed window that opens after `warmup` steps.

    The first steps of a run pay for allocator growth, kernel selection and caches; timing them
    would understate the steady rate. Whole-run totals are kept too (what the job really cost)."""

    device: str
    warmup: int
    steps: int = 0
    real: int = 0
    padded: int = 0
    flops: float = 0.0
    timed_real: int = 0
    timed_padded: int = 0
    timed_flops: float = 0.0
    timed_seconds: float = 0.0
    _t: float | None = field(default=None, repr=False)
    _t_start: float = field(default_factory=time.perf_counter, repr=False)

    def begin(self) -> None:
        """Call before a step: opens the timed window once the warm-up steps are done."""
        if self.steps == self.warmup and self._t is None:
            sync(self.device)
            self._t = time.perf_counter()

    def add(self, real: int, padded: int, flops: float) -> None:
        """Count one batch's tokens (real = unpadded) and useful FLOPs."""
        self.real, self.padded, self.flops = self.real + real, self.padded + padded, self.flops + flops
        if self._t is not None:
            self.timed_real += real
            self.timed_padded += padded
            self.timed_flops += flops

    def end_step(self) -> None:
        """Call after a step (optimizer step included)."""
        self.steps += 1

    def summary(self, peak_flops: float) -> dict[str, Any]:
        """The metrics block: rates over the timed window (None when the run had no step past the
        warm-up), whole-run totals, padding waste and the share of the measured matmul peak."""
        sync(self.device)
        now = time.perf_counter()
        if self._t is not None:
            self.timed_seconds = now - self._t
        s = self.timed_seconds
        rate = (lambda x: round(x / s, 1)) if s > 0 and self.timed_real else (lambda x: None)
        achieved = self.timed_flops / s if s > 0 and self.timed_real else None
        return {
            "device": self.device, "timing_warmup_steps": self.warmup,
            "timed_steps": max(0, self.steps - self.warmup), "timed_seconds": round(s, 3),
            "real_tokens_per_second": rate(self.timed_real),
            "padded_tokens_per_second": rate(self.timed_padded),
            "padding_waste": round(self.padded / self.real, 4) if self.real else None,
            "achieved_flops_per_second": round(achieved, 1) if achieved else None,
            "matmul_peak_flops_per_second": round(peak_flops, 1),
            "fraction_of_matmul_peak": round(achieved / peak_flops, 4) if achieved else None,
            "real_tokens_this_run": self.real, "padded_tokens_this_run": self.padded,
            "seconds_this_run": round(now - self._t_start, 3),
        }
