"""The run directory: resolved config (JSON), metrics per chunk (JSONL), evals (JSONL), summary
(JSON, with the per-setting table) and learning curves (PNG).

Nothing already in a directory is overwritten unless the caller says so.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import math
import os
import shutil
from pathlib import Path

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EVALS_FILE = "evals.jsonl"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"
SEGMENTS_FILE = "segments.jsonl"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"  # --log tensorboard: one subdirectory of event files per run
LOCK_FILE = ".lock"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, EVALS_FILE, SUMMARY_FILE, CURVES_FILE, SEGMENTS_FILE)


class OutputDirError(ValueError):
    pass


class RunDirBusyError(OutputDirError):
    """Another process holds the run directory's lock."""


class WriteError(OSError):
    """A run file could not be written (full disk, ...); the message names the file."""


def default_output_dir(env_id: str, root: str = "runs") -> Path:
    """runs/<env_id>/<timestamp>, made unique with a suffix if it exists."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / env_id / stamp
    path, n = base, 1
    while path.exists():
        path, n = base.with_name(f"{stamp}-{n}"), n + 1
    return path


def check_output_dir(path: Path, overwrite: bool) -> None:
    """Refuse a directory that holds anything, unless `overwrite`, and one that cannot be
    created (under a file, no write permission). Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"--output-dir {path} exists and is not a directory")
    if path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir()) and not overwrite:
        raise OutputDirError(f"--output-dir {path} already exists and is not empty (pass --overwrite to replace its previous run)")
    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputDirError(f"--output-dir {path} cannot be created: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputDirError(f"--output-dir {path} cannot be created: no write permission in {ancestor}")


def lock_run_dir(path: Path, create: bool):
    """Create the directory (if `create`) and take its lock for as long as the returned file
    stays open (the OS drops it when the process ends, even on SIGKILL). A directory locked by
    another process raises RunDirBusyError, and nothing is touched."""
    path = Path(path)
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        lock = open(path / LOCK_FILE, "a")
    except OSError as err:
        raise OutputDirError(f"--output-dir {path} cannot be created or written: {err.strerror or err}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise RunDirBusyError(f"{path} is in use by another training process (its lock {LOCK_FILE} is held); "
                              "wait for it to end or stop it first") from None  # fmt: skip
    return lock


def clear_previous_run(path: Path) -> None:
    """Remove everything an earlier run wrote here (run files, checkpoints, TensorBoard event
    files, temporaries), so a new run never mixes with it; other files in the directory (and
    W&B's own wandb/ directory) are left alone. Hold the lock."""
    path = Path(path)
    for name in RUN_FILES:
        (path / name).unlink(missing_ok=True)
        (path / (name + ".tmp")).unlink(missing_ok=True)
    for name in (CHECKPOINT_DIR, TENSORBOARD_DIR):
        if (path / name).exists():
            shutil.rmtree(path / name)


def _clean(value):
    """JSON-safe: NaN/inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextlib.contextmanager
def _writing(path: Path):
    """Turn any OSError while writing `path` into a WriteError that names it."""
    try:
        yield
    except OSError as err:
        raise WriteError(err.errno, f"cannot write {path}: {err.strerror or err}") from None


def write_json(path: Path, obj) -> None:
    """Atomically: a kill or a full disk leaves the old file or the new one, never half of one."""
    write_text(path, json.dumps(_clean(obj), indent=2) + "\n")


def append_jsonl(path: Path, rows) -> None:
    with _writing(path), path.open("a") as f:
        for row in rows:
            f.write(json.dumps(_clean(row)) + "\n")


LOG_KEYS = {METRICS_FILE: "chunk", EVALS_FILE: "env_steps"}


def check_logs(run_dir: Path) -> None:
    """Refuse (OutputDirError naming file and line) a metrics/evals log with a malformed row.
    Only a last line cut short by a kill mid-write is expected, and it is dropped on resume."""
    for name, key in LOG_KEYS.items():
        path = Path(run_dir) / name
        if not path.exists():
            continue
        try:
            lines = path.read_text().splitlines()
        except (OSError, ValueError) as err:
            raise OutputDirError(f"{path} cannot be read: {err}") from None
        for number, line in enumerate(lines[:-1], 1):
            if line.strip() and _row_value(line, key) is None:
                raise OutputDirError(f"{path} line {number} is not a valid row (a JSON object with an integer {key!r})")


def truncate_after(run_dir: Path, last_chunk: int, last_env_step: int) -> None:
    """Drop the rows a killed run wrote after its checkpoint: metrics of chunks past
    `last_chunk`, evals past `last_env_step`, and a last line cut short. Used when resuming
    (after `check_logs`)."""
    for name, last in ((METRICS_FILE, last_chunk), (EVALS_FILE, last_env_step)):
        path = Path(run_dir) / name
        if path.exists():
            key = LOG_KEYS[name]
            values = [(line, _row_value(line, key)) for line in path.read_text().splitlines()]
            kept = [line for line, value in values if value is not None and value <= last]
            write_text(path, "".join(line + "\n" for line in kept))


def _row_value(line: str, key: str) -> int | None:
    """The integer `key` of a JSON row, None for a malformed or cut-short line."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    value = row.get(key) if isinstance(row, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def write_text(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with _writing(path):
        tmp.write_text(text)
        os.replace(tmp, path)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
