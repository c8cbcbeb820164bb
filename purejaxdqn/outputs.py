"""The run directory: resolved config (JSON), metrics per chunk (JSONL), evals (JSONL), summary
(JSON, with the per-setting table) and learning curves (PNG).

Nothing already in a directory is overwritten unless the caller says so.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EVALS_FILE = "evals.jsonl"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, EVALS_FILE, SUMMARY_FILE, CURVES_FILE)


class OutputDirError(ValueError):
    pass


def default_output_dir(env_id: str, root: str = "runs") -> Path:
    """runs/<env_id>/<timestamp>, made unique with a suffix if it exists."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / env_id / stamp
    path, n = base, 1
    while path.exists():
        path, n = base.with_name(f"{stamp}-{n}"), n + 1
    return path


def check_output_dir(path: Path, overwrite: bool) -> None:
    """Refuse a directory that holds anything, unless `overwrite`. Creates nothing."""
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"{path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputDirError(f"{path} already exists and is not empty (pass --overwrite to replace its run files)")


def prepare_output_dir(path: Path, overwrite: bool) -> None:
    """Create the directory; with `overwrite`, remove only the run files this program writes."""
    check_output_dir(path, overwrite)
    path.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        (path / name).unlink(missing_ok=True)


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


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(obj), indent=2) + "\n")
    os.replace(tmp, path)


def append_jsonl(path: Path, rows) -> None:
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps(_clean(row)) + "\n")


def truncate_after(run_dir: Path, last_chunk: int, last_env_step: int) -> None:
    """Drop the rows a killed run wrote after its checkpoint: metrics of chunks past
    `last_chunk`, evals past `last_env_step`. Used when resuming."""
    for name, keep in ((METRICS_FILE, lambda row: row["chunk"] <= last_chunk),
                       (EVALS_FILE, lambda row: row["env_steps"] <= last_env_step)):  # fmt: skip
        path = Path(run_dir) / name
        if path.exists():
            rows = [line for line in path.read_text().splitlines() if line.strip()]
            kept = [line for line in rows if _complete(line) and keep(json.loads(line))]
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, path)


def _complete(line: str) -> bool:
    """False for a line cut short by a kill mid-write."""
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
