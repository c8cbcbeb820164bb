"""The run directory, and its one owner: what config.json holds (`RunRecord`) and the three
things done with a run directory, each checking everything once:

- `create`: prepare a new run: refuse a directory in use or holding an earlier run (unless
  `overwrite`), else take its lock, clear the earlier run and write config.json;
- `read` then `resume`: read and check config.json (before JAX starts, so a refusal costs
  nothing), then take the lock, check the logs, drop partial saves, find the checkpoint to
  continue from;
- `read`: a finished run's record, for `evaluate`, `load_policy` and `--config`.

Besides config.json a run writes metrics per chunk (JSONL), evals (JSONL), segments (JSONL: one
row per process that worked on it), a summary (JSON, with the per-setting table), learning
curves (PNG) and checkpoints. Nothing already in a directory is overwritten unless the caller
says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from purejaxdqn.config import Config, ConfigError, validate
from purejaxdqn.config.batch import make_batch
from purejaxdqn.host import checkpointing, distributed, provenance
from purejaxdqn.host.checkpointing import CHECKPOINT_DIR
from purejaxdqn.host.run_options import cadence_defaults

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EVALS_FILE = "evals.jsonl"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"
SEGMENTS_FILE = "segments.jsonl"
TENSORBOARD_DIR = "tensorboard"  # --log tensorboard: one subdirectory of event files per run
LOCK_FILE = ".lock"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, EVALS_FILE, SUMMARY_FILE, CURVES_FILE, SEGMENTS_FILE)
__all__ = ["CHECKPOINT_DIR"]  # re-exported: the run directory's map names every part of it


class RunDirError(ValueError):
    """A run directory (or config.json) that is missing, empty, unreadable or damaged."""


class OutputDirError(ValueError):
    pass


class RunDirBusyError(OutputDirError):
    """Another process holds the run directory's lock."""


class WriteError(OSError):
    """A run file could not be written (full disk, ...); the message names the file."""

    def __str__(self) -> str:
        return str(self.strerror)


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What config.json holds: the settings every run of the batch trains with, how the batch
    is laid out, and where it came from. Written once, when a new run starts."""

    config: Config
    runs: list[dict]  # one per run: {"run", "seed", "setting", plus the swept values}
    settings: list[dict]  # the swept values of each setting ([{}] without a sweep)
    mesh: dict  # the device mesh it was made on (parallel.MeshShape.as_dict)
    processes: int = 1  # multi-host: processes that made it (a resume needs as many)
    preset: str = "none"  # the presets it started from ('none': plain defaults)
    checkpoint: dict = dataclasses.field(default_factory=cadence_defaults)  # RunOptions.cadence()
    rerun_of: str | None = None  # --config: the saved run it started from
    provenance: dict | None = None  # command, versions, git commit, host (provenance.collect)
    config_file: str | None = None  # --config: the hand-written config file it started from

    @property
    def num_seeds(self) -> int:
        return len(self.runs) // max(1, len(self.settings))  # runs = settings x seeds

    @property
    def sweep(self) -> dict[str, list]:
        """Each swept setting's values, in order (the settings are their grid)."""
        return {name: list(dict.fromkeys(s[name] for s in self.settings)) for name in (self.settings[0] if self.settings else {})}

    def to_json(self) -> dict:
        origin = {"preset": self.preset, "num_seeds": self.num_seeds, "sweep": self.sweep, "checkpoint": self.checkpoint}
        sources = {key: value for key in ("rerun_of", "config_file") if (value := getattr(self, key))}
        return {**origin, **sources,
                "config": self.config.to_dict(), "settings": self.settings, "runs": self.runs, "mesh": self.mesh,
                "processes": self.processes, "provenance": self.provenance}  # fmt: skip

    @classmethod
    def from_json(cls, saved) -> "RunRecord":
        """A record from config.json's contents, checked like a new run (ConfigError otherwise):
        the config, then seeds and sweep (`make_batch`, the command line's check), whose runs
        and settings must be the ones saved (an edit of one without the other is refused). Keys
        added since older runs were saved get the value those runs had."""
        _check_saved(saved)
        config = Config.from_dict(saved["config"])
        validate(config)  # exactly the checks a new run gets
        _check_batch(config, saved)
        return cls(config, saved["runs"], saved["settings"], saved["mesh"], saved.get("processes", 1),
                   saved.get("preset", "none"), {**cadence_defaults(), **(saved.get("checkpoint") or {})},
                   saved.get("rerun_of"), saved.get("provenance"), saved.get("config_file"))  # fmt: skip


# The keys config.json must hold beside its origin, with their JSON types.
RECORD_KEYS = {"config": dict, "runs": list, "settings": list, "mesh": dict}


def is_record(saved) -> bool:
    """Whether JSON contents are a saved run's config.json (`RunRecord`), not a config file
    written by hand (whose keys are settings and run options, none of `RECORD_KEYS`)."""
    return isinstance(saved, dict) and not RECORD_KEYS.keys().isdisjoint(saved)


def _check_saved(saved) -> None:
    """The keys and shapes config.json must have beside the config; ConfigError otherwise."""
    if not isinstance(saved, dict):
        raise ConfigError("config.json", "is not a JSON object")
    for key, kind in RECORD_KEYS.items():
        if key not in saved:
            raise ConfigError(key, "missing (no default is assumed)")
        if not isinstance(saved[key], kind):
            raise ConfigError(key, f"must be a {kind.__name__}, got {saved[key]!r}"[:200])
    if not saved["runs"] or not all(isinstance(r, dict) and _is_int(r.get("seed")) for r in saved["runs"]):
        raise ConfigError("runs", "must be a non-empty list of runs, each with an integer seed")
    mesh = {"model": 1, **saved["mesh"]}  # "model" is written only when that axis was used
    if not all(_is_int(mesh.get(k)) and mesh[k] > 0 for k in ("runs", "data", "model")):
        raise ConfigError("mesh", f"must hold positive integers 'runs' and 'data' (and 'model'), got {saved['mesh']!r}")


def _check_batch(config: Config, saved: dict) -> None:
    """config.json's seeds and sweep, checked as `--num-seeds` and `--sweep` are, must lay out
    exactly its runs and settings (runs written before "num_seeds" and "sweep" were saved are
    read from their runs and settings)."""
    settings, runs = saved["settings"], saved["runs"]
    if not all(isinstance(s, dict) for s in settings):
        raise ConfigError("settings", "must be a list of objects (each setting's swept values)")
    derived_sweep = {n: list(dict.fromkeys(s.get(n) for s in settings)) for n in (settings[0] if settings else {})}
    num_seeds = saved.get("num_seeds", len(runs) // max(1, len(settings)))
    sweep = saved.get("sweep", derived_sweep)
    _, expected_runs, expected_settings = make_batch(config, num_seeds, sweep, compile_in=False)
    for key, expected in (("settings", expected_settings), ("runs", expected_runs)):
        if saved[key] != expected:
            raise ConfigError(key, f"do not match the saved seed {config.seed}, num_seeds {num_seeds} and sweep {sweep} "
                              "(config.json edited by hand?)"[:300])  # fmt: skip


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read(run_dir: Path) -> RunRecord:
    """The record of the run in `run_dir` (for evaluate, load_policy, --resume, --config),
    checked like a new config; RunDirError otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is not a directory")
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunDirError(f"{run_dir} is not a purejaxdqn run directory (no {CONFIG_FILE})")
    return read_file(run_dir / CONFIG_FILE)


def read_file(path: Path) -> RunRecord:
    """The record in a run's config.json, wherever the file is now; RunDirError otherwise."""
    return record_from(path, load(path))


def load(path: Path, parse: Callable[[str], Any] = json.loads, kind: str = "JSON"):
    """A JSON file's contents (or, with `parse`, another `kind` of file's: a TOML config file);
    RunDirError naming the file and, as the parser reports it, the line."""
    path = Path(path)
    try:
        return parse(path.read_text())
    except OSError as err:
        raise RunDirError(f"{path} cannot be read: {err.strerror or err}") from None
    except ValueError as err:
        raise RunDirError(f"{path} is damaged (not {kind}: {err})") from None
    except RecursionError:
        raise RunDirError(f"{path} is damaged (not {kind} this program reads: nested too deeply)") from None


def record_from(path: Path, saved) -> RunRecord:
    """The record in config.json contents read from `path`; RunDirError naming it otherwise."""
    try:
        return RunRecord.from_json(saved)
    except ConfigError as err:
        raise RunDirError(f"{path} is damaged: {err}") from None


@dataclasses.dataclass
class RunDir:
    """A run directory prepared for training: this process holds its lock when it writes it."""

    path: Path
    start_chunk: int = 0  # the checkpoint it continues from (0: from the start)
    resumed: bool = False
    lock: Any = None  # the open lock file; None where this process does not write
    command: list[str] | None = None  # this segment's command line (provenance)

    @property
    def writing(self) -> bool:
        return self.lock is not None

    def drop_rows_after(self, env_steps: int) -> None:
        """Resuming: drop the log rows written after the checkpoint continued from."""
        if self.writing:
            truncate_after(self.path, self.start_chunk - 1, env_steps)

    def add_segment(self, compile_s: float) -> None:
        """One row per process that works on the run (its compile time and provenance)."""
        if self.writing:
            row = {"start_chunk": self.start_chunk, "compile_s": compile_s, "provenance": provenance.collect(self.command)}
            append_jsonl(self.path / SEGMENTS_FILE, [row])

    def close(self) -> None:
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def create(path: Path, record: RunRecord, overwrite: bool = False, writing: bool = True,
           command: list[str] | None = None) -> RunDir:  # fmt: skip
    """Prepare a new run in `path`: refuse one that cannot be created, is in use, or holds an
    earlier run (unless `overwrite`: its run files and checkpoints are removed); then write
    config.json. The earlier run is looked at under the lock, so no other process can race.
    Multi-host, only process 0 (`writing`) does this, and every process waits for it."""
    path = Path(path)
    lock = None
    if writing:
        _refuse_uncreatable(path)
        missing = [p for p in (path, *path.absolute().parents) if not p.exists()]  # what mkdir will make, deepest first
        lock, made = _take_lock(path, create=True)
        try:
            _refuse_earlier_run(path, overwrite)
            clear_previous_run(path)
            write_json(path / CONFIG_FILE, record.to_json())
        except BaseException:
            _release(lock, path if made else None)
            with contextlib.suppress(OSError):  # made here and still empty: as if never named
                for made_dir in missing:
                    made_dir.rmdir()
            raise
    distributed.sync("purejaxdqn: run directory ready")  # the others wait for process 0 to clear it
    return RunDir(path, lock=lock, command=command)


def resume(path: Path, writing: bool = True, command: list[str] | None = None, settings: dict | None = None) -> RunDir:
    """Prepare to continue the run in `path` (its record `read` before; `settings` its
    `trained_settings`): take its lock, refuse malformed logs, find its newest complete
    checkpoint (0: killed before the first, start over), refuse a config.json edited since that
    checkpoint, and drop the partial saves a kill left. A finished run without checkpoints is
    refused."""
    path = Path(path)
    lock = _take_lock(path, create=False, option="--resume")[0] if writing else None
    try:
        if writing:
            check_logs(path)
        start_chunk = distributed.main_value(_resume_point(path))  # process 0's: every process continues there
        if start_chunk == 0 and (path / SUMMARY_FILE).exists():
            raise checkpointing.NoCheckpointError(f"{path} finished but has no checkpoint left to resume from")
        if start_chunk and settings is not None:
            check_unedited(path, start_chunk, settings)
        if writing:
            checkpointing.remove_partial(path)
    except BaseException:
        _release(lock)
        raise
    distributed.sync("purejaxdqn: run directory ready")  # the others wait for process 0 to clean it
    return RunDir(path, start_chunk, resumed=True, lock=lock, command=command)


def trained_settings(config: Config, runs: list[dict]) -> dict:
    """What a checkpoint records of the settings its state was trained with."""
    return _clean({"config": config.to_dict(), "runs": runs})


class EditedError(RunDirError):
    """config.json no longer says what a checkpoint was trained with."""


def check_unedited(path: Path, step: int, settings: dict) -> None:
    """Refuse (EditedError naming each changed setting) when config.json's settings are not the
    ones checkpoint `step` was trained with: continuing would mix two runs in one. Checkpoints
    saved before they held their settings are not checked."""
    trained = checkpointing.saved_settings(path, step)
    if trained is None:
        return
    now, then = settings["config"], trained.get("config", {})
    changed = [f"{k} (trained with {then.get(k)!r}, config.json has {now.get(k)!r})" for k in now if now.get(k) != then.get(k)]
    if trained.get("runs") != settings["runs"]:
        changed.append("runs (their seeds or swept values)")
    if changed:
        raise EditedError(f"{path / CONFIG_FILE} was edited after checkpoint {step} was saved: {'; '.join(changed)}"[:400]
                          + "; a run keeps the settings it was trained with: undo the edit, or train a new run from it "
                          f"with --config {path / CONFIG_FILE} --output-dir NEW_DIR")  # fmt: skip


def _resume_point(path: Path) -> int:
    try:
        return checkpointing.latest_step(path)
    except checkpointing.NoCheckpointError:
        return 0


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
    created (under a file, no write permission). Creates nothing. (`create` makes the same
    checks, the second under the lock.)"""
    _refuse_uncreatable(Path(path))
    _refuse_earlier_run(Path(path), overwrite)


def _refuse_uncreatable(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"--output-dir {path} exists and is not a directory")
    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputDirError(f"--output-dir {path} cannot be created: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputDirError(f"--output-dir {path} cannot be created: no write permission in {ancestor}")


def _refuse_earlier_run(path: Path, overwrite: bool) -> None:
    if path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir()) and not overwrite:
        raise OutputDirError(f"--output-dir {path} already exists and is not empty (pass --overwrite to replace its previous run)")


def lock_run_dir(path: Path, create: bool):
    """Create the directory (if `create`) and take its lock for as long as the returned file
    stays open (the OS drops it when the process ends, even on SIGKILL). A directory locked by
    another process raises RunDirBusyError, and nothing is touched."""
    return _take_lock(Path(path), create)[0]


def _take_lock(path: Path, create: bool, option: str = "--output-dir"):
    """lock_run_dir, and whether the lock file was made now (so a refusal can remove it);
    `option` is the one that named `path`, for the message."""
    made = not (path / LOCK_FILE).exists()
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        lock = open(path / LOCK_FILE, "a")
    except OSError as err:
        what = "cannot be created or written" if create else "cannot be written (its lock file)"
        raise OutputDirError(f"{option} {path} {what}: {err.strerror or err}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise RunDirBusyError(f"{path} is in use by another training process (its lock {LOCK_FILE} is held); "
                              "wait for it to end or stop it first") from None  # fmt: skip
    return lock, made


def _release(lock, made_in: Path | None = None) -> None:
    """Drop a lock taken for a refused run; remove its file if this refusal made it."""
    if lock is None:
        return
    if made_in is not None:
        (made_in / LOCK_FILE).unlink(missing_ok=True)
    lock.close()


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
    write_atomically(path, lambda tmp: tmp.write_text(text))


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """Replace `path` with the file `write(tmp)` makes, renamed over it once complete: a failed
    write (WriteError naming `path`) leaves the old file as it was, and no temporary one."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with _writing(path):
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
