"""Start-up settings that make the most of the machine a run lands on.

- `use_cpu_cores`: on a CPU-only machine XLA runs one small program on about one core. Split
  into several host devices, independent runs (seeds x settings) go to separate threads: 2.2x
  on 2 cores for 8 seeds (BENCHMARKS.md). Must run before JAX starts its backends.
- `enable_compilation_cache`: JAX's persistent compilation cache in a per-user directory, so
  a second run of the same program skips most of its compile.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "PUREJAXDQN_CACHE_DIR"  # a directory, or "off"
FORCE_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def default_cache_dir() -> Path:
    """$PUREJAXDQN_CACHE_DIR, else $XDG_CACHE_HOME/purejaxdqn/jax, else ~/.cache/purejaxdqn/jax."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "purejaxdqn" / "jax"


def enable_compilation_cache(directory: str | Path | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache; `directory` None means the default (or the
    `PUREJAXDQN_CACHE_DIR` variable); "off" turns it off. Returns the directory used, or None."""
    import jax

    directory = directory if directory is not None else os.environ.get(CACHE_ENV) or default_cache_dir()
    if str(directory).lower() == "off":
        return None
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a cache is an optimization: never a reason to fail a run
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def use_cpu_cores(count: int | None = None) -> int | None:
    """Split the CPU into `count` host devices (None: one per core). Returns the count set, or
    None where it is left alone: the user forced a count in XLA_FLAGS, or JAX's backends have
    already started (a notebook that ran JAX before). GPUs and TPUs are unaffected: the CPU
    devices are only used when the CPU is the default backend."""
    import jax

    if FORCE_DEVICES_FLAG in os.environ.get("XLA_FLAGS", ""):
        return None
    count = count if count is not None else (os.cpu_count() or 1)
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # backends already initialized
        return None
    return count
