"""The `train` command: plan, start JAX, lay out the devices, train, say what happened.

Start-up runs as named steps whose order the code enforces: each takes what the one before
returns (`start_jax` -> `JaxStarted`, which `choose_mesh` needs). Exit status: 0 done, 2 bad
input (one line, before anything is compiled or written), 3 a non-finite loss or parameter, 1 a
write that failed, 4 a lost peer of a multi-host run, 5 an actor or its host env that raised (the
actor-learner), 128 + signal number when stopped by SIGINT/SIGTERM.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import NamedTuple

from purejaxdqn.algorithm import parallel
from purejaxdqn.cli.parsers import TRAIN_PROG as PROG
from purejaxdqn.cli.parsers import UsageError
from purejaxdqn.cli.plan import Plan, make_plan
from purejaxdqn.config import ConfigError
from purejaxdqn.envs.host import is_host_id
from purejaxdqn.host import actor_learner, checkpointing, distributed, hardware, interrupts, memory, report, run_directory, runner, tracking
from purejaxdqn.host.progress import WALL, ProgressBar, count
from purejaxdqn.host.run_options import RunOptions

EXIT_WRITE = 1  # a write failed (full disk, failed checkpoint save): earlier checkpoints are intact
EXIT_USAGE = 2
EXIT_NONFINITE = 3
EXIT_PEER = 4  # multi-host: another process failed or stopped answering
EXIT_ACTOR = 5  # the actor-learner: an actor or its host env raised
BAD_INPUT = (UsageError, ConfigError, run_directory.OutputDirError, run_directory.RunDirError, checkpointing.CheckpointError)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (see the module's docstring).

    As a process's command line (`argv` None) it splits a CPU into one device per core; called
    from Python with an `argv` it leaves the caller's JAX devices alone unless --cpu-devices is
    given."""
    state: dict = {"own_process": argv is None}  # and, once known, the run directory for the resume hint
    argv = sys.argv[1:] if argv is None else argv
    try:
        with interrupts.interruptible():
            return _main(argv, state)
    except interrupts.Interrupted as err:
        print(f"{PROG}: error: stopped by {err.name}; {_resume_hint(state.get('output_dir'))}", file=sys.stderr)
        return err.exit_code
    except Exception as err:
        if not distributed.failed_collective(err):
            raise
        print(f"{PROG}: error: a process of the multi-host run failed or stopped answering "
              f"({checkpointing.one_line(err).split('. ')[0]}); {_resume_hint(state.get('output_dir'))}", file=sys.stderr)  # fmt: skip
        return EXIT_PEER


def _main(argv: list[str], state: dict) -> int:
    checkpointing.quiet_logs()
    try:
        with WALL.phase("plan"):
            plan = make_plan(argv)
        with WALL.phase("backend_start"):
            started = start_jax(plan, state["own_process"])
        with WALL.phase("plan"):
            plan = plan._replace(output_dir=choose_run_dir(plan))
            mesh_shape = choose_mesh(plan, started)
    except BAD_INPUT as err:
        return _usage_error(err)
    with WALL.phase("imports"):
        import_environments()
    if state["own_process"] and not gc.isenabled():  # train.py turned the collector off for the imports
        gc.freeze()  # what they made stays: later collections (compile, run) need not look at it
        gc.enable()
    _warn(plan)
    state["output_dir"] = plan.output_dir  # multi-host too: every process writes checkpoints there
    status, result = _train(plan, mesh_shape, state)
    if status or not distributed.is_main_process():
        return status
    _print_result(plan, result, mesh_shape, started)
    return 0


class JaxStarted(NamedTuple):
    """JAX's backends are up (and joined to the other processes of a multi-host run)."""

    cpu_devices: int | None  # host devices a CPU was split into (None: left as it was)
    on_cpu: bool
    num_devices: int
    xla_flags_added: tuple[str, ...] = ()  # the project's GPU defaults added to XLA_FLAGS


def start_jax(plan: Plan, own_process: bool) -> JaxStarted:
    """Start JAX: first the project's XLA:GPU flags on a GPU machine and the split of a CPU into
    host devices (nothing may have started JAX's backends yet), then the compilation cache, then
    join a multi-host run. Called from Python (not `own_process`), XLA_FLAGS is the caller's."""
    d = plan.devices
    added = hardware.add_gpu_xla_flags() if own_process else ()
    # One device per core for independent runs, unless the user set up devices and hosts.
    split = not d.coordinator and (d.cpu_devices is not None or own_process)
    cpu_devices = hardware.use_cpu_cores(d.cpu_devices) if split else None
    hardware.enable_compilation_cache(d.compilation_cache)
    distributed.initialize_distributed(d.coordinator, d.num_processes, d.process_id, timeout_s=d.timeout_s)
    import jax

    started = JaxStarted(cpu_devices, jax.default_backend() == "cpu", jax.device_count(), added)
    if added and distributed.is_main_process():
        print(f"{PROG}: note: XLA_FLAGS: added the GPU defaults {' '.join(added)} (hardware.GPU_XLA_FLAGS; "
              "a flag your XLA_FLAGS sets wins)", file=sys.stderr)  # fmt: skip
    return started


def import_environments() -> None:
    """gymnax, which the run's first step (`runner.prepare`) needs: imported here, once the
    command line is known to be good, so that its seconds count as imports; its renderers'
    plotting libraries only in name (hardware.deferred_imports: no run renders)."""
    with hardware.deferred_imports():
        import gymnax  # noqa: F401


def choose_run_dir(plan: Plan) -> Path:
    """The run directory: the one named, else a new runs/<env-id>/<timestamp>; multi-host,
    process 0's, which the others must name too or leave out."""
    own = plan.output_dir
    if not distributed.multi_host():
        return own or run_directory.default_output_dir(plan.config.env_id)
    if distributed.is_main_process():
        own = own or run_directory.default_output_dir(plan.config.env_id)
    named = own and str(Path(own).absolute())
    return Path(distributed.same_run_dir(named, "--resume" if plan.resume else "--output-dir"))


def choose_mesh(plan: Plan, started: JaxStarted) -> parallel.MeshShape:
    """The (runs, data, model) mesh; a resumed run keeps its data axis (and, where it can, the rest)."""
    d = plan.devices
    runs, data, model = d.mesh_runs, d.mesh_data, d.mesh_model
    if plan.resume:
        runs, data, model = resume_mesh(plan.resume.mesh, runs, data, model, started.num_devices)
    shape = parallel.choose_mesh(plan.config, len(plan.runs), started.num_devices, runs, data,
                                 auto_data=not started.on_cpu, model=1 if model is None else model)  # fmt: skip
    if distributed.multi_host() and shape.size != started.num_devices:
        raise ConfigError("--mesh-runs/--mesh-data", f"a multi-host run uses every device of every process: "
                          f"{started.num_devices} devices, but the mesh has {shape.size}")  # fmt: skip
    return shape


def resume_mesh(saved: dict, runs: int | None, data: int | None, model: int | None,
                num_devices: int) -> tuple[int | None, int, int]:  # fmt: skip
    """The (runs, data, model) mesh axes a resumed run uses. The runs axis only groups
    independent runs, so any size that divides the runs will do (`choose_mesh` checks it), and
    the model axis only lays out the same parameters; unset, each keeps its saved size where
    the devices allow it (the runs axis is chosen again otherwise). The data axis must stay as
    saved: each device's env columns, replay shard and RNG streams belong to it."""
    if data is not None and data != saved["data"]:
        raise ConfigError("--mesh-data", f"the run was made with --mesh-data {saved['data']}; a resumed run keeps it "
                          "(each data shard's envs, replay and RNG streams belong to its device)")  # fmt: skip
    model = saved.get("model", 1) if model is None else model
    if runs is None and saved["runs"] * saved["data"] * model <= num_devices:
        runs = saved["runs"]
    return runs, saved["data"], model


def _warn(plan: Plan) -> None:
    """The plan's warnings on stderr (process 0's; `--no-progress` silences them, summary.json
    keeps them)."""
    if distributed.is_main_process() and plan.progress is not False and not plan.resume:  # said at its start
        for line in plan.warnings:
            print(f"{PROG}: warning: {line}", file=sys.stderr)


def _options(plan: Plan) -> RunOptions:
    return RunOptions(
        output_dir=plan.output_dir, overwrite=plan.overwrite, write_outputs=distributed.is_main_process(),
        resume=plan.resume is not None, command=plan.command, tracking=plan.tracking, preset=plan.preset,
        rerun_of=plan.rerun_of, config_file=plan.config_file, warnings=plan.warnings,
    ).with_cadence(plan.cadence)  # fmt: skip


def _train(plan: Plan, mesh_shape: parallel.MeshShape, state: dict) -> tuple[int, runner.RunResult | None]:
    """Prepare and train; the exit status, and the result when it is 0."""
    main_process = distributed.is_main_process()
    progress = ProgressBar(plan.config.actual_total_steps, enabled=plan.progress if main_process else False, runs=len(plan.runs))
    try:
        with _prepare(plan, mesh_shape) as training:
            if plan.resume and training.start_chunk == 0 and main_process:
                print(f"{plan.output_dir} has no complete checkpoint (stopped before its first save): "
                      "starting it over from scratch with its saved config.json")  # fmt: skip
            return 0, training.train(progress)
    except (memory.OutOfMemoryError, run_directory.OutputDirError, run_directory.RunDirError) as err:
        state["output_dir"] = None  # refused before anything was written
        return _usage_error(err), None
    except (checkpointing.SaveError, OSError) as err:  # a full disk, a failed save, ...
        print(f"{PROG}: error: {err}; {_resume_hint(plan.output_dir)}", file=sys.stderr)
        return EXIT_WRITE, None
    except (tracking.TrackingError, checkpointing.CheckpointError) as err:  # a tracker that could not start, a damaged checkpoint
        return _usage_error(err), None
    except runner.NonFiniteError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_NONFINITE, None
    except actor_learner.ActorError as err:
        print(f"{PROG}: error: {err}; {_resume_hint(plan.output_dir)}", file=sys.stderr)
        return EXIT_ACTOR, None
    finally:
        progress.close()  # the spinner or bar of a run that stopped early


def _prepare(plan: Plan, mesh_shape: parallel.MeshShape) -> runner.Training:
    """The compiled loop's training, or the actor-learner's for a host env."""
    if is_host_id(plan.config.env_id):
        return actor_learner.prepare(plan.config, plan.runs, plan.settings, _options(plan))
    return runner.prepare(plan.config, plan.runs, plan.settings, _options(plan), mesh_shape=mesh_shape)


def _print_result(plan: Plan, result: runner.RunResult, mesh_shape: parallel.MeshShape, started: JaxStarted) -> None:
    config, runs, s = plan.config, plan.runs, result.summary
    if config.distributional and (warning := report.support_warning(config.v_min, config.v_max, s["last_chunk_q_mean"])):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    if len(runs) == 1:
        print(f"{config.env_id}: final eval return {s['final_eval_return_mean'][0]:.1f} "
              f"(min {s['final_eval_return_min'][0]:.1f}) after {config.actual_total_steps:,} env steps")  # fmt: skip
    else:
        print(f"{config.env_id}: {len(runs)} runs ({count(len(plan.settings), 'setting')} x {count(plan.num_seeds, 'seed')}), "
              f"{config.actual_total_steps:,} env steps each, one compiled program")  # fmt: skip
        print(report.format_table(result.table))
    processes = s["processes"]
    if mesh_shape.size > 1 or processes > 1:
        model = f" x {mesh_shape.model} (model)" if mesh_shape.model > 1 else ""
        print(f"mesh: {mesh_shape.runs} (runs) x {mesh_shape.data} (data){model} devices, {count(processes, 'process')}")
    if started.on_cpu and started.cpu_devices and started.cpu_devices > 1 and mesh_shape.runs > 1:
        print(f"cpu: runs split over {mesh_shape.runs} host devices, one per core (--cpu-devices 1 to turn off)")
    if plan.resume and s["resumed_from_chunk"]:
        print(f"resumed from the checkpoint after chunk {s['resumed_from_chunk']} of {config.num_chunks}")
    print(
        f"compile {s['compile_s']:.1f} s | run {s['run_s']:.1f} s | "
        f"{s['env_steps_per_s']:,.0f} env steps/s | {s['updates_per_s']:,.0f} updates/s"
        + (f" (the whole run: {s['segments']} segments, its start and {count(s['segments'] - 1, 'resume')})"
           if s.get("segments", 1) > 1 else "")  # fmt: skip
    )
    if s.get("policy_lag_mean") is not None:
        print(f"actor-learner: {count(s['actors'], 'actor')} ({s['host_loop']}, rate limit {s['rate_limit']}), policy lag "
              f"{s['policy_lag_mean']:.1f} updates on average, {s['policy_lag_max']:.0f} at most")  # fmt: skip
    print(f"outputs: {plan.output_dir}")
    for line in tracking.where(plan.tracking, plan.output_dir, len(runs)):
        print(line)


def _resume_hint(run_dir: Path | None) -> str:
    """Which checkpoint survived and how to continue, for a run that stopped early."""
    if run_dir is None or not (Path(run_dir) / run_directory.CONFIG_FILE).is_file():
        return "nothing was written"
    try:
        step = checkpointing.latest_step(run_dir)
    except checkpointing.CheckpointError:
        return f"no checkpoint was complete yet; `{PROG} --resume {run_dir}` starts the run over"
    where = " on every process (its own --process-id, the same --num-processes)" if distributed.multi_host() else ""
    return f"checkpoint {step} (after chunk {step}) is intact; continue with `{PROG} --resume {run_dir}`{where}"


def _usage_error(err: Exception) -> int:
    print(f"{PROG}: error: {err}", file=sys.stderr)
    return EXIT_USAGE
