"""Timing compiled programs for the benchmark scripts in experiments/: one warm-up call, then
the fastest of several (the minimum is the least disturbed by other work on the machine)."""

from __future__ import annotations

import time
from typing import Callable

import jax


def best_seconds(compiled: Callable, *args, repeats: int = 3) -> float:
    """Wall seconds of the fastest of `repeats` calls of `compiled(*args)`, after a warm-up call."""
    jax.block_until_ready(compiled(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return best
