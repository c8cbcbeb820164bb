"""Host side of training: compile once, call the jitted chunk in a loop, log and time it.

A batch of runs (seeds x hyperparameter settings) is one `vmap` over the pure per-run
functions of `loop.make_trainer`, so any number of runs is one compiled program.
Compile time and run time are measured separately (ahead-of-time `lower().compile()`).
"""

from __future__ import annotations

import dataclasses
import itertools
import platform
import resource
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn import memory, outputs, parallel, report
from purejaxdqn.config import Config, HParams
from purejaxdqn.loop import TrainState, make_trainer, run_axes
from purejaxdqn.progress import ProgressBar
from purejaxdqn.schedules import linear_epsilon


@dataclasses.dataclass
class RunResult:
    config: Config
    runs: list[dict]  # one entry per run: {"run", "seed", "setting", plus the swept values}
    settings: list[dict]  # the swept values of each setting ([{}] without a sweep)
    state: TrainState  # final state, leading axis = runs
    eval_steps: np.ndarray  # [num_evals]
    eval_mean: np.ndarray  # [runs, num_evals]
    eval_min: np.ndarray  # [runs, num_evals]
    summary: dict
    table: list[dict]  # per-setting statistics over seeds (report.summarize)


def make_runs(config: Config, num_seeds: int = 1, sweep: dict[str, list] | None = None) -> tuple[list[dict], list[dict]]:
    """The grid of swept hyperparameter settings x seeds config.seed, config.seed + 1, ...

    Returns (runs, settings). Run i is {"run": i, "seed", "setting": index into settings,
    **that setting's values}; runs are ordered setting-major, seed-minor.
    """
    sweep = sweep or {}
    settings = [dict(zip(sweep, values)) for values in itertools.product(*sweep.values())]
    runs = [
        {"run": i * num_seeds + k, "seed": config.seed + k, "setting": i, **setting}
        for i, setting in enumerate(settings)
        for k in range(num_seeds)
    ]
    return runs, settings


def run_hparams(config: Config, runs: list[dict]) -> tuple[HParams, HParams]:
    """HParams for a batch of runs, and their vmap axes.

    A run's own keys (e.g. a swept `lr`) override the config. Fields equal in every run stay
    scalars (axis None), so a batch of seeds compiles like a single run.
    """
    names = HParams._fields
    per_run = [config.replace(**{k: v for k, v in r.items() if k in names}).hparams() for r in runs]
    shared = [all(bool(p[i] == per_run[0][i]) for p in per_run) for i in range(len(names))]
    hp = HParams(*[per_run[0][i] if shared[i] else jnp.stack([p[i] for p in per_run]) for i in range(len(names))])
    return hp, HParams(*[None if s else 0 for s in shared])


def train_runs(
    config: Config,
    runs: list[dict],
    settings: list[dict] | None = None,
    output_dir: Path | None = None,
    overwrite: bool = False,
    meta: dict | None = None,
    progress: ProgressBar | None = None,
    available_memory: int | None = None,
    mesh_shape: parallel.MeshShape | None = None,
) -> RunResult:
    """Train every run in `runs` together in one compiled program.

    With a `mesh_shape` of several devices the program is a `jax.shard_map` over a (runs, data)
    mesh (see parallel.py); otherwise it runs on the default device. Before compiling: checks
    the memory estimate (raises memory.OutOfMemoryError), then, with `output_dir`, prepares it
    and writes config.json (`meta` is stored beside the config).
    """
    t_begin = time.perf_counter()
    settings = settings if settings is not None else [{}]
    mesh_shape = mesh_shape or parallel.MeshShape(1, 1)
    hp, hp_axes = run_hparams(config, runs)
    host_hp = jax.tree.map(lambda x: np.broadcast_to(x, (len(runs),)), jax.device_get(hp))
    seeds = np.array([r["seed"] for r in runs], np.uint32)
    one_state = jax.eval_shape(make_trainer(config).init, jax.random.key(0), config.hparams())
    per_device_runs = len(runs) // mesh_shape.runs
    estimate = memory.check(memory.state_bytes(one_state) // mesh_shape.data, per_device_runs, available_memory)
    if output_dir is not None:
        outputs.prepare_output_dir(output_dir, overwrite)
        outputs.write_json(
            output_dir / outputs.CONFIG_FILE,
            {**(meta or {}), "config": config.to_dict(), "settings": settings, "runs": runs,
             "mesh": mesh_shape._asdict(), "processes": jax.process_count()},
        )  # fmt: skip

    # Compile ahead of time so compile and run time are separate figures.
    t0 = time.perf_counter()
    sharded = mesh_shape.size > 1
    # Only a real data axis changes the per-run program; a runs-only mesh runs the 1-device one.
    trainer = make_trainer(config, parallel.DATA, mesh_shape.data) if mesh_shape.data > 1 else make_trainer(config)
    init_fn, chunk_fn = _batched(trainer, run_axes(one_state), hp_axes, per_device_runs)
    if sharded:
        mesh = parallel.make_mesh(mesh_shape)
        specs, hp_specs = parallel.state_specs(one_state), parallel.hparam_specs(hp_axes)
        init_fn = parallel.shard(init_fn, mesh, (parallel.P(parallel.RUNS), hp_specs), specs)
        chunk_fn = parallel.shard(chunk_fn, mesh, (specs, hp_specs), specs)
        seeds = parallel.to_global(seeds, mesh, parallel.P(parallel.RUNS))
        hp = jax.tree.map(lambda x, spec: parallel.to_global(x, mesh, spec), hp, hp_specs)
    init = jax.jit(init_fn).lower(seeds, hp).compile()
    compile_s = time.perf_counter() - t0
    t_init = time.perf_counter()
    state = jax.block_until_ready(init(seeds, hp))
    init_s = time.perf_counter() - t_init
    t0 = time.perf_counter()
    run_chunk = jax.jit(chunk_fn, donate_argnums=0).lower(state, hp).compile()
    compile_s += time.perf_counter() - t0

    t_run = time.perf_counter() - init_s
    eval_seen = 0
    last_eval: list[float | None] = [None] * len(runs)
    for chunk in range(config.num_chunks):
        t_chunk = time.perf_counter()
        state = run_chunk(state, hp)
        env_steps, updates, stats, evals = parallel.fetch(
            (state.env_steps, state.learner.updates, state.stats, state.evals)
        )
        chunk_s = time.perf_counter() - t_chunk
        steps_per_s = config.iterations_per_chunk * config.num_envs * len(runs) / chunk_s

        eval_done = int((evals.step[0] > 0).sum())
        eval_rows = [
            {**r, "env_steps": int(evals.step[i, j]),
             "eval_return_mean": float(evals.mean[i, j]), "eval_return_min": float(evals.min[i, j])}
            for j in range(eval_seen, eval_done) for i, r in enumerate(runs)
        ]  # fmt: skip
        if eval_done:
            last_eval = [float(evals.mean[i, eval_done - 1]) for i in range(len(runs))]
        eval_seen = eval_done

        epsilon = np.asarray(linear_epsilon(env_steps, host_hp.eps_start, host_hp.eps_end, host_hp.eps_decay_steps))
        metric_rows = []
        for i, r in enumerate(runs):
            n_upd, n_ep = int(stats.updates[i]), int(stats.episodes[i])
            metric_rows.append({
                "chunk": chunk, **r,
                "env_steps": int(env_steps), "updates": int(updates[i]),
                "epsilon": float(epsilon[i]),
                "loss": float(stats.loss_sum[i]) / n_upd if n_upd else None,
                "q_mean": float(stats.q_sum[i]) / n_upd if n_upd else None,
                "episodes": n_ep,
                "train_return": float(stats.return_sum[i]) / n_ep if n_ep else None,
                "train_length": float(stats.length_sum[i]) / n_ep if n_ep else None,
                "eval_return_mean": last_eval[i],
                "chunk_s": chunk_s, "env_steps_per_s": steps_per_s,
            })  # fmt: skip
        if output_dir is not None:
            outputs.append_jsonl(output_dir / outputs.METRICS_FILE, metric_rows)
            outputs.append_jsonl(output_dir / outputs.EVALS_FILE, eval_rows)
        if progress is not None:
            finite = [e for e in last_eval if e is not None]
            progress.update(int(env_steps), steps_per_s, float(np.mean(finite)) if finite else None)
    jax.block_until_ready(state)
    run_s = time.perf_counter() - t_run
    if progress is not None:
        progress.close()

    evals, final_updates = parallel.fetch((state.evals, state.learner.updates))
    total_steps = config.actual_total_steps * len(runs)
    total_updates = int(np.asarray(final_updates).sum())
    summary = {
        "env_id": config.env_id,
        "num_runs": len(runs),
        "env_steps_per_run": config.actual_total_steps,
        "updates_per_run": [int(u) for u in final_updates],
        "final_eval_return_mean": [float(x) for x in evals.mean[:, -1]],
        "final_eval_return_min": [float(x) for x in evals.min[:, -1]],
        "memory_estimate_bytes": estimate,
        "mesh": mesh_shape._asdict(),
        "processes": jax.process_count(),
        "compile_s": compile_s,
        "run_s": run_s,
        "total_s": time.perf_counter() - t_begin,
        "env_steps_per_s": total_steps / run_s,
        "updates_per_s": total_updates / run_s,
        **memory_report(),
        **platform_report(),
    }
    table = report.summarize(runs, evals.mean[:, -1], settings)
    summary["settings"] = table
    if output_dir is not None:
        outputs.write_json(output_dir / outputs.SUMMARY_FILE, summary)
        report.plot_curves(
            output_dir / outputs.CURVES_FILE, evals.step[0], evals.mean, runs, settings,
            title=f"{config.env_id}: greedy eval return ({len(runs)} runs)",
        )  # fmt: skip
    return RunResult(
        config=config,
        runs=runs,
        settings=settings,
        table=table,
        state=state,
        eval_steps=np.asarray(evals.step[0]),
        eval_mean=np.asarray(evals.mean),
        eval_min=np.asarray(evals.min),
        summary=summary,
    )


def _batched(trainer, axes: TrainState, hp_axes: HParams, num_runs: int):
    """init(seeds, hp) and run_chunk(state, hp) over a batch of `num_runs` runs (leading axis).

    A batch of one skips vmap (it would run ~6% slower) and adds the run axis as a bitcast.
    """

    def init_one(seed, hp):
        return trainer.init(jax.random.key(seed), hp)

    if num_runs == 1:
        def init(seeds, hp):
            return _add_run_axis(init_one(seeds[0], hp), axes)

        def run_chunk(state, hp):
            return _add_run_axis(trainer.run_chunk(_drop_run_axis(state, axes), hp), axes)

        return init, run_chunk
    init = jax.vmap(init_one, in_axes=(0, hp_axes), out_axes=axes)
    return init, jax.vmap(trainer.run_chunk, in_axes=(axes, hp_axes), out_axes=axes)


def _add_run_axis(state: TrainState, axes: TrainState) -> TrainState:
    return jax.tree.map(lambda a, x: x if a is None else x[None], axes, state, is_leaf=lambda a: a is None)


def _drop_run_axis(state: TrainState, axes: TrainState) -> TrainState:
    return jax.tree.map(lambda a, x: x if a is None else x[0], axes, state, is_leaf=lambda a: a is None)


def memory_report() -> dict[str, Any]:
    """Peak device memory where the backend reports it (GPU/TPU), and the process's peak RSS."""
    report: dict[str, Any] = {"host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        report["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    return report


def platform_report() -> dict[str, Any]:
    device = jax.local_devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "num_devices": jax.device_count(),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
    }
