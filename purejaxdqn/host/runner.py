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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.host import checkpointing, distributed, interrupts, memory, provenance, report, run_directory, tracking
from purejaxdqn.algorithm import parallel
from purejaxdqn.config import Config, ConfigError, HParams
from purejaxdqn.environments import env_from_config
from purejaxdqn.algorithm.loop import TrainState, make_trainer, run_axes
from purejaxdqn.host.progress import ProgressBar, runs_text
from purejaxdqn.host.run_options import RunOptions
from purejaxdqn.algorithm.schedules import linear_epsilon


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
    if config.max_grad_norm == 0 and any("max_grad_norm" in r for r in runs):
        raise ConfigError("max_grad_norm", "clipping is off in this config (0), so it cannot be swept; set a positive value")
    per_run = [config.replace(**{k: v for k, v in r.items() if k in names}).hparams() for r in runs]
    shared = [all(bool(p[i] == per_run[0][i]) for p in per_run) for i in range(len(names))]
    hp = HParams(*[per_run[0][i] if shared[i] else jnp.stack([p[i] for p in per_run]) for i in range(len(names))])
    return hp, HParams(*[None if s else 0 for s in shared])


class NonFiniteError(RuntimeError):
    """A loss or parameter became NaN/inf; the message names the step and the runs."""


class Program(NamedTuple):
    """The compiled per-batch functions and their (global) inputs."""

    init: Any  # compiled init(seeds, hp) -> state
    run_chunk: Any  # compiled run_chunk(state, hp) -> state (state donated)
    seeds: Any
    hp: HParams
    abstract_state: TrainState  # shapes, dtypes and shardings of the batch's state
    compile_s: float


def compile_program(config: Config, runs: list[dict], mesh_shape: parallel.MeshShape) -> Program:
    """Build and compile (ahead of time) init and run_chunk for this batch of runs and mesh.

    With a mesh of several devices the functions are `jax.shard_map`s over a (runs, data, model)
    mesh (see parallel.py); otherwise they run on the default device.
    """
    t0 = time.perf_counter()
    hp, hp_axes = run_hparams(config, runs)
    seeds = np.array([r["seed"] for r in runs], np.uint32)
    one_state = _one_run_state(config)
    # Only a real data axis changes the per-run program; a runs-only mesh runs the 1-device one.
    data_axis = parallel.DATA if mesh_shape.data > 1 else None
    trainer = make_trainer(config, data_axis, mesh_shape.data, model_parallel=mesh_shape.model > 1)
    init_fn, chunk_fn = _batched(trainer, run_axes(one_state), hp_axes, len(runs) // mesh_shape.runs)
    if mesh_shape.size > 1:
        mesh = parallel.make_mesh(mesh_shape)
        specs, hp_specs = parallel.state_specs(one_state), parallel.hparam_specs(hp_axes)
        init_fn = parallel.shard(init_fn, mesh, (parallel.P(parallel.RUNS), hp_specs), specs)
        chunk_fn = parallel.shard(chunk_fn, mesh, (specs, hp_specs), specs)
        seeds = parallel.to_global(seeds, mesh, parallel.P(parallel.RUNS))
        hp = jax.tree.map(lambda x, spec: parallel.to_global(x, mesh, spec), hp, hp_specs)
    init = jax.jit(init_fn).lower(seeds, hp).compile()
    abstract = jax.tree.map(
        lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
        jax.eval_shape(init_fn, seeds, hp), init.output_shardings,
    )  # fmt: skip
    run_chunk = jax.jit(chunk_fn, donate_argnums=0, **_fixed_layout(init.output_shardings, hp, mesh_shape)).lower(abstract, hp).compile()
    return Program(init, run_chunk, seeds, hp, abstract, time.perf_counter() - t0)


def _fixed_layout(shardings, hp, mesh_shape: parallel.MeshShape) -> dict:
    """jit options that pin run_chunk's state layout to init's. XLA lays out what the model axis
    leaves open (e.g. the head after an odd number of split layers) per program, so without
    them a chunk could require another layout than init or a restored checkpoint gives."""
    if mesh_shape.model == 1:
        return {}
    return {"in_shardings": (shardings, jax.tree.map(lambda x: x.sharding, hp)), "out_shardings": shardings}


def abstract_state(config: Config, runs: list[dict]) -> TrainState:
    """Shapes and dtypes of a batch of runs' state on one device (e.g. to restore a checkpoint)."""
    hp, hp_axes = run_hparams(config, runs)
    init, _ = _batched(make_trainer(config), run_axes(_one_run_state(config)), hp_axes, len(runs))
    return jax.eval_shape(init, np.zeros(len(runs), np.uint32), hp)


def _one_run_state(config: Config) -> TrainState:
    return jax.eval_shape(make_trainer(config).init, jax.random.key(0), config.hparams())


def train_runs(
    config: Config,
    runs: list[dict],
    settings: list[dict] | None = None,
    options: RunOptions | None = None,
    *,
    meta: dict | None = None,
    progress: ProgressBar | None = None,
    mesh_shape: parallel.MeshShape | None = None,
    available_memory: int | None = None,
) -> RunResult:
    """Train every run in `runs` together in one compiled program, driven as `options` say
    (run_options.RunOptions: output dir, checkpoint cadence, resume, sinks; default: write
    nothing).

    Before compiling: checks the memory estimate (raises memory.OutOfMemoryError); only then,
    with an output dir (written by this process: `write_outputs`), creates and locks it
    (run_directory.RunDirBusyError if another process holds it), clears a previous run there
    (`overwrite`: run files and checkpoints) and writes config.json (`meta` is stored beside
    the config, with the provenance of `command`). With an output dir, the full state is
    checkpointed every `checkpoint_every` chunks (0: only at the end; None: never), but not
    sooner than `checkpoint_min_interval_s` after the previous save, and always at the end.
    `resume` continues the run from its newest complete checkpoint (from scratch if it has none
    yet); the result is bit-identical to the run never interrupted (same devices), and
    summary.json's timings add up all the processes that worked on it. A failed or skipped save
    raises checkpointing.CheckpointError. A non-finite loss or parameter stops the run with
    NonFiniteError before that chunk is checkpointed. Multi-host, every process passes the same
    `output_dir` (only process 0 has `write_outputs`, takes the lock and writes the run files)
    and writes its own shards of each checkpoint there; a run that fails otherwise than on a
    NaN (e.g. a lost peer) gives up its pending save instead of waiting for peers. Each chunk's
    rows go to metrics.jsonl and evals.jsonl and to the sinks `tracking` names (tracking.py);
    `progress` shows the compile and then the chunks.
    """
    t_begin = time.perf_counter()
    options = options or RunOptions()
    settings = settings if settings is not None else [{}]
    mesh_shape = mesh_shape or parallel.MeshShape(1, 1)
    # One device's share of a run: its data shard of envs and replay, its model shard of the
    # hidden layers, its part of the eval episodes.
    device_run_bytes = (memory.device_state_bytes(_one_run_state(config), mesh_shape, len(config.widths))
                        + eval_working_bytes(config) // mesh_shape.data)  # fmt: skip
    estimate = memory.check(device_run_bytes, len(runs) // mesh_shape.runs, available_memory)
    if options.writing and not options.resume:
        run_directory.check_output_dir(options.output_dir, options.overwrite)
    # Every check above has passed: only now is anything created, locked, removed or written.
    lock = run_directory.lock_run_dir(options.output_dir, create=not options.resume) if options.writing else None
    try:
        return _train_locked(config, runs, settings, options, meta, progress, mesh_shape, estimate, t_begin)
    finally:
        if lock is not None:
            lock.close()


def _train_locked(config, runs, settings, options: RunOptions, meta, progress, mesh_shape, estimate,
                  t_begin) -> RunResult:  # fmt: skip
    """train_runs once the memory check has passed and the run directory is locked."""
    output_dir, writing, resume = options.output_dir, options.writing, options.resume
    if writing and not resume:
        run_directory.check_output_dir(output_dir, options.overwrite)  # again, now that no other process can race us
        run_directory.clear_previous_run(output_dir)
        run_directory.write_json(
            output_dir / run_directory.CONFIG_FILE,
            {**(meta or {}), "config": config.to_dict(), "settings": settings, "runs": runs,
             "mesh": mesh_shape.as_dict(), "processes": jax.process_count(),
             "provenance": provenance.collect(options.command)},
        )  # fmt: skip
    if writing and resume:
        run_directory.check_logs(output_dir)
        checkpointing.remove_partial(output_dir)
    distributed.sync("purejaxdqn: run directory ready")  # multi-host: the others wait for process 0 to clear or clean it
    start_chunk = distributed.main_value(resume_point(output_dir)) if resume else 0
    saving = output_dir is not None and options.checkpoint_every is not None
    ckpt = checkpointing.manager(output_dir, options.keep_checkpoints) if saving else None

    if progress is not None:
        progress.status(f"compiling {runs_text(len(runs))} ({config.env_id}) ...")
    program = compile_program(config, runs, mesh_shape)
    if progress is not None:
        progress.note(f"compiled {runs_text(len(runs))} in {program.compile_s:.1f} s")
    hp = program.hp
    host_hp = jax.tree.map(lambda x: np.broadcast_to(x, (len(runs),)), jax.device_get(run_hparams(config, runs)[0]))
    t_init = time.perf_counter()
    if start_chunk:
        state = checkpointing.restore(output_dir, start_chunk, program.abstract_state)
    else:
        state = program.init(program.seeds, hp)
    if resume:  # drop rows written after the checkpoint (all of them when starting over)
        env_steps = int(distributed.fetch(state.env_steps))  # a collective: every process takes part
        if writing:
            run_directory.truncate_after(output_dir, start_chunk - 1, env_steps)
    if writing:
        run_directory.append_jsonl(output_dir / run_directory.SEGMENTS_FILE, [
            {"start_chunk": start_chunk, "compile_s": program.compile_s, "provenance": provenance.collect(options.command)}
        ])  # fmt: skip
    state = jax.block_until_ready(state)
    init_s = time.perf_counter() - t_init

    t_run = time.perf_counter() - init_s
    evals = distributed.fetch(state.evals)
    eval_seen = int((evals.step[0] > 0).sum())
    save_s = 0.0
    last_save = time.perf_counter()  # the run's start counts as a save for the interval
    sinks, log_s = None, 0.0  # time in the sinks (logs, TensorBoard, W&B): apart from run_s, like saves
    try:
        t_log = time.perf_counter()
        sinks = tracking.open_sinks(options.tracking, output_dir, runs, config.to_dict()) if writing else None
        log_s += time.perf_counter() - t_log
        for chunk in range(start_chunk, config.num_chunks):
            t_chunk = time.perf_counter()
            state = program.run_chunk(state, hp)
            env_steps, updates, stats, evals = distributed.fetch(
                (state.env_steps, state.learner.updates, state.stats, state.evals)
            )
            chunk_s = time.perf_counter() - t_chunk
            steps_per_s = config.iterations_per_chunk * config.num_envs * len(runs) / chunk_s
            metric_rows, eval_rows = _chunk_rows(chunk, runs, env_steps, updates, stats, evals, eval_seen, host_hp)
            eval_seen = int((evals.step[0] > 0).sum())
            for row in metric_rows:
                row.update(chunk_s=chunk_s, env_steps_per_s=steps_per_s)
            if sinks is not None:
                t_log = time.perf_counter()
                sinks.log(metric_rows, eval_rows)
                log_s += time.perf_counter() - t_log
            _stop_if_nonfinite(stats, runs, chunk)
            due = bool(options.checkpoint_every) and (chunk + 1) % options.checkpoint_every == 0
            if due and options.checkpoint_min_interval_s:  # a clock: multi-host, process 0's decides for all
                due = distributed.main_value(time.perf_counter() - last_save >= options.checkpoint_min_interval_s)
            if ckpt is not None and (due or chunk + 1 == config.num_chunks):
                t_save = last_save = time.perf_counter()
                with interrupts.deferred():
                    checkpointing.save(ckpt, chunk + 1, state)
                save_s += time.perf_counter() - t_save
            if progress is not None:
                latest = [row["eval_return_mean"] for row in metric_rows if row["eval_return_mean"] is not None]
                progress.update(int(env_steps), steps_per_s, float(np.mean(latest)) if latest else None)
        jax.block_until_ready(state)
    except BaseException as err:
        if distributed.multi_host() and not isinstance(err, NonFiniteError):
            ckpt = None  # a peer may be gone: its pending save cannot complete; the earlier ones are intact
        raise
    finally:
        if sinks is not None:
            t_log = time.perf_counter()
            sinks.close()
            log_s += time.perf_counter() - t_log
        if ckpt is not None:  # let pending async saves finish, also when stopping on a NaN or a signal
            t_save = time.perf_counter()
            with interrupts.deferred():
                checkpointing.finish(ckpt)
            save_s += time.perf_counter() - t_save
    run_s = time.perf_counter() - t_run - save_s - log_s  # training only: checkpoint_save_s and logging_s are apart
    if progress is not None:
        progress.close()

    evals, final_updates = distributed.fetch((state.evals, state.learner.updates))
    timing = _whole_run_timing(output_dir if writing and resume else None, start_chunk, program.compile_s, run_s)
    total_steps = config.actual_total_steps * len(runs)
    summary = {
        "env_id": config.env_id,
        "num_runs": len(runs),
        "env_steps_per_run": config.actual_total_steps,
        "updates_per_run": [int(u) for u in final_updates],
        "final_eval_return_mean": [float(x) for x in evals.mean[:, -1]],
        "final_eval_return_min": [float(x) for x in evals.min[:, -1]],
        f"last_{report.LAST_K}_evals_return_mean": [float(x) for x in evals.mean[:, -report.LAST_K:].mean(axis=1)],
        "eval_epsilon": config.eval_epsilon,
        "memory_estimate_bytes": estimate,
        "mesh": mesh_shape.as_dict(),
        "processes": jax.process_count(),
        **timing,
        "checkpoint_save_s": save_s,
        "logging_s": log_s,
        "resumed_from_chunk": start_chunk if resume else None,
        "total_s": time.perf_counter() - t_begin,
        "env_steps_per_s": total_steps / timing["run_s"],
        "updates_per_s": int(np.asarray(final_updates).sum()) / timing["run_s"],
        **memory_report(),
        **platform_report(),
    }
    table = report.summarize(runs, evals.mean, settings)
    summary["settings"] = table
    if writing:
        run_directory.write_json(output_dir / run_directory.SUMMARY_FILE, summary)
        report.plot_curves(
            output_dir / run_directory.CURVES_FILE, evals.step[0], evals.mean, runs, settings,
            title=f"{config.env_id} ({runs_text(len(runs))})",
            train=report.training_returns(run_directory.read_jsonl(output_dir / run_directory.METRICS_FILE), len(runs)),
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


def resume_point(run_dir: Path) -> int:
    """The chunk a resumed run continues after: its newest complete checkpoint, or 0 (start
    over from scratch with the saved config) when it was killed before its first one."""
    try:
        return checkpointing.latest_step(run_dir)
    except checkpointing.NoCheckpointError:
        return 0


def _whole_run_timing(run_dir: Path | None, start_chunk: int, compile_s: float, run_s: float) -> dict[str, Any]:
    """compile_s and run_s of the whole run. After a resume (`run_dir` given) they add up every
    process that worked on it: compile times from segments.jsonl, and the chunk times of the
    chunks done before `start_chunk` from metrics.jsonl; this segment's own figures are kept too."""
    if run_dir is None:
        return {"compile_s": compile_s, "run_s": run_s}
    segments = run_directory.read_jsonl(run_dir / run_directory.SEGMENTS_FILE)
    earlier = {row["chunk"]: row.get("chunk_s", 0.0) for row in run_directory.read_jsonl(run_dir / run_directory.METRICS_FILE)
               if row["chunk"] < start_chunk}  # fmt: skip
    return {
        "compile_s": sum(row.get("compile_s", 0.0) for row in segments),
        "run_s": sum(earlier.values()) + run_s,
        "segments": len(segments),
        "this_segment": {"start_chunk": start_chunk, "compile_s": compile_s, "run_s": run_s},
    }


def eval_working_bytes(config: Config) -> int:
    """Memory of one evaluation of `num_eval_envs` episodes at once (env states,
    observations, Q-values; counted twice for the while loop's carry), not part of the state."""
    venv = env_from_config(config, config.num_eval_envs)
    obs, env_state = jax.eval_shape(lambda k: venv.reset(k, config.num_eval_envs), jax.random.key(0))
    q_values = config.num_eval_envs * venv.num_actions * (config.num_atoms if config.distributional else 1) * 4
    return 2 * (memory.state_bytes((obs, env_state)) + q_values)


def _chunk_rows(chunk, runs, env_steps, updates, stats, evals, eval_seen, host_hp):
    """metrics.jsonl rows (one per run) and evals.jsonl rows (new evals) after a chunk."""
    eval_done = int((evals.step[0] > 0).sum())
    eval_rows = [
        {**r, "env_steps": int(evals.step[i, j]),
         "eval_return_mean": float(evals.mean[i, j]), "eval_return_min": float(evals.min[i, j])}
        for j in range(eval_seen, eval_done) for i, r in enumerate(runs)
    ]  # fmt: skip
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
            "eval_return_mean": float(evals.mean[i, eval_done - 1]) if eval_done else None,
        })  # fmt: skip
    return metric_rows, eval_rows


def _stop_if_nonfinite(stats, runs, chunk: int) -> None:
    bad_loss = [i for i in range(len(runs)) if int(stats.nonfinite_step[i]) >= 0]
    bad_params = [i for i in range(len(runs)) if not bool(stats.params_finite[i])]
    if not bad_loss and not bad_params:
        return
    if bad_loss:
        step = min(int(stats.nonfinite_step[i]) for i in bad_loss)
        where = f"non-finite loss at env step {step:,}"
    else:
        where = f"non-finite parameters by the end of chunk {chunk}"
    names = ", ".join(f"run {runs[i]['run']} (seed {runs[i]['seed']})" for i in sorted(set(bad_loss + bad_params)))
    raise NonFiniteError(f"{where} in {names}; stopped before checkpointing chunk {chunk}")


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
