"""Full-state checkpoints with orbax: everything a run is, so a resumed run is the same run.

A checkpoint holds the complete `TrainState` of every run in the batch: online and target
parameters, optimizer state, the replay buffer, env states and observations, RNG keys, step
counters and the eval log. A small second item holds just the online parameters, so a policy
loads without the replay buffer. The step of a checkpoint is the number of chunks done.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a
kill during a save leaves the previous checkpoints intact and `latest_step` only ever names a
complete one. Restoring always goes against an abstract target built from the config (never
pickle, never code from the checkpoint).
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import jax
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"


class CheckpointError(ValueError):
    """A run directory or checkpoint cannot be used."""


def manager(run_dir: Path, keep: int = 3, create: bool = True) -> ocp.CheckpointManager:
    """The checkpoint manager of a run directory; keeps the newest `keep` checkpoints.

    Saves are asynchronous: `save` returns once the arrays are copied off the device, so the
    next chunk may reuse (donate) their buffers while the files are written in the background.
    """
    directory = (Path(run_dir) / CHECKPOINT_DIR).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create, enable_async_checkpointing=True)
    return ocp.CheckpointManager(directory, options=options)


def save(mngr: ocp.CheckpointManager, chunks_done: int, state) -> None:
    mngr.save(
        chunks_done,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            params=ocp.args.StandardSave(state.learner.params),
        ),
    )


def latest_step(run_dir: Path) -> int:
    """The newest complete checkpoint of a run directory; CheckpointError if there is none."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        raise CheckpointError(f"{run_dir} has no checkpoints (no {CHECKPOINT_DIR}/ directory)")
    with _reading(run_dir) as mngr:
        step = mngr.latest_step()
    if step is None:
        raise CheckpointError(f"{run_dir} has no complete checkpoint in {CHECKPOINT_DIR}/")
    return step


def restore(run_dir: Path, step: int, abstract_state):
    """The full state of checkpoint `step`, laid out like `abstract_state` (shapes, dtypes and
    shardings from `jax.eval_shape` or a live state)."""
    return _restore_item(run_dir, step, "state", abstract_state)


def restore_params(run_dir: Path, step: int, abstract_params):
    """Only the online parameters of checkpoint `step` (no replay buffer read)."""
    return _restore_item(run_dir, step, "params", abstract_params)


def _restore_item(run_dir: Path, step: int, item: str, abstract):
    target = jax.tree.map(_abstract, abstract)
    stray = io.StringIO()
    try:
        with contextlib.redirect_stderr(stray), _reading(run_dir) as mngr:
            restored = mngr.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(target)}))
    except Exception as err:  # orbax raises many types for damaged or mismatched files
        _settle(stray)
        raise CheckpointError(f"checkpoint {step} in {run_dir} cannot be restored: {_one_line(err)}") from None
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
    mngr = manager(run_dir, create=False)
    try:
        yield mngr
    finally:
        mngr.close()


def _abstract(x):
    sharding = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def _one_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
