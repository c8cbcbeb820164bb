"""Full-state checkpoints with orbax: everything a run is, so a resumed run is the same run.

A checkpoint holds the complete `TrainState` of every run in the batch: online and target
parameters, optimizer state, the replay buffer, env states and observations, RNG keys, step
counters and the eval log. A small second item holds just the online parameters, so a policy
loads without the replay buffer, and a JSON item the settings the state was trained with (the
config and the runs), so an edited config.json is caught (`saved_settings`). The step of a
checkpoint is the number of chunks done.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a
kill during a save leaves the previous checkpoints intact and `latest_step` only ever names a
complete one. Restoring always goes against an abstract target built from the config (never
pickle, never code from the checkpoint).

Multi-host: every process calls `save` on the same run directory and writes its own shards
there; process 0 writes the metadata and, once all processes have written (a barrier), renames
the temporary directory. Restoring, each process reads the shards its devices hold. Reading
(steps, restore) never waits for the other processes, so process 0 can still name the intact
checkpoint when a peer is gone.

orbax is imported at its first use (half a second or more), not with this module: a run that
saves imports it in the background while its chunks run (`prefetch`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import re
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import jax

from purejaxdqn.host import distributed

if TYPE_CHECKING:
    import orbax.checkpoint as ocp


def _orbax():
    """orbax.checkpoint, imported on first use."""
    import orbax.checkpoint as ocp

    return ocp


def prefetch() -> threading.Thread:
    """Import orbax in a background thread, e.g. while the chunks run (the main thread then
    mostly waits on the device); a use of orbax meanwhile waits for that import to finish. A
    failed import is left to that use to raise."""

    def load() -> None:
        with contextlib.suppress(Exception):
            _orbax()

    thread = threading.Thread(target=load, name="purejaxdqn-import-orbax", daemon=True)
    thread.start()
    return thread
CHECKPOINT_DIR = "checkpoints"  # in the run directory
PARTIAL_MARK = ".orbax-checkpoint-tmp"  # orbax's name for a save not yet complete


class CheckpointError(ValueError):
    """A run directory or checkpoint cannot be used, or a save failed."""


class SaveError(CheckpointError):
    """Writing a checkpoint failed or was skipped; the earlier checkpoints are intact."""


class NoCheckpointError(CheckpointError):
    """The run directory has no complete checkpoint (yet)."""


class SavePolicy:
    """When the chunk loop saves: every `every` chunks (0: only at the end), but not sooner than
    `min_interval_s` after the previous save (the run's start counts as one), and always after
    the last chunk. Multi-host, process 0's clock decides for all (a save is a collective)."""

    def __init__(self, every: int, min_interval_s: float, num_chunks: int):
        self.every, self.min_interval_s, self.num_chunks = every, min_interval_s, num_chunks
        self.last = time.perf_counter()

    def due(self, chunk: int) -> bool:
        """Whether to save after chunk `chunk` (0-based); marks the save's start when it is."""
        due = bool(self.every) and (chunk + 1) % self.every == 0
        if due and self.min_interval_s:
            due = distributed.main_value(time.perf_counter() - self.last >= self.min_interval_s)
        if due or chunk + 1 == self.num_chunks:
            self.last = time.perf_counter()
            return True
        return False


def manager(run_dir: Path, keep: int | None, create: bool = True) -> ocp.CheckpointManager:
    """The checkpoint manager of a run directory; keeps the newest `keep` checkpoints.

    Saves are asynchronous: `save` returns once the arrays are copied off the device, so the
    next chunk may reuse (donate) their buffers while the files are written in the background.
    Multi-host, a manager that creates (saves) spans all processes and waits at most
    `distributed.barrier_timeout_s()` for them; one that only reads (`create=False`) is this
    process's own.
    """
    ocp = _orbax()
    directory = (Path(run_dir) / CHECKPOINT_DIR).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create, enable_async_checkpointing=True)
    if distributed.multi_host():
        me = jax.process_index()
        options = dataclasses.replace(options, **(
            {"async_options": ocp.AsyncOptions(timeout_secs=distributed.barrier_timeout_s())} if create else
            {"multiprocessing_options": ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})}
        ))  # fmt: skip
    return ocp.CheckpointManager(directory, options=options)


def make_directory(run_dir: Path) -> Path:
    """The checkpoints directory a saving manager makes (process 0's), made before orbax is
    even imported: a run killed before its first save has it, empty."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    return directory


SETTINGS_ITEM = "settings"  # the JSON item: {"config": Config.to_dict(), "runs": [...]}


def save(mngr: ocp.CheckpointManager, chunks_done: int, state, settings: dict | None = None) -> None:
    """Start saving checkpoint `chunks_done` (with `settings`, the JSON the state was trained
    with, where given). A save orbax skips (a step not newer than the newest one there) or that
    fails raises CheckpointError: never a run that saved nothing."""
    ocp = _orbax()
    try:
        items = {"state": state, "params": state.learner.params}
        if state.best is not None:  # --keep-best: the best eval's parameters, readable alone too
            items["best"] = state.best
        args = {k: ocp.args.StandardSave(v) for k, v in items.items()}
        if settings is not None:
            args[SETTINGS_ITEM] = ocp.args.JsonSave(settings)
        saved = mngr.save(chunks_done, args=ocp.args.Composite(**args))
    except Exception as err:  # orbax/tensorstore raise many types (OSError, ValueError, ...)
        _raise_lost_peer(err)
        raise SaveError(f"saving checkpoint {_failed_step(mngr.directory, chunks_done)} in {mngr.directory} failed: "
                        f"{one_line(err)}") from None  # fmt: skip
    if not saved:
        raise SaveError(f"checkpoint {chunks_done} was not saved: {mngr.directory} already holds "
                              f"checkpoint {mngr.latest_step()} (from another run?)")  # fmt: skip


def finish(mngr: ocp.CheckpointManager) -> None:
    """Wait for pending asynchronous saves and close; a failed save raises CheckpointError."""
    try:
        mngr.wait_until_finished()
    except Exception as err:
        _raise_lost_peer(err)
        raise SaveError(f"saving checkpoint {_failed_step(mngr.directory, '?')} in {mngr.directory} failed: "
                        f"{one_line(err)}") from None  # fmt: skip
    finally:
        mngr.close()


def _failed_step(directory, default):
    """The checkpoint whose save failed: the newest one left as a temporary directory (a save
    that fails may be the one before the save that reports it, which orbax waits for first)."""
    steps = [int(m.group(1)) for p in Path(directory).glob(f"*{PARTIAL_MARK}*") if (m := re.match(r"(\d+)\.", p.name))]
    return max(steps, default=default)


def _raise_lost_peer(err: Exception) -> None:
    """Multi-host, a save's barrier or collective that fails means another process died or
    stopped answering, not that this one could not write: let JAX's error through as it is."""
    if distributed.failed_collective(err):
        raise err


def remove_partial(run_dir: Path) -> list[str]:
    """Delete the temporary directories of saves a kill cut short, and step directories that
    are not complete checkpoints (a later save would collide with them); returns their names."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    partial = [p for p in directory.glob(f"*{PARTIAL_MARK}*") if p.is_dir()] if directory.is_dir() else []
    partial += [p for p in _step_dirs(run_dir) if not _complete(p)]
    for path in partial:
        shutil.rmtree(path)
    return [p.name for p in partial]


def latest_step(run_dir: Path) -> int:
    """The newest complete checkpoint of a run directory; CheckpointError if there is none."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        raise NoCheckpointError(f"{run_dir} has no checkpoints (no {CHECKPOINT_DIR}/ directory)")
    steps = all_steps(run_dir)
    if not steps:
        raise NoCheckpointError(f"{run_dir} has no complete checkpoint in {CHECKPOINT_DIR}/")
    return steps[-1]


def all_steps(run_dir: Path) -> list[int]:
    """Every complete checkpoint of a run directory, oldest first (empty without any). A step
    directory without both of its arrays' items (emptied, or left by a copy cut short) is not
    one: the newest complete checkpoint before it is used instead."""
    return sorted(int(p.name) for p in _step_dirs(run_dir) if _complete(p))


def _step_dirs(run_dir: Path) -> list[Path]:
    directory = Path(run_dir) / CHECKPOINT_DIR
    try:
        return [p for p in directory.iterdir() if p.name.isdigit() and p.is_dir()] if directory.is_dir() else []
    except OSError as err:
        raise CheckpointError(f"the checkpoints in {directory} cannot be read: {err.strerror or err}") from None


def _complete(step_dir: Path) -> bool:
    return all((step_dir / item).is_dir() for item in ("state", "params"))


def restore(run_dir: Path, step: int, abstract_state):
    """The full state of checkpoint `step`, laid out like `abstract_state` (shapes, dtypes and
    shardings from `jax.eval_shape` or a live state)."""
    return _restore_item(run_dir, step, "state", abstract_state)


def restore_params(run_dir: Path, step: int, abstract_params):
    """Only the online parameters of checkpoint `step` (no replay buffer read)."""
    return _restore_item(run_dir, step, "params", abstract_params)


def restore_best(run_dir: Path, step: int, abstract_best):
    """Only the best-evaluation parameters kept up to checkpoint `step` (`loop.BestParams`, a
    run trained with keep_best)."""
    return _restore_item(run_dir, step, "best", abstract_best)


def saved_settings(run_dir: Path, step: int) -> dict | None:
    """The settings checkpoint `step` was trained with (None: saved before checkpoints held
    them); CheckpointError when they cannot be read."""
    if not (Path(run_dir) / CHECKPOINT_DIR / str(step) / SETTINGS_ITEM).is_dir():
        return None
    return _restore_item(run_dir, step, SETTINGS_ITEM, None)


def _restore_item(run_dir: Path, step: int, item: str, abstract):
    """One item of checkpoint `step`: arrays laid out like `abstract`, or (None) the JSON item."""
    ocp = _orbax()
    args = ocp.args.JsonRestore() if abstract is None else ocp.args.StandardRestore(jax.tree.map(_abstract, abstract))
    stray = io.StringIO()
    try:
        with contextlib.redirect_stderr(stray), _quiet(), _reading(run_dir) as mngr:
            restored = mngr.restore(step, args=ocp.args.Composite(**{item: args}))
    except Exception as err:  # orbax raises many types for damaged or mismatched files
        _settle(stray)
        raise CheckpointError(f"checkpoint {step} in {run_dir} cannot be restored: {one_line(err)}") from None
    return restored[item]


def _settle(stray: io.StringIO, quiet_s: float = 0.2, limit_s: float = 2.0) -> None:
    """After a failed restore, tensorstore's reads still in flight fail one by one against the
    event loop orbax has already closed, each printing a traceback on sys.stderr. Keep stderr
    pointed at `stray` until they stop (nothing new for `quiet_s`), so the user sees one line."""
    with contextlib.redirect_stderr(stray):
        deadline = time.monotonic() + limit_s
        seen = -1
        while time.monotonic() < deadline and seen != len(stray.getvalue()):
            seen = len(stray.getvalue())
            time.sleep(quiet_s)


@contextlib.contextmanager
def _reading(run_dir: Path):
    mngr = manager(run_dir, keep=None, create=False)  # a reader deletes nothing
    try:
        yield mngr
    finally:
        mngr.close()


def _abstract(x):
    """A restore target; one without a sharding lands on this process's first device, so a
    checkpoint saved over several devices (e.g. runs split over CPU cores) still restores."""
    sharding = getattr(x, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def quiet_logs() -> None:
    """For the command line: orbax logs recoverable problems (e.g. an unreadable metadata file
    of an old checkpoint) as absl ERROR lines while the run goes on fine; the command line
    reports real failures itself, in one line."""
    logging.getLogger("absl").setLevel(logging.CRITICAL)


@contextlib.contextmanager
def _quiet():
    """Silence absl's ERROR log lines (orbax logs a damaged metadata file before raising)."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        absl.setLevel(level)


def one_line(err: Exception) -> str:
    """An error message as one readable line: lines joined, object reprs dropped, cut at 300."""
    text = re.sub(r"<(bound method|function|built-in method) [^>]*>", "", str(err))
    text = " ".join(text.split()).rstrip(":")
    return (text or type(err).__name__)[:300]


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
