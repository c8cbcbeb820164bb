"""Host side of training: compile once, call the jitted chunk in a loop, log and time it.

A batch of runs (seeds x hyperparameter settings) is one `vmap` over the pure per-run
functions of `loop.make_trainer`, so any number of runs is one compiled program.
Compile time and run time are measured separately (ahead-of-time `lower().compile()`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import platform
import resource
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.host import checkpointing, distributed, hardware, interrupts, memory, provenance, report, run_directory, tracking
from purejaxdqn.algorithm import loop, parallel
from purejaxdqn.config import SWEEPABLE, Config, HParams, check_sweep
from purejaxdqn.config.batch import make_batch
from purejaxdqn.envs import env_from_config
from purejaxdqn.algorithm.loop import TrainState, make_trainer, run_axes
from purejaxdqn.host.progress import WALL, ProgressBar, runs_text
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
    """The grid of swept hyperparameter settings x seeds config.seed, config.seed + 1, ...,
    checked (ConfigError) and laid out by `config.batch.make_batch` (the command line's check);
    `config` is compiled as it is. Returns (runs, settings)."""
    return make_batch(config, num_seeds, sweep, compile_in=False)[1:]


def swept_values(runs: list[dict]) -> dict[str, list]:
    """Each hyperparameter some run sets, with its values in order."""
    return {n: list(dict.fromkeys(r[n] for r in runs if n in r)) for n in SWEEPABLE if any(n in r for r in runs)}


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
    restart_envs: Any = None  # restart_envs(state) -> state for envs a checkpoint cannot hold (else None)


def compile_program(config: Config, runs: list[dict], mesh_shape: parallel.MeshShape,
                    one_state: TrainState | None = None) -> Program:  # fmt: skip
    """Build and compile (ahead of time) init and run_chunk for this batch of runs and mesh.

    With a mesh of several devices the functions are `jax.shard_map`s over a (runs, data, model)
    mesh (see algorithm/parallel.py); otherwise they run on the default device. `one_state`: one run's
    state shapes, if known already (`_one_run_state`).
    """
    t0 = time.perf_counter()
    hp, hp_axes = run_hparams(config, runs)
    seeds = np.array([r["seed"] for r in runs], np.uint32)
    one_state = _one_run_state(config) if one_state is None else one_state
    # Only a real data axis changes the per-run program; a runs-only mesh runs the 1-device one.
    data_axis = parallel.DATA if mesh_shape.data > 1 else None
    per_device = len(runs) // mesh_shape.runs
    trainer = make_trainer(config, data_axis, mesh_shape.data, model_parallel=mesh_shape.model > 1, runs_per_device=per_device)
    axes = run_axes(one_state)
    init_fn, chunk_fn = _batched(trainer, axes, hp_axes, per_device)
    if mesh_shape.size > 1:
        mesh = parallel.make_mesh(mesh_shape)
        specs, hp_specs = parallel.state_specs(one_state), parallel.hparam_specs(hp_axes)
        init_fn = parallel.shard(init_fn, mesh, (parallel.P(parallel.RUNS), hp_specs), specs)
        chunk_fn = parallel.shard(chunk_fn, mesh, (specs, hp_specs), specs)
        seeds = parallel.to_global(seeds, mesh, parallel.P(parallel.RUNS))
        hp = jax.tree.map(lambda x, spec: parallel.to_global(x, mesh, spec), hp, hp_specs)
    lowered_init = jax.jit(init_fn).lower(seeds, hp)
    if mesh_shape.size == 1:  # init's XLA compile runs beside the chunk's tracing and compile
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            compiling_init = pool.submit(lowered_init.compile)
            run_chunk = jax.jit(chunk_fn, donate_argnums=0).lower(lowered_init.out_info, hp).compile()
            init = compiling_init.result()
        abstract = _with_shardings(lowered_init.out_info, init.output_shardings)
    else:  # the chunk's state layout is init's compiled output shardings
        init = lowered_init.compile()
        abstract = _with_shardings(lowered_init.out_info, init.output_shardings)
        layout = _fixed_layout(init.output_shardings, hp, mesh_shape)
        run_chunk = jax.jit(chunk_fn, donate_argnums=0, **layout).lower(abstract, hp).compile()
    restart = None
    if trainer.venv.spec.external_state:  # one device only (config/checks.py refuses a mesh)
        restart = jax.jit(_per_run(trainer.restart_envs, axes, len(runs)), donate_argnums=0)
    return Program(init, run_chunk, seeds, hp, abstract, time.perf_counter() - t0, restart)


def _with_shardings(shapes, shardings):
    """ShapeDtypeStructs of `shapes` placed as `shardings` say."""
    return jax.tree.map(lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes, shardings)


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
    """One whole run's state shapes and dtypes (its one-device Trainer's)."""
    return jax.eval_shape(make_trainer(config).init, jax.random.key(0), config.hparams())


class ChunkOutputs(NamedTuple):
    """What the host reads after each chunk (host copies)."""

    env_steps: Any
    updates: Any  # per run
    stats: Any  # loop.ChunkStats, per run
    evals: Any  # loop.EvalLog, per run


class Batch(NamedTuple):
    """What is trained together: one config, its runs (seeds x settings) and the device mesh."""

    config: Config
    runs: list[dict]
    settings: list[dict]
    mesh_shape: parallel.MeshShape

    @property
    def layout(self) -> dict:
        """The loop layout its program compiles (`loop.layout`, for its runs per device)."""
        return loop.layout(self.config, len(self.runs) // self.mesh_shape.runs)


def train_runs(
    config: Config,
    runs: list[dict],
    settings: list[dict] | None = None,
    options: RunOptions | None = None,
    *,
    progress: ProgressBar | None = None,
    mesh_shape: parallel.MeshShape | None = None,
    available_memory: int | None = None,
) -> RunResult:
    """Train every run in `runs` together in one compiled program, driven as `options` say
    (run_options.RunOptions: output dir, checkpoint cadence, resume, sinks; default: write
    nothing): `prepare`, then `Training.train`.

    Before compiling: checks the memory estimate (raises memory.OutOfMemoryError); only then,
    with an output dir, prepares the run directory (run_directory.create, or .resume with
    `resume`). With an output dir, the full state is checkpointed as `checkpointing.SavePolicy`
    says (`checkpoint_every` None: never). A resumed run continues from its newest complete
    checkpoint (from scratch if it has none yet); the result is bit-identical to the run never
    interrupted (same devices), and summary.json's timings add up all the processes that worked
    on it. A failed or skipped save raises checkpointing.CheckpointError. A non-finite loss or
    parameter stops the run with NonFiniteError before that chunk is checkpointed. Multi-host,
    every process passes the same `output_dir` (only process 0 has `write_outputs`, takes the
    lock and writes the run files) and writes its own shards of each checkpoint there; a run
    that fails otherwise than on a NaN (e.g. a lost peer) gives up its pending save instead of
    waiting for peers. Each chunk's rows go to metrics.jsonl and evals.jsonl and to the sinks
    `tracking` names (tracking.py); `progress` shows the compile and then the chunks.
    """
    with prepare(config, runs, settings, options, mesh_shape=mesh_shape, available_memory=available_memory) as training:
        return training.train(progress)


def prepare(
    config: Config,
    runs: list[dict],
    settings: list[dict] | None = None,
    options: RunOptions | None = None,
    *,
    mesh_shape: parallel.MeshShape | None = None,
    available_memory: int | None = None,
) -> "Training":
    """Everything before the compile: the memory check, then (with an output dir) the run
    directory. Nothing is created, locked or written unless the memory check passes."""
    t_begin, cpu_begin = time.perf_counter(), time.process_time()
    options = options or RunOptions()
    batch = Batch(config, runs, [{}] if settings is None else settings, mesh_shape or parallel.MeshShape(1, 1))
    check_sweep(config, swept_values(runs), compile_in=False)  # the program is compiled as `config` says
    one_state = _one_run_state(config)
    # One device's share of a run: its data shard of envs and replay, its model shard of the
    # hidden layers, its part of the eval episodes.
    device_run_bytes = (memory.device_state_bytes(one_state, batch.mesh_shape, len(config.widths))
                        + eval_working_bytes(config) // batch.mesh_shape.data)  # fmt: skip
    estimate = memory.check(device_run_bytes, len(runs) // batch.mesh_shape.runs, available_memory)
    run_dir = _open_run_dir(batch, options) if options.output_dir is not None else None
    WALL.add("prepare", time.perf_counter() - t_begin, time.process_time() - cpu_begin)
    return Training(batch, options, run_dir, one_state, estimate, t_begin)


def _open_run_dir(batch: Batch, options: RunOptions) -> run_directory.RunDir:
    """The run directory, new or resumed; written by this process only with `write_outputs`."""
    writing = options.write_outputs
    if options.resume:
        return run_directory.resume(options.output_dir, writing, options.command, run_directory.trained_settings(batch.config, batch.runs))
    record = run_directory.RunRecord(
        batch.config, batch.runs, batch.settings, batch.mesh_shape.as_dict(), jax.process_count(), options.preset,
        options.cadence(), options.rerun_of, provenance.collect(options.command) if writing else None, options.config_file,
    )  # fmt: skip
    return run_directory.create(options.output_dir, record, options.overwrite, writing, options.command)


@dataclasses.dataclass
class Timers:
    """Seconds the host spent on what is not training: checkpoint saves and logging."""

    save_s: float = 0.0
    log_s: float = 0.0

    @contextlib.contextmanager
    def timing(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, name, getattr(self, name) + time.perf_counter() - t0)


class ChunkSaves:
    """A chunk loop's checkpoints: after a chunk, a save when `SavePolicy` says one is due or a
    signal is pending (interrupts.held_to_chunk_end), timed as `save_s` and never cut by a
    signal. The manager is made at the first save (every process at the same chunk; its
    directory is there from the start); orbax is imported in the background meanwhile.
    `finish` lets pending asynchronous saves complete. `saved(state)` is what is written (the
    state itself unless given), computed only for a save."""

    def __init__(self, training: "Training", timers: Timers, saved=lambda state: state):
        self.training, self.timers, self.saved, self.manager, self.policy = training, timers, saved, None, None
        t, c = training, training.batch.config
        if t.run_dir is not None and t.options.checkpoint_every is not None:
            self.policy = checkpointing.SavePolicy(t.options.checkpoint_every, t.options.checkpoint_min_interval_s, c.num_chunks)
            if t.writing:
                checkpointing.make_directory(t.run_dir.path)

    def after_chunk(self, chunk: int, state) -> None:
        """Save `state` as checkpoint `chunk + 1` if due. After the first chunk, what the saves
        and the plot at the end need (orbax, matplotlib) is imported in the background."""
        t = self.training
        if chunk == t.start_chunk and t.writing:
            hardware.run_deferred(hardware.PLOT_MODULES)
        if self.policy is None:
            return
        if chunk == t.start_chunk:
            checkpointing.prefetch()
        if self.policy.due(chunk) or interrupts.pending():
            with self.timers.timing("save_s"), interrupts.deferred():
                self.manager = self.manager or checkpointing.manager(t.run_dir.path, t.options.keep_checkpoints)
                checkpointing.save(self.manager, chunk + 1, self.saved(state), run_directory.trained_settings(t.batch.config, t.batch.runs))

    def abandon(self) -> None:
        """Give up the pending save (multi-host, a peer may be gone)."""
        self.manager = None

    def finish(self) -> None:
        if self.manager is not None:  # also when stopping on a NaN or a signal
            with self.timers.timing("save_s"), interrupts.deferred():
                checkpointing.finish(self.manager)


@dataclasses.dataclass
class Training:
    """A prepared batch of runs (`prepare`): its run directory is ready (and locked, where this
    process writes it) until `close`. `train` compiles, runs the chunks and sums them up."""

    batch: Batch
    options: RunOptions
    run_dir: run_directory.RunDir | None
    one_state: TrainState  # one run's state shapes (jax.eval_shape)
    memory_estimate: int
    t_begin: float

    @property
    def start_chunk(self) -> int:
        """The checkpoint a resumed run continues from (0: from the start)."""
        return self.run_dir.start_chunk if self.run_dir is not None else 0

    @property
    def writing(self) -> bool:
        return self.run_dir is not None and self.run_dir.writing

    def train(self, progress: ProgressBar | None = None) -> RunResult:
        progress = progress or ProgressBar(0, enabled=False)
        program = self._compile(progress)
        t_init = time.perf_counter()
        state = self._initial_state(program)
        state, run_s, timers = self._run_chunks(program, state, progress, init_s=time.perf_counter() - t_init)
        progress.close()
        return self._finish(program, state, run_s, timers)

    def _compile(self, progress: ProgressBar) -> Program:
        b = self.batch
        progress.status(f"compiling {runs_text(len(b.runs))} ({b.config.env_id}) ...")
        program = compile_program(b.config, b.runs, b.mesh_shape, self.one_state)
        shape = b.layout
        unrolled = f", unroll {shape['unroll']}" if shape["unroll"] > 1 else ""
        progress.note(f"compiled {runs_text(len(b.runs))} in {program.compile_s:.1f} s ({shape['loop']} loop{unrolled})")
        return program

    def _initial_state(self, program: Program) -> TrainState:
        """A new batch's state, or a resumed one's from its checkpoint; a resumed run's logs lose
        the rows written after that checkpoint (all of them when starting over)."""
        if self.start_chunk:
            state = checkpointing.restore(self.run_dir.path, self.start_chunk, program.abstract_state)
            if program.restart_envs is not None:  # the emulators were not saved: new episodes begin
                state = program.restart_envs(state)
        else:
            state = program.init(program.seeds, program.hp)
        if self.run_dir is not None and self.run_dir.resumed:
            self.run_dir.drop_rows_after(int(distributed.fetch(state.env_steps)))  # a collective: every process takes part
        if self.run_dir is not None:
            self.run_dir.add_segment(program.compile_s)
        return jax.block_until_ready(state)

    def _run_chunks(self, program: Program, state: TrainState, progress: ProgressBar, init_s: float):
        """The chunk loop: run, log, check for NaN, save when due. Returns the final state, the
        training seconds (init's included; saves and logging apart) and the host timers
        (saves: `ChunkSaves`)."""
        b, timers = self.batch, Timers()
        saves = ChunkSaves(self, timers)
        t_run = time.perf_counter() - init_s
        eval_seen = int((distributed.fetch(state.evals).step[0] > 0).sum())
        logger = ChunkLogger(b, self.run_dir.path if self.writing else None, self.options.tracking, timers, eval_seen)
        # Single-host, a signal lets the chunk in flight finish and saves it (interrupts.held_to_chunk_end);
        # multi-host it stops at once: a save is a collective, and the other processes got no signal.
        hold = contextlib.nullcontext() if distributed.multi_host() else interrupts.held_to_chunk_end()
        try:
            with logger:
                with hold:
                    for chunk in range(self.start_chunk, b.config.num_chunks):
                        state = self._one_chunk(program, state, chunk, logger, progress)
                        saves.after_chunk(chunk, state)
                        interrupts.raise_pending()
                    jax.block_until_ready(state)
                logger.log_end(state)
        except BaseException as err:
            if distributed.multi_host() and not isinstance(err, NonFiniteError):
                saves.abandon()  # a peer may be gone: its pending save cannot complete; the earlier ones are intact
            raise
        finally:
            saves.finish()
        return state, time.perf_counter() - t_run - timers.save_s - timers.log_s, timers

    def _one_chunk(self, program: Program, state: TrainState, chunk: int, logger: "ChunkLogger",
                   progress: ProgressBar) -> TrainState:  # fmt: skip
        config, t_chunk = self.batch.config, time.perf_counter()
        state = program.run_chunk(state, program.hp)
        out = ChunkOutputs(*distributed.fetch((state.env_steps, state.learner.updates, state.stats, state.evals)))
        chunk_s = time.perf_counter() - t_chunk
        steps_per_s = config.iterations_per_chunk * config.num_envs * len(self.batch.runs) / chunk_s
        latest = logger.log(chunk, out, chunk_s=chunk_s, env_steps_per_s=steps_per_s)
        _stop_if_nonfinite(out.stats, self.batch.runs, chunk)
        progress.update(int(out.env_steps), steps_per_s, latest)
        return state

    def _finish(self, program: Program, state: TrainState, run_s: float, timers: Timers) -> RunResult:
        """curves.png, then summary.json (with the process's wall split, when it keeps one:
        progress.WALL) and the result."""
        b, t_finish, cpu_finish = self.batch, time.perf_counter(), time.process_time()
        evals, final_updates, stats = distributed.fetch((state.evals, state.learner.updates, state.stats))
        resumed = self.run_dir is not None and self.run_dir.resumed
        earlier = self.run_dir.path if resumed and self.writing else None
        timing = _whole_run_timing(earlier, self.start_chunk, program.compile_s, run_s)
        summary = self._summary(evals, final_updates, timing, timers)
        with np.errstate(invalid="ignore", divide="ignore"):  # a run without updates in its last chunk: None
            q_mean = np.asarray(stats.q_sum, np.float64).reshape(len(b.runs), -1).sum(1) / np.asarray(stats.updates).reshape(len(b.runs), -1).sum(1)
        summary["last_chunk_q_mean"] = [float(q) if np.isfinite(q) else None for q in q_mean]
        summary["total_s"] = time.perf_counter() - self.t_begin
        summary["settings"] = table = report.summarize(b.runs, evals.mean, b.settings)
        if self.writing:
            self._write_results(summary, evals, this_process={
                "compile": program.compile_s, "run": run_s, "checkpoint_saves": timers.save_s, "logging": timers.log_s,
            }, started=(t_finish, cpu_finish))  # fmt: skip
        return RunResult(b.config, b.runs, b.settings, state, np.asarray(evals.step[0]), np.asarray(evals.mean),
                         np.asarray(evals.min), summary, table)  # fmt: skip

    def _summary(self, evals, final_updates, timing: dict, timers: Timers) -> dict:
        """summary.json, but for total_s and the per-setting table."""
        batch, resumed = self.batch, self.run_dir is not None and self.run_dir.resumed
        config, runs = batch.config, batch.runs
        return {
            "env_id": config.env_id,
            "num_runs": len(runs),
            "env_steps_per_run": config.actual_total_steps,
            "updates_per_run": [int(u) for u in final_updates],
            "final_eval_return_mean": [float(x) for x in evals.mean[:, -1]],
            "final_eval_return_min": [float(x) for x in evals.min[:, -1]],
            f"last_{report.LAST_K}_evals_return_mean": [float(x) for x in report.last_evals_mean(evals.mean)],
            "eval_epsilon": config.eval_epsilon,
            "memory_estimate_bytes": self.memory_estimate,
            "mesh": batch.mesh_shape.as_dict(),
            **batch.layout,
            "processes": jax.process_count(),
            **timing,
            "checkpoint_save_s": timers.save_s,
            "logging_s": timers.log_s,
            "resumed_from_chunk": self.start_chunk if resumed else None,
            "warnings": list(self.options.warnings),
            "total_s": None,  # set last, once everything is written
            "env_steps_per_s": config.actual_total_steps * len(runs) / timing["run_s"],
            "updates_per_s": int(np.asarray(final_updates).sum()) / timing["run_s"],
            **memory_report(),
            **platform_report(),
        }

    def _write_results(self, summary: dict, evals, this_process: dict[str, float], started: tuple[float, float]) -> None:
        """curves.png, then summary.json: the last file a finished run writes. With the process's
        wall clock (the command line), summary.json splits the wall time so far ("wall_s":
        process creation to this write) into "wall_split_s": this process's own compile, run
        (init included), checkpoint saves and logging, plus the clock's spans (interpreter,
        imports, backend_start, plan, prepare), "summary_and_plot" (from `started`, the
        (wall, CPU) clocks when the summary began) and "other"; "wall_split_cpu_s" holds the CPU
        seconds of the clock's spans."""
        b, path = self.batch, self.run_dir.path
        train = report.training_returns(run_directory.read_jsonl(path / run_directory.METRICS_FILE), len(b.runs))
        run_directory.write_atomically(path / run_directory.CURVES_FILE, lambda tmp: report.plot_curves(
            tmp, evals.step[0], evals.mean, b.runs, b.settings, title=f"{b.config.env_id} ({runs_text(len(b.runs))})", train=train,
        ))  # fmt: skip
        if WALL.started:
            WALL.add("summary_and_plot", time.perf_counter() - started[0], time.process_time() - started[1])
            summary["wall_s"], summary["wall_split_s"] = WALL.split(**this_process)
            summary["wall_split_cpu_s"] = WALL.cpu_split()
        run_directory.write_json(path / run_directory.SUMMARY_FILE, summary)

    def close(self) -> None:
        if self.run_dir is not None:
            self.run_dir.close()

    def __enter__(self) -> "Training":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ChunkLogger:
    """Each chunk's rows to metrics.jsonl, evals.jsonl and the sinks (tracking.py), timed apart
    from training; a context that opens and closes the sinks. Without a run directory to write
    (`path` None) it only keeps count of the evaluations seen."""

    def __init__(self, batch: Batch, path: Path | None, spec: tracking.TrackingSpec | None, timers: Timers, eval_seen: int):
        self.batch, self.path, self.spec, self.timers, self.eval_seen = batch, path, spec, timers, eval_seen
        self.host_hp = jax.tree.map(lambda x: np.broadcast_to(x, (len(batch.runs),)),
                                    jax.device_get(run_hparams(batch.config, batch.runs)[0]))  # fmt: skip
        self.sinks = None

    def __enter__(self) -> "ChunkLogger":
        if self.path is not None:
            with self.timers.timing("log_s"):
                self.sinks = tracking.open_sinks(self.spec, self.path, self.batch.runs, self.batch.config.to_dict())
        return self

    def __exit__(self, *exc) -> None:
        if self.sinks is not None:
            with self.timers.timing("log_s"):
                self.sinks.close()

    def log_end(self, state: TrainState) -> None:
        """What the trackers get once training is over, from one fetch of the final state (every
        process takes part: multi-host, a collective; the writing one logs): each run's final
        results (`_results`) and, where wanted, the end-of-training video (`_video`)."""
        if self.spec is None or not self.spec.log:
            return
        params = state.learner.params if self.spec.wants_video else None
        evals, env_steps, every_run = distributed.fetch((state.evals, state.env_steps, params))  # global arrays: no slicing before
        if self.sinks is None:
            return
        with self.timers.timing("log_s"):
            self._results(evals, int(env_steps))
            if every_run is not None:
                self._video(jax.tree.map(lambda x: x[0], every_run), int(env_steps))

    def _results(self, evals, env_steps: int) -> None:
        """Each run's final eval return and its mean over the last evals, beside its env, seed
        and swept values (tracking.RESULT_METRICS: TensorBoard's HParams, W&B's summary)."""
        last = report.last_evals_mean(evals.mean)
        for i, r in enumerate(self.batch.runs):
            swept = {"env_id": self.batch.config.env_id, **{k: v for k, v in r.items() if k not in ("run", "setting")}}
            metrics = dict(zip(tracking.RESULT_METRICS, (float(evals.mean[i, -1]), float(last[i]))))
            self.sinks.results(r["run"], env_steps, swept, metrics)

    def _video(self, params, env_steps: int) -> None:
        """The end-of-training video (tracking.VIDEO_TAG): a greedy episode of run 0 with its final
        parameters `params`, seed the run's, drawn by video.py."""
        from purejaxdqn.host.policy import make_policy
        from purejaxdqn.host.video import gif_bytes, render_episode

        policy = make_policy(self.batch.config, params)
        frames, _ = render_episode(policy, seed=self.batch.runs[0]["seed"], max_frames=tracking.VIDEO_FRAMES)
        self.sinks.video(0, env_steps, tracking.Clip(gif_bytes(frames), *frames[0].shape[:2]))

    def log(self, chunk: int, out: ChunkOutputs, **timing: float) -> float | None:
        """Log one chunk (`timing`: chunk_s and env_steps_per_s, added to its metric rows);
        returns the mean of the latest eval returns (None before any)."""
        metric_rows, eval_rows = _chunk_rows(chunk, self.batch.runs, out, self.eval_seen, self.host_hp, self.batch.config)
        self.eval_seen = int((out.evals.step[0] > 0).sum())
        for row in metric_rows:
            row.update(timing)
        if self.sinks is not None:
            with self.timers.timing("log_s"):
                self.sinks.log(metric_rows, eval_rows)
        latest = [row["eval_return_mean"] for row in metric_rows if row["eval_return_mean"] is not None]
        return float(np.mean(latest)) if latest else None


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


def _chunk_rows(chunk: int, runs: list[dict], out: ChunkOutputs, eval_seen: int, host_hp: HParams, config: Config):
    """metrics.jsonl rows (one per run, or with `log_every` one per run and window of the
    chunk, in env-step order) and evals.jsonl rows (new evals) after a chunk."""
    env_steps, updates, stats, evals = out
    eval_done = int((evals.step[0] > 0).sum())
    eval_rows = [
        {**r, "env_steps": int(evals.step[i, j]),
         "eval_return_mean": float(evals.mean[i, j]), "eval_return_min": float(evals.min[i, j])}
        for j in range(eval_seen, eval_done) for i, r in enumerate(runs)
    ]  # fmt: skip
    windowed = config.log_windows > 1
    sums = [np.asarray(x).reshape(len(runs), -1) for x in (stats.updates, stats.loss_sum, stats.q_sum, stats.episodes,
                                                            stats.return_sum, stats.length_sum)]  # fmt: skip
    n_upd, loss, q, n_ep, ret, length = sums
    width = config.log_every or config.chunk_steps  # env steps of a window (the last one may be shorter)
    ends = int(env_steps) - config.chunk_steps + np.minimum((np.arange(config.log_windows) + 1) * width, config.chunk_steps)
    epsilon = np.asarray(linear_epsilon(ends[None, :], np.asarray(host_hp.eps_start)[:, None], np.asarray(host_hp.eps_end)[:, None],
                                        np.asarray(host_hp.eps_decay_steps)[:, None]))  # fmt: skip
    after = np.asarray(updates)[:, None] - (n_upd[:, ::-1].cumsum(axis=1)[:, ::-1] - n_upd)  # cumulative at each window's end
    metric_rows = []
    for w, end in enumerate(ends):
        seen = int((evals.step[0, :eval_done] <= end).sum())  # evals done by the window's end
        for i, r in enumerate(runs):
            u, e = int(n_upd[i, w]), int(n_ep[i, w])
            metric_rows.append({
                "chunk": chunk, **({"window": w} if windowed else {}), **r,
                "env_steps": int(end), "updates": int(after[i, w]),
                "epsilon": float(epsilon[i, w]),
                "loss": float(loss[i, w]) / u if u else None,
                "q_mean": float(q[i, w]) / u if u else None,
                "episodes": e,
                "train_return": float(ret[i, w]) / e if e else None,
                "train_length": float(length[i, w]) / e if e else None,
                "eval_return_mean": float(evals.mean[i, seen - 1]) if seen else None,
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
    else:
        init = jax.vmap(init_one, in_axes=(0, hp_axes), out_axes=axes)
    return init, _per_run(trainer.run_chunk, axes, num_runs, hp_axes)


def _per_run(fn, axes: TrainState, num_runs: int, *arg_axes):
    """`fn(state, *args) -> state` of one run over a batch of `num_runs` runs, as `_batched`
    lays them out: vmapped, or for one run the run axis dropped and added back (bitcasts)."""
    if num_runs == 1:
        return lambda state, *args: _add_run_axis(fn(_drop_run_axis(state, axes), *args), axes)
    return jax.vmap(fn, in_axes=(axes, *arg_axes), out_axes=axes)


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
