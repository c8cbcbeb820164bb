"""Device-memory estimate for a batch of runs, checked before anything is compiled.

The training state of one run is known exactly from `jax.eval_shape` (no compile, no
allocation); replay dominates it. A batch of R runs holds R states (the chunk donates its
input, so input and output share buffers), plus working memory for the update batch and
evaluation. Refusing up front beats an out-of-memory crash deep inside XLA.
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np

from purejaxdqn.algorithm.parallel import DATA, MeshShape, model_spec, state_specs

# Working memory beyond the donated state: temporaries of one iteration and XLA's own needs.
STATE_FACTOR = 1.15
FIXED_OVERHEAD_BYTES = 256 * 2**20


class OutOfMemoryError(ValueError):
    """Not enough memory for the asked-for runs."""


def state_bytes(abstract_state) -> int:
    """Bytes of one run's state, from its abstract shapes (`jax.eval_shape` output)."""
    return sum(leaf_bytes(x) for x in jax.tree.leaves(abstract_state))


def leaf_bytes(x) -> int:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return math.prod(x.shape) * 8  # a threefry key is two uint32 words
    return math.prod(x.shape) * np.dtype(x.dtype).itemsize


def estimate_bytes(per_run_state_bytes: int, num_runs: int) -> int:
    return int(per_run_state_bytes * num_runs * STATE_FACTOR + FIXED_OVERHEAD_BYTES)


def available_bytes() -> int:
    """Memory the first device can use: the allocator's limit on GPU/TPU, free RAM on CPU."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check(per_run_state_bytes: int, num_runs: int, available: int | None = None) -> int:
    """Raise OutOfMemoryError with the need, the room and how many runs fit; return the estimate."""
    available = available_bytes() if available is None else available
    needed = estimate_bytes(per_run_state_bytes, num_runs)
    if needed > available:
        fit = max(0, int((available - FIXED_OVERHEAD_BYTES) / (per_run_state_bytes * STATE_FACTOR)))
        raise OutOfMemoryError(
            f"{num_runs} runs need about {_gib(needed)} of device memory ({_gib(per_run_state_bytes)} of "
            f"state per run, replay included) but only {_gib(available)} is available; at most {fit} "
            "runs would fit (fewer seeds/settings, or a smaller --buffer-size)"
        )
    return needed


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def device_state_bytes(one_state, mesh_shape: MeshShape, num_hidden: int) -> int:
    """Bytes of one run's state (`jax.eval_shape` of init) held by each device of its mesh:
    the env-axis leaves (`state_specs`) split over "data", the hidden layers of the learner's
    parameter trees (`model_spec`) over "model", everything else whole."""
    batched_specs = state_specs(one_state)

    def device_bytes(path, x, spec):
        split = mesh_shape.data if DATA in tuple(spec) else 1
        if path and getattr(path[0], "name", None) in ("learner", "best") and model_spec(path, num_hidden) is not None:
            split *= mesh_shape.model
        return leaf_bytes(x) // split

    sizes = jax.tree_util.tree_map_with_path(device_bytes, one_state, batched_specs)
    return sum(jax.tree.leaves(sizes))
