"""Checkpoint cost: save and restore time and size of the full training state, and the slowdown
of a run that checkpoints after every chunk against one that saves only at the end.

States measured (freshly initialized, then the replay buffer is filled with random contents:
orbax's storage compresses, so an all-zero buffer would show a misleadingly small checkpoint):
- the `cartpole` preset (replay 10k transitions),
- CartPole-v1 with a 1M-transition replay buffer,
- Breakout-MinAtar with a 1M-transition replay buffer (observations stored as uint8).

    python experiments/bench_checkpoint.py
    python experiments/bench_checkpoint.py --repeats 3 --skip-minatar
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.host import checkpointing, runner
from purejaxdqn.config import Config, from_preset


def state_of(config: Config):
    runs, _ = runner.make_runs(config)
    program = runner.compile_program(config, runs, runner.parallel.MeshShape(1, 1))
    state = program.init(program.seeds, program.hp)
    rng = np.random.default_rng(0)

    def random_like(x):
        if x.dtype == bool:
            return jnp.asarray(rng.random(x.shape) < 0.05)
        if jnp.issubdtype(x.dtype, jnp.integer):
            return jnp.asarray(rng.integers(0, 2 if x.dtype == jnp.uint8 else 6, x.shape), x.dtype)
        return jnp.asarray(rng.normal(size=x.shape), x.dtype)

    state = state._replace(replay=state.replay._replace(data=jax.tree.map(random_like, state.replay.data)))
    return jax.block_until_ready(state), program.abstract_state


def time_checkpoint(name: str, config: Config, repeats: int) -> dict:
    state, abstract = state_of(config)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    saves, blocking, restores, size = [], [], [], 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            mngr = checkpointing.manager(Path(tmp), keep=1)
            t0 = time.perf_counter()
            checkpointing.save(mngr, 1, state)
            t1 = time.perf_counter()
            mngr.wait_until_finished()
            t2 = time.perf_counter()
            mngr.close()
            size = checkpointing.directory_bytes(Path(tmp) / checkpointing.CHECKPOINT_DIR)
            t3 = time.perf_counter()
            restored = jax.block_until_ready(checkpointing.restore(Path(tmp), 1, abstract))
            t4 = time.perf_counter()
            del restored
        blocking.append(t1 - t0)
        saves.append(t2 - t0)
        restores.append(t4 - t3)
    return {
        "state": name,
        "buffer_size": config.buffer_size,
        "state_mb": round(nbytes / 2**20, 1),
        "checkpoint_mb": round(size / 2**20, 1),
        "save_blocking_s": round(statistics.median(blocking), 3),
        "save_total_s": round(statistics.median(saves), 3),
        "restore_s": round(statistics.median(restores), 3),
    }


def run_cli(extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "purejaxdqn.train", "--no-progress", "--output-dir", str(out), *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
        return json.loads((out / "summary.json").read_text())


def slowdown(repeats: int) -> dict:
    """Default CartPole command (10 chunks): a checkpoint after every chunk vs only at the end."""
    every, end_only = [], []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        every.append(run_cli(["--checkpoint-every", "1", "--checkpoint-min-interval", "0"]))
        end_only.append(run_cli(["--checkpoint-every", "0"]))
    med = lambda runs, key: statistics.median(s[key] for s in runs)  # noqa: E731
    return {
        "run_s_every_chunk": round(med(every, "run_s"), 2),
        "run_s_end_only": round(med(end_only, "run_s"), 2),
        "save_s_every_chunk": round(med(every, "checkpoint_save_s"), 3),
        "save_s_end_only": round(med(end_only, "checkpoint_save_s"), 3),
        "slowdown": round(med(every, "run_s") / med(end_only, "run_s"), 3),
        "all_run_s_every_chunk": [round(s["run_s"], 2) for s in every],
        "all_run_s_end_only": [round(s["run_s"], 2) for s in end_only],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-minatar", action="store_true")
    parser.add_argument("--skip-slowdown", action="store_true")
    args = parser.parse_args()
    cases = [
        ("CartPole-v1, cartpole preset", from_preset("cartpole")),
        ("CartPole-v1, 1M replay", from_preset("cartpole", buffer_size=1_000_000)),
    ]
    if not args.skip_minatar:
        cases.append(("Breakout-MinAtar, 1M replay", Config(env_id="Breakout-MinAtar", buffer_size=1_000_000)))
    for name, config in cases:
        print(json.dumps(time_checkpoint(name, config, args.repeats)), flush=True)
    if not args.skip_slowdown:
        print(json.dumps(slowdown(args.repeats)), flush=True)


if __name__ == "__main__":
    main()
