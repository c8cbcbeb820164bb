"""Where a run came from: package versions, the git commit, the command line, the machine.

Stored in every run directory (config.json, and one row per process in segments.jsonl), so a
result can be traced to the code and stack that made it. The versions and the commit are read
once per process (a run records them twice: its config.json and its segment's row), as the
code the process loaded.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = ("purejaxdqn", "jax", "jaxlib", "flax", "optax", "gymnax", "orbax-checkpoint", "numpy")


def collect(command: list[str] | None = None) -> dict[str, Any]:
    """Versions, git commit (None outside a checkout), the command line (default: sys.argv),
    platform and devices."""
    import jax

    device = jax.devices()[0]
    return {
        "versions": dict(_versions()),
        "git_commit": _own_commit(),
        "command": list(sys.argv if command is None else command),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "device_kind": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
    }


@functools.cache
def _versions() -> tuple[tuple[str, str | None], ...]:
    return tuple((name, _version(name)) for name in PACKAGES)


@functools.cache
def _own_commit() -> str | None:
    return git_commit()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the checkout the package runs from (with '+dirty' for uncommitted changes)."""
    path = path or Path(__file__).resolve().parent.parent  # the package, purejaxdqn/
    try:
        top = _git(path, "rev-parse", "--show-toplevel")
        if top is None or Path(top, path.name).resolve() != path.resolve():
            return None  # installed, not a checkout (maybe inside someone else's repository)
        commit = _git(path, "rev-parse", "HEAD")
        dirty = _git(path, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return None if commit is None else commit + ("+dirty" if dirty else "")


def _git(path: Path, *args: str) -> str | None:
    proc = subprocess.run(["git", "-C", str(path), *args], check=False, capture_output=True, text=True, timeout=10)
    return proc.stdout.strip() if proc.returncode == 0 else None
