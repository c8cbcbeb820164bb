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
  need before its plot), and `run_deferred` to run them in the background.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.metadata
import os
import pkgutil
import sys
import threading
import types
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


# gymnax's renderers import these at gymnax's import (Pong's seaborn and matplotlib.colors, and
# matplotlib.pyplot in Catch, MetaMaze, Rooms, PointRobot, Pong); a run only plots its curves at
# the end (`run_deferred` runs them in the background meanwhile).
RENDER_MODULES = ("seaborn", "matplotlib", "matplotlib.pyplot", "matplotlib.colors")
PLOT_MODULES = ("matplotlib", "matplotlib.colors", "matplotlib.pyplot")  # what the run's own plot (report.py) uses

# What the import system reads of a module it finds in sys.modules, or of a package when it
# imports a submodule: a pending module gives these without running.
_IMPORT_ATTRS = frozenset({"__spec__", "__name__", "__path__", "__loader__", "__package__", "__file__", "__class__",
                           "__dict__"})  # fmt: skip


class _Pending(types.ModuleType):
    """A module imported only in name: its first use (any attribute the import system does not
    read) runs it, once, under its own lock; imported again meanwhile, it stays pending."""

    def __getattribute__(self, attr):
        namespace = object.__getattribute__(self, "__dict__")
        if attr in _IMPORT_ATTRS or type(namespace.get(attr)) is _Pending:
            return object.__getattribute__(self, attr)  # and a pending submodule: `import a.b as c` reads a.b
        submodule = f"{namespace['__name__']}.{attr}"
        if attr not in namespace and submodule in namespace["__spec__"].loader_state["deferred"]:
            return importlib.import_module(submodule)  # `from a import b` of a deferred b: pending too
        _run(self)
        return types.ModuleType.__getattribute__(self, attr)


def _run(module: types.ModuleType) -> None:
    """Run a pending module in its own namespace (what the import system set there stays). It
    stays pending until its code has run: another thread's first use waits for that (it would
    find a module half made otherwise), while the running thread's own uses (circular imports)
    read what is made so far, as with any import."""
    spec = object.__getattribute__(module, "__spec__")
    state = spec.loader_state
    with state["lock"]:
        if type(module) is not _Pending or state["running"]:  # run already, or running in this thread
            return
        state["running"] = True
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(spec.name, None)  # as a failed import leaves it: the next import raises again
            raise
        finally:
            state["running"] = False
        object.__setattr__(module, "__class__", types.ModuleType)


class _PendingLoader(importlib.abc.Loader):
    """Wraps a module's own loader: its module is made as usual and left pending."""

    def __init__(self, loader, deferred: frozenset[str]):
        self.loader, self.deferred = loader, deferred

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self.loader
        module.__spec__.loader_state = {"lock": threading.RLock(), "running": False, "deferred": self.deferred}
        module.__class__ = _Pending


class _Deferred(importlib.abc.MetaPathFinder):
    """Finds `names` as the other finders do, but leaves their modules pending (`_Pending`)."""

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
                spec.loader = _PendingLoader(spec.loader, self.names)
                return spec
        return None


@contextlib.contextmanager
def deferred_imports(names: Iterable[str] = RENDER_MODULES):
    """Within the block, a first import of one of `names` gives a module that runs at its first
    use (a module imported already is left as it is; after the block imports are as usual, and
    a deferred module still runs at its first use only, however often it is imported). For
    `import gymnax`: its renderers' seaborn (scipy.stats and pandas with it) and matplotlib cost
    seconds at import (BENCHMARKS.md, start-up and shut-down)."""
    finder = _Deferred(n for n in names if n not in sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def deferred(name: str) -> bool:
    """Whether module `name` is imported only in name so far (deferred, not yet run)."""
    return type(sys.modules.get(name)) is _Pending


def run_deferred(names: Iterable[str]) -> threading.Thread:
    """Run the pending modules among `names` in a background thread, e.g. matplotlib while the
    chunks run (the main thread mostly waits on the device), so that the plot at the end finds
    it ready. A failed run is left to the module's first use to raise."""

    def run() -> None:
        for name in names:
            module = sys.modules.get(name)
            if type(module) is _Pending:
                with contextlib.suppress(Exception):
                    _run(module)

    thread = threading.Thread(target=run, name="purejaxdqn-import-deferred", daemon=True)
    thread.start()
    return thread

