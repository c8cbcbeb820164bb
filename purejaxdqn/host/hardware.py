"""Start-up settings that make the most of the machine a run lands on.

- `use_cpu_cores`: on a CPU-only machine XLA runs one small program on about one core. Split
  into several host devices, independent runs (seeds x settings) go to separate threads: 2.2x
  on 2 cores for 8 seeds (BENCHMARKS.md). Must run before JAX starts its backends.
- `enable_compilation_cache`: JAX's persistent compilation cache in a per-user directory, so
  a second run of the same program skips most of its compile.
- `add_gpu_xla_flags`: the XLA:GPU flags the project sets by default on a GPU (`GPU_XLA_FLAGS`,
  the one place they are named), added to XLA_FLAGS before JAX's backend starts; a flag the
  user's own XLA_FLAGS sets wins. (The GPU suite sets XLA_FLAGS itself to try others.)
- `deferred_imports`: modules imported only in name until first used (gymnax imports its
  renderers' seaborn and matplotlib.pyplot when it is imported: seconds the command does not
  need).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Iterable, Mapping, MutableMapping
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


MAX_CPU_DEVICES = 1024  # --cpu-devices: each host device holds its own buffers and threads


def cache_dir_problem(directory: str) -> str | None:
    """Why `directory` cannot be the compilation cache (a file, or not creatable), or None."""
    path = Path(directory).expanduser().absolute()
    if path.exists() and not path.is_dir():
        return f"{directory} exists and is not a directory"
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{directory} cannot be created or written (in {ancestor})"
    return None


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


# The XLA:GPU flags a run on a GPU gets by default ("--xla_gpu_...=value" each). Empty until a GPU
# has measured which settings pay off: the GPU suite's command-buffer variants (issue #19, item 2;
# experiments/gpu_suite.py, group "flags": each variant's run time over the default flags'),
# which set XLA_FLAGS themselves, decide what goes here.
GPU_XLA_FLAGS: tuple[str, ...] = ()
GPU_PLATFORMS = ("cuda", "gpu", "rocm")


def flag_name(flag: str) -> str:
    """'--xla_gpu_foo=1' -> 'xla_gpu_foo' (also '--xla_gpu_foo' and the '--noxla_gpu_foo' of a
    boolean flag)."""
    name = flag.lstrip("-").partition("=")[0]
    return name[2:] if name.startswith("noxla_") else name


def xla_flags_with_defaults(user_flags: str, defaults: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """XLA_FLAGS with each of `defaults` the user's own `user_flags` does not set already (by
    name, whatever its value) added after them; and the flags added. Pure."""
    given = {flag_name(f) for f in user_flags.split()}
    added = tuple(f for f in defaults if flag_name(f) not in given)
    return (" ".join([user_flags.strip(), *added]).strip() if added else user_flags), added


def gpu_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether JAX will start a GPU backend, as far as can be told without starting it: a CUDA or
    ROCm plugin is installed and JAX_PLATFORMS (if set) names a GPU platform."""
    platforms = environ.get("JAX_PLATFORMS", "").lower()
    if platforms and not any(p in platforms for p in GPU_PLATFORMS):
        return False
    names = {ep.name for ep in importlib.metadata.entry_points(group="jax_plugins")}
    with contextlib.suppress(ImportError):
        import jax_plugins  # the namespace package JAX's own plugin discovery also reads

        names |= {m.name for m in pkgutil.iter_modules(jax_plugins.__path__)}
    return any(p in n.lower() for n in names for p in ("cuda", "rocm"))


def add_gpu_xla_flags(defaults: tuple[str, ...] = GPU_XLA_FLAGS, environ: MutableMapping[str, str] = os.environ,
                      gpu: bool | None = None) -> tuple[str, ...]:  # fmt: skip
    """On a GPU machine (`gpu` None: `gpu_wanted`), add `defaults` to XLA_FLAGS where the user's
    XLA_FLAGS does not set them; returns the flags added. XLA reads XLA_FLAGS when JAX's backend
    starts, so this must come before (`cli.program.start_jax` calls it first)."""
    if not defaults or not (gpu_wanted(environ) if gpu is None else gpu):
        return ()
    flags, added = xla_flags_with_defaults(environ.get("XLA_FLAGS", ""), defaults)
    if added:
        environ["XLA_FLAGS"] = flags
    return added


# gymnax's renderers import these at gymnax's import (Pong's seaborn); no run renders with them.
RENDER_MODULES = ("seaborn",)


class _Deferred(importlib.abc.MetaPathFinder):
    """Finds `names` as the other finders do, but loads them lazily (importlib.util.LazyLoader):
    the module is run at its first attribute access, not at its import."""

    def __init__(self, names: Iterable[str]):
        self.names = frozenset(names)

    def find_spec(self, name, path, target=None):
        if name not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is None or not hasattr(spec.loader, "exec_module"):
                    return spec
                spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


@contextlib.contextmanager
def deferred_imports(names: Iterable[str] = RENDER_MODULES):
    """Within the block, a first import of one of `names` gives a module that runs at its first
    use (a module imported already is left as it is; after the block imports are as usual, and
    a deferred module still runs at its first use, or when it is imported again: the import
    system reads its __spec__). For `import gymnax`: its renderers' seaborn (scipy.stats and
    pandas with it) costs seconds at import (BENCHMARKS.md, start-up and shut-down);
    matplotlib.pyplot, imported by several of its modules, would run at the second."""
    finder = _Deferred(n for n in names if n not in sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def deferred(name: str) -> bool:
    """Whether module `name` is imported only in name so far (deferred, not yet run)."""
    module = sys.modules.get(name)
    return module is not None and type(module).__name__ == "_LazyModule"
