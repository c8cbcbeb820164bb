"""Command line: `python -m purejaxdqn.train [options]`.

Every `Config` field is an option (`--lr`, `--buffer-size`, ...), grouped as in `Config`.
Options override the chosen preset (or the saved config of `--config`), which overrides
`Config`'s defaults; `--help` shows the defaults of the preset the command would use. Bad input ends with
one line on stderr naming the option and exit status 2, before anything is compiled and
before anything on disk is touched.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import NamedTuple

from purejaxdqn import __version__
from purejaxdqn.host import tracking
from purejaxdqn.config import HPARAM_DTYPES, PRESETS, SEED_LIMIT, Config, ConfigError, from_preset, preset_names, validate
from purejaxdqn.host.run_options import CADENCE_FIELDS, RunOptions, cadence_defaults, option_dest
from purejaxdqn.environments import SUPPORTED_ENV_IDS

PROG = "python -m purejaxdqn.train"  # also installed as the `purejaxdqn-train` console script
EXIT_WRITE = 1  # a write failed (full disk, failed checkpoint save): earlier checkpoints are intact
EXIT_USAGE = 2
EXIT_NONFINITE = 3
EXIT_PEER = 4  # multi-host: another process failed or stopped answering
GROUP_TITLES = {
    "environment": "environment",
    "run": "run length, seed and logging",
    "network": "Q-network",
    "replay": "replay buffer",
    "learner": "learner (lr, gamma, target, loss, update schedule)",
    "exploration": "epsilon-greedy exploration",
}


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UsageError(message)


def _int(text: str) -> int:
    """Integers as 500000, 500_000 or 5e5."""
    try:
        return int(text.replace("_", ""))
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}")
    return int(value)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None


def _widths(text: str) -> tuple[int, ...]:
    """Comma-separated layer widths, e.g. 120,84. An empty string means no layers."""
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths must be comma-separated integers, got {text!r}") from None


def _negative_values_attached(argv: list[str]) -> list[str]:
    """`--lr -1e-3` as `--lr=-1e-3`: argparse would take `-1e-3` for an option and say
    "expected one argument" instead of letting validation name the bad value."""
    out: list[str] = []
    for token in argv:
        prev = out[-1] if out else ""
        if token.startswith("-") and _is_number(token) and prev.startswith("--") and "=" not in prev:
            out[-1] = f"{prev}={token}"
        else:
            out.append(token)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text.replace("_", ""))
    except ValueError:
        return False
    return True


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(defaults: Config | None = None, preset: str = "cartpole") -> argparse.ArgumentParser:
    """The parser; each setting's help shows its value in `defaults` (default: the bare
    command's config, the `preset` named)."""
    defaults = defaults or from_preset(None)
    parser = _Parser(
        prog=PROG,
        description=(
            "Train a DQN agent on a gymnax environment, entirely on the accelerator. With no "
            f"options: CartPole-v1 with the tuned 'cartpole' preset. Defaults shown: {preset}."
        ),
        epilog="Option values override the preset (or --config), which overrides the plain defaults; "
        "'--env-id ID --help', '--preset NAME --help' or '--config RUN_DIR --help' shows the defaults it starts from.",
        argument_default=argparse.SUPPRESS,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"purejaxdqn {__version__}")
    main = parser.add_argument_group("preset and outputs")
    main.add_argument(
        "--preset", metavar="NAME[,NAME...]",
        help="named settings to start from, applied left to right. Base presets (one per env): "
        "'cartpole' (the default on CartPole-v1), 'reference' (the reference benchmark workload), "
        "'acrobot', 'mountaincar' (the defaults on Acrobot-v1 and MountainCar-v0), 'breakout', "
        "'freeway', 'asterix', 'space-invaders' (MinAtar, the default on each game); "
        "modifiers: 'rainbow' (double, dueling, 3-step, prioritized, C51), 'original' (MinAtar's "
        "6 actions and sticky actions 0.1), 'minatar-paper' (the MinAtar paper's learner: RMSProp, "
        "one env, vanilla DQN, no clipping); 'none' = plain defaults. A list without a base "
        "preset starts from the env's default one, e.g. --env-id Breakout-MinAtar --preset rainbow",
    )  # fmt: skip
    main.add_argument(
        "--config", type=Path, metavar="RUN_DIR|CONFIG_JSON",
        help="rerun a saved run: its config.json (settings, seeds, sweep) is the base instead of a "
        "preset; options given override it, e.g. --config runs/x --seed 7",
    )  # fmt: skip
    main.add_argument(
        "--output-dir", type=Path, help="where config.json, metrics.jsonl, evals.jsonl and summary.json "
        "go (default: a new runs/<env-id>/<timestamp>; multi-host: process 0's, which the others name too or leave out)"
    )  # fmt: skip
    main.add_argument(
        "--overwrite", action="store_true", help="allow an existing, non-empty --output-dir; its run files are replaced"
    )
    main.add_argument(
        "--progress", action=argparse.BooleanOptionalAction,
        help="status lines and a progress bar with ETA on stderr (default: on when stderr is a terminal)",
    )  # fmt: skip
    track = parser.add_argument_group("experiment tracking (metrics.jsonl and evals.jsonl are always written)")
    track.add_argument(
        "--log", metavar="SINK[,SINK...]",
        help="also log to 'tensorboard' (<output-dir>/tensorboard/<run>/; pip install \"purejaxdqn[tensorboard]\") "
        "and/or 'wandb' (one W&B run per run; pip install \"purejaxdqn[wandb]\")",
    )  # fmt: skip
    track.add_argument("--wandb-project", metavar="NAME", help="W&B project (default: purejaxdqn)")
    track.add_argument("--wandb-entity", metavar="NAME", help="W&B entity (team or user; default: yours)")
    track.add_argument(
        "--wandb-mode", choices=tracking.WANDB_MODES,
        help="W&B mode; offline needs no network, 'wandb sync' uploads later (default: $WANDB_MODE, else online)",
    )  # fmt: skip
    many = parser.add_argument_group("many runs in one compiled program (vmap)")
    many.add_argument(
        "--num-seeds", type=_int, metavar="N",
        help="independent runs with seeds --seed, --seed+1, ... (default: 1)",
    )  # fmt: skip
    many.add_argument(
        "--sweep", action="append", metavar="NAME=V1,V2,...",
        help="sweep a hyperparameter over values, all settings x seeds in one program; repeat "
        "for a grid. Sweepable: " + ", ".join(HPARAM_DTYPES) + ". Settings that change shapes "
        "(widths, batch size, buffer size, envs, ...) need separate compiles: run each setting as its "
        "own command, or experiments/sweep_static.py from a checkout",
    )  # fmt: skip

    ckpt = parser.add_argument_group("checkpoints and resume")
    for field in CADENCE_FIELDS:  # generated from RunOptions: one source for help and defaults
        kind, metavar = (_float, "S") if isinstance(field.default, float) else (_int, "N")
        ckpt.add_argument(field.metadata["option"], type=kind, metavar=metavar, dest=option_dest(field),
                          help=f"{field.metadata['help']} (default: {field.default:g})")  # fmt: skip
    ckpt.add_argument(
        "--resume", type=Path, metavar="RUN_DIR",
        help="continue a killed run from its newest complete checkpoint, with its saved settings "
        "(multi-host: on every process, with the same --num-processes)",
    )  # fmt: skip

    devices = parser.add_argument_group("devices and hosts (see README: multi-device and multi-host)")
    devices.add_argument(
        "--mesh-runs", type=_int, metavar="N",
        help="devices that split the runs (seeds x settings) between them (default: auto)",
    )  # fmt: skip
    devices.add_argument(
        "--mesh-data", type=_int, metavar="N",
        help="devices that split one run data-parallel: envs, replay and batch are split, gradients "
        "averaged; --num-envs, --batch-size and --num-eval-envs are global totals (default: auto)",
    )  # fmt: skip
    devices.add_argument(
        "--mesh-model", type=_int, metavar="N",
        help="devices that split the Q-network's hidden layers tensor-parallel (kernels by columns, "
        "then rows); every --widths value must divide by N (default: 1)",
    )  # fmt: skip
    devices.add_argument(
        "--cpu-devices", type=_int, metavar="N",
        help="on a CPU, split it into N host devices so independent runs (seeds x settings) run on "
        "separate cores (default: one per core; 1 = off; ignored when XLA_FLAGS forces a count)",
    )  # fmt: skip
    devices.add_argument(
        "--compilation-cache", metavar="DIR|off",
        help="JAX's persistent compilation cache: a second run of the same program skips most of "
        "its compile (default: $PUREJAXDQN_CACHE_DIR or ~/.cache/purejaxdqn/jax; off = none)",
    )  # fmt: skip
    devices.add_argument(
        "--coordinator-address", metavar="HOST:PORT",
        help="multi-host: process 0's address (env JAX_COORDINATOR_ADDRESS)",
    )  # fmt: skip
    devices.add_argument("--num-processes", type=_int, metavar="N", help="multi-host: number of processes (env JAX_NUM_PROCESSES)")
    devices.add_argument("--process-id", type=_int, metavar="I", help="multi-host: this process's index (env JAX_PROCESS_ID)")
    devices.add_argument(
        "--distributed-timeout", type=_int, metavar="S",
        help="multi-host: seconds to wait for all processes to join, and for one that stops answering "
        "before the others stop too (default: 300)",
    )  # fmt: skip

    groups = {key: parser.add_argument_group(title) for key, title in GROUP_TITLES.items()}
    for field in dataclasses.fields(Config):
        meta = field.metadata
        default = field.default
        sweep = " [hyperparameter]" if meta.get("sweep") else ""
        choices = f"; one of: {', '.join(SUPPORTED_ENV_IDS)}" if field.name == "env_id" else ""
        help_text = f"{meta['help']}{choices} (default: {_show(getattr(defaults, field.name))}){sweep}"
        kwargs: dict = {"help": help_text, "dest": field.name}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs.update(type=_widths, metavar="W1,W2,...")
        elif isinstance(default, int):
            kwargs.update(type=_int, metavar="N")
        elif isinstance(default, float):
            kwargs.update(type=_float, metavar="X")
        else:
            kwargs.update(type=str, choices=meta.get("choices"))
        groups[meta["group"]].add_argument(_option(field.name), **kwargs)
    return parser


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


class Parsed(NamedTuple):
    config: Config
    preset: str  # the preset used ('none' for plain defaults)
    args: argparse.Namespace
    num_seeds: int
    sweep: dict[str, list]  # swept hyperparameter -> values
    tracking: tracking.TrackingSpec = tracking.TrackingSpec()


def _help_defaults(argv: list[str]) -> tuple[Config, str]:
    """The base config the command would start from (for --help), and what it is; the plain
    defaults when the preset, env id or --config given is not valid (parsing reports that)."""
    peek = _Parser(add_help=False)
    for option in ("--preset", "--env-id", "--config"):
        peek.add_argument(option)
    known, _ = peek.parse_known_args(argv)
    try:
        if known.config:
            return _read_base(Path(known.config))["config"], f"the saved config {known.config}"
        names = preset_names(known.preset, known.env_id)
        return from_preset(known.preset, **({"env_id": known.env_id} if known.env_id else {})), (
            f"the {'+'.join(names)!r} preset" if names else "the plain defaults (no preset)")
    except (ConfigError, TypeError):
        return Config(), "the plain defaults (no preset)"


def _read_base(path: Path) -> dict:
    """--config: a run directory or a run's config.json, checked like a new config."""
    from purejaxdqn.host import policy

    try:
        return policy.read_run_config(path) if path.is_dir() else policy.read_config_file(path)
    except policy.RunDirError as err:
        raise ConfigError("--config", str(err)) from None


def parse_tracking(given: dict) -> tracking.TrackingSpec:
    """--log and the W&B options, checked (names, installed packages, consistency)."""
    try:
        log = tracking.parse_log(given["log"]) if "log" in given else ()
    except tracking.TrackingError as err:
        raise UsageError(str(err)) from None
    for option in ("wandb_project", "wandb_entity", "wandb_mode"):
        if option in given and "wandb" not in log:
            raise ConfigError(_option(option), "only applies together with --log wandb")
    return tracking.TrackingSpec(log, given.get("wandb_project", "purejaxdqn"), given.get("wandb_entity"), given.get("wandb_mode"))


def parse_config(argv: list[str]) -> Parsed:
    """Parse and validate. Raises UsageError or ConfigError; touches nothing."""
    argv = _negative_values_attached(argv)
    args = build_parser(*_help_defaults(argv) if {"-h", "--help"} & set(argv) else ()).parse_args(argv)
    given = vars(args)
    if "preset" in given and not all(n.strip() for n in given["preset"].split(",")):
        raise ConfigError("--preset", f"empty preset name in {given['preset']!r}; choose from {', '.join([*PRESETS, 'none'])}")
    names = {f.name for f in dataclasses.fields(Config)}
    overrides = {k: v for k, v in given.items() if k in names}
    spec = parse_tracking(given)

    if overrides.get("loss") == "mse" and "huber_delta" in overrides:
        raise ConfigError("--huber-delta", "contradicts --loss mse (the Huber threshold is unused)")
    if given.get("overwrite") and "output_dir" not in given:
        raise ConfigError("--overwrite", "only applies together with --output-dir")

    if "config" in given:
        for option in ("preset", "resume"):
            if option in given:
                raise ConfigError(_option(option), "contradicts --config (the saved config is the base)")
        base = _read_base(given["config"])
        config = base["config"].replace(**overrides)
        preset = base.get("preset", "none")
        saved_seeds = base.get("num_seeds", len(base["runs"]) // max(1, len(base["settings"])))
        saved_sweep = {k: v for k, v in (base.get("sweep") or {}).items() if k not in overrides}
    else:
        preset = ",".join(preset_names(given.get("preset"), overrides.get("env_id"))) or "none"
        config = from_preset(given.get("preset"), **overrides)
        saved_seeds, saved_sweep = 1, {}
    validate(config)
    num_seeds = given.get("num_seeds", saved_seeds)
    if num_seeds <= 0:
        raise ConfigError("--num-seeds", f"must be a positive integer, got {num_seeds}")
    if config.seed + num_seeds > SEED_LIMIT:
        raise ConfigError("--seed", f"seeds {config.seed}..{config.seed + num_seeds - 1} do not fit uint32: "
                          f"--seed must be at most 2**32 - --num-seeds = {SEED_LIMIT - num_seeds}")
    if not given.get("distributed_timeout", 1) > 0:
        raise ConfigError("--distributed-timeout", f"must be a positive number of seconds, got {given['distributed_timeout']}")
    for option in ("mesh_runs", "mesh_data", "mesh_model", "num_processes"):
        if option in given and given[option] <= 0:
            raise ConfigError(_option(option), f"must be a positive integer, got {given[option]}")
    if given.get("checkpoint_every", 0) < 0:
        raise ConfigError("--checkpoint-every", f"must be 0 or more, got {given['checkpoint_every']}")
    if not given.get("checkpoint_min_interval", 0) >= 0:
        raise ConfigError("--checkpoint-min-interval", f"must be 0 or more seconds, got {given['checkpoint_min_interval']}")
    if given.get("keep_checkpoints", 1) < 1:
        raise ConfigError("--keep-checkpoints", f"must be at least 1, got {given['keep_checkpoints']}")
    sweep = parse_sweep(given["sweep"], overrides) if "sweep" in given else saved_sweep
    if "max_grad_norm" in sweep:  # the preset may have clipping off: compile it in
        config = config.replace(max_grad_norm=sweep["max_grad_norm"][0])
    for name, values in sweep.items():
        for value in values:
            try:
                validate(config.replace(**{name: value}))
            except ConfigError as err:
                raise ConfigError(f"--sweep {name}={value}", err.message) from None
    return Parsed(config, preset, args, num_seeds, sweep, spec)


def parse_sweep(specs: list[str], overrides: dict) -> dict[str, list]:
    """`["lr=1e-3,3e-4", "gamma=0.99,0.995"]` -> {"lr": [...], "gamma": [...]}, typed and checked."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    sweep: dict[str, list] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not text.strip() or not name.isidentifier() or name.startswith("_"):
            raise ConfigError("--sweep", f"expected NAME=V1,V2,..., got {spec!r}")
        if name not in fields:
            raise ConfigError("--sweep", f"unknown setting {name!r}; sweepable: {', '.join(HPARAM_DTYPES)}")
        if name not in HPARAM_DTYPES:
            raise ConfigError(
                f"--sweep {name}",
                "changes array shapes or program structure, so it cannot be vmapped in one program; "
                "run each setting as its own command, or experiments/sweep_static.py from a checkout",
            )
        if name in sweep:
            raise ConfigError(f"--sweep {name}", "given twice; list all values in one --sweep")
        if name in overrides:
            raise ConfigError(f"--sweep {name}", f"contradicts --{name.replace('_', '-')} given as a single value")
        parse = _int if isinstance(fields[name].default, int) else _float
        try:
            values = [parse(v) for v in text.split(",") if v.strip()]
        except argparse.ArgumentTypeError as err:
            raise ConfigError(f"--sweep {name}", str(err)) from None
        if len(set(values)) != len(values):
            raise ConfigError(f"--sweep {name}", f"repeated values in {text!r}")
        if name == "max_grad_norm" and 0 in values:
            raise ConfigError(f"--sweep {name}", "0 (no clipping) changes the program; sweep positive values only")
        sweep[name] = values
    return sweep


class Plan(NamedTuple):
    """What to run, fully resolved and checked before anything compiles."""

    config: Config
    runs: list[dict]
    settings: list[dict]
    num_seeds: int
    output_dir: Path
    resume: bool
    meta: dict
    checkpoint: dict  # the run's checkpoint cadence, as saved in config.json (RunOptions.cadence)
    start_chunk: int = 0  # resume: the checkpoint continued from (0: starting over)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0 done, 2 bad input, 3 non-finite, 1 a write
    that failed, 4 a lost peer of a multi-host run, 128 + signal number when stopped by
    SIGINT/SIGTERM).

    As a process's command line (`argv` None) it splits a CPU into one device per core; called
    from Python with an `argv` it leaves the caller's JAX devices alone unless --cpu-devices is
    given."""
    from purejaxdqn.host import interrupts

    state: dict = {"own_process": argv is None}  # and, once known, the run directory for the resume hint
    argv = sys.argv[1:] if argv is None else argv
    try:
        with interrupts.interruptible():
            return _main(argv, state)
    except interrupts.Interrupted as err:
        print(f"{PROG}: error: stopped by {err.name}; {_resume_hint(state.get('output_dir'))}", file=sys.stderr)
        return err.exit_code
    except Exception as err:
        from purejaxdqn.host import checkpointing, distributed

        if not distributed.failed_collective(err):
            raise
        print(f"{PROG}: error: a process of the multi-host run failed or stopped answering "
              f"({checkpointing.one_line(err).split('. ')[0]}); {_resume_hint(state.get('output_dir'))}", file=sys.stderr)  # fmt: skip
        return EXIT_PEER


def _main(argv: list[str], state: dict) -> int:
    from purejaxdqn.algorithm import parallel
    from purejaxdqn.host import checkpointing, distributed, hardware, memory, policy, report, run_directory, runner
    from purejaxdqn.host.progress import ProgressBar

    checkpointing.quiet_logs()
    try:
        parsed = parse_config(argv)
        args = parsed.args
        if getattr(args, "cpu_devices", 1) < 1:
            raise ConfigError("--cpu-devices", f"must be a positive integer, got {args.cpu_devices}")
        coordinator = _arg_or_env(args, "coordinator_address", "JAX_COORDINATOR_ADDRESS", str)
        # One device per core for independent runs, unless the user set up devices and hosts.
        # First of all: nothing may have started JAX's backends yet.
        wanted = getattr(args, "cpu_devices", None)
        split = not coordinator and (wanted is not None or state["own_process"])
        cpu_devices = hardware.use_cpu_cores(wanted) if split else None
        hardware.enable_compilation_cache(getattr(args, "compilation_cache", None))
        num_processes = _arg_or_env(args, "num_processes", "JAX_NUM_PROCESSES", int)
        plan = _resume_plan(parsed, num_processes or 1) if getattr(args, "resume", None) else _new_plan(parsed)
        distributed.initialize_distributed(
            coordinator, num_processes, _arg_or_env(args, "process_id", "JAX_PROCESS_ID", int),
            timeout_s=getattr(args, "distributed_timeout", 300),
        )  # fmt: skip
        import jax

        if distributed.multi_host():  # one run directory: process 0's, which the others must name or leave out
            option, given = ("--resume", args.resume) if plan.resume else ("--output-dir", getattr(args, "output_dir", None))
            own = plan.output_dir if distributed.is_main_process() else given
            plan = plan._replace(output_dir=Path(distributed.same_run_dir(own and str(Path(own).absolute()), option)))
        mesh_runs, mesh_data = getattr(args, "mesh_runs", None), getattr(args, "mesh_data", None)
        mesh_model = getattr(args, "mesh_model", None)
        if plan.resume:
            plan = _resume_start(plan)
            mesh_runs, mesh_data, mesh_model = resume_mesh(plan.meta["mesh"], mesh_runs, mesh_data, mesh_model,
                                                           jax.device_count())  # fmt: skip
        on_cpu = jax.default_backend() == "cpu"
        mesh_shape = parallel.choose_mesh(
            plan.config, len(plan.runs), jax.device_count(), mesh_runs, mesh_data, auto_data=not on_cpu,
            model=mesh_model or 1,
        )  # fmt: skip
        if distributed.multi_host() and mesh_shape.size != jax.device_count():
            raise ConfigError("--mesh-runs/--mesh-data", f"a multi-host run uses every device of every process: "
                              f"{jax.device_count()} devices, but the mesh has {mesh_shape.size}")  # fmt: skip
    except (UsageError, ConfigError, run_directory.OutputDirError, policy.RunDirError, checkpointing.CheckpointError) as err:
        return _usage_error(err)

    config, runs = plan.config, plan.runs
    main_process = distributed.is_main_process()
    if plan.resume and plan.start_chunk == 0 and main_process:
        print(f"{plan.output_dir} has no complete checkpoint (stopped before its first save): "
              "starting it over from scratch with its saved config.json")  # fmt: skip
    if main_process and config.eval_every >= config.actual_total_steps:
        print(f"{PROG}: warning: --eval-every {config.eval_every:,} is not below the run's {config.actual_total_steps:,} "
              "env steps: only the final evaluation runs (one point in curves.png)", file=sys.stderr)  # fmt: skip
    progress = ProgressBar(config.actual_total_steps, enabled=getattr(args, "progress", None) if main_process else False)
    state["output_dir"] = plan.output_dir  # multi-host too: every process writes checkpoints there
    try:
        options = RunOptions(
            output_dir=plan.output_dir, overwrite=getattr(args, "overwrite", False), write_outputs=main_process,
            resume=plan.resume, command=[PROG, *argv], tracking=parsed.tracking,
        ).with_cadence(plan.checkpoint)  # fmt: skip
        result = runner.train_runs(
            config, runs, plan.settings, options, meta=plan.meta, progress=progress, mesh_shape=mesh_shape
        )  # fmt: skip
    except (memory.OutOfMemoryError, run_directory.OutputDirError) as err:
        state["output_dir"] = None  # refused before anything was written
        return _usage_error(err)
    except tracking.TrackingError as err:  # a tracker that could not start (W&B login, network, ...)
        return _usage_error(err)
    except (checkpointing.SaveError, OSError) as err:  # a full disk, a failed save, ...
        print(f"{PROG}: error: {err}; {_resume_hint(plan.output_dir)}", file=sys.stderr)
        return EXIT_WRITE
    except checkpointing.CheckpointError as err:  # a damaged checkpoint on resume
        return _usage_error(err)
    except runner.NonFiniteError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_NONFINITE
    finally:
        progress.close()  # the spinner or bar of a run that stopped early
    if not main_process:
        return 0

    s = result.summary
    if len(runs) == 1:
        print(
            f"{config.env_id}: final eval return {s['final_eval_return_mean'][0]:.1f} "
            f"(min {s['final_eval_return_min'][0]:.1f}) after {config.actual_total_steps:,} env steps"
        )
    else:
        print(f"{config.env_id}: {len(runs)} runs ({len(plan.settings)} settings x {plan.num_seeds} seeds), "
              f"{config.actual_total_steps:,} env steps each, one compiled program")  # fmt: skip
        print(report.format_table(result.table))
    if mesh_shape.size > 1 or jax.process_count() > 1:
        model = f" x {mesh_shape.model} (model)" if mesh_shape.model > 1 else ""
        print(f"mesh: {mesh_shape.runs} (runs) x {mesh_shape.data} (data){model} devices, {jax.process_count()} process(es)")
    if on_cpu and cpu_devices and cpu_devices > 1 and mesh_shape.runs > 1:
        print(f"cpu: runs split over {mesh_shape.runs} host devices, one per core (--cpu-devices 1 to turn off)")
    if plan.resume and s["resumed_from_chunk"]:
        print(f"resumed from the checkpoint after chunk {s['resumed_from_chunk']} of {config.num_chunks}")
    print(
        f"compile {s['compile_s']:.1f} s | run {s['run_s']:.1f} s | "
        f"{s['env_steps_per_s']:,.0f} env steps/s | {s['updates_per_s']:,.0f} updates/s"
        + (f" (whole run, {s['segments']} processes)" if s.get("segments", 1) > 1 else "")
    )
    print(f"outputs: {plan.output_dir}")
    for line in tracking.where(parsed.tracking, plan.output_dir, len(runs)):
        print(line)
    return 0


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
    model = model or saved.get("model", 1)
    if runs is None and saved["runs"] * saved["data"] * model <= num_devices:
        runs = saved["runs"]
    return runs, saved["data"], model


def _resume_hint(run_dir: Path | None) -> str:
    """Which checkpoint survived and how to continue, for a run that stopped early."""
    from purejaxdqn.host import checkpointing, distributed, run_directory

    if run_dir is None or not (Path(run_dir) / run_directory.CONFIG_FILE).is_file():
        return "nothing was written"
    try:
        step = checkpointing.latest_step(run_dir)
    except checkpointing.CheckpointError:
        return f"no checkpoint was complete yet; `{PROG} --resume {run_dir}` starts the run over"
    where = " on every process (its own --process-id, the same --num-processes)" if distributed.multi_host() else ""
    return f"checkpoint {step} (after chunk {step}) is intact; continue with `{PROG} --resume {run_dir}`{where}"


def _checkpoint_options(args: argparse.Namespace, saved: dict | None = None) -> dict:
    """The checkpoint cadence (keyed as saved in config.json): options given, else the run's
    saved cadence, else RunOptions' defaults."""
    base = {**cadence_defaults(), **(saved or {})}
    return {f.metadata["saved_as"]: getattr(args, option_dest(f), base[f.metadata["saved_as"]]) for f in CADENCE_FIELDS}


def _new_plan(parsed: Parsed) -> Plan:
    from purejaxdqn.host import run_directory, runner

    args = parsed.args
    output_dir = getattr(args, "output_dir", None) or run_directory.default_output_dir(parsed.config.env_id)
    run_directory.check_output_dir(output_dir, getattr(args, "overwrite", False))
    runs, settings = runner.make_runs(parsed.config, parsed.num_seeds, parsed.sweep)
    checkpoint = _checkpoint_options(args)
    meta = {"preset": parsed.preset, "num_seeds": parsed.num_seeds, "sweep": parsed.sweep, "checkpoint": checkpoint}
    if "config" in vars(args):
        meta["rerun_of"] = str(args.config)
    return Plan(parsed.config, runs, settings, parsed.num_seeds, output_dir, False, meta, checkpoint)


def _resume_plan(parsed: Parsed, num_processes: int) -> Plan:
    """Continue the run in --resume DIR with its saved settings, on as many processes as it was
    made with (each restores its own shards); options that differ are refused. Reads only: the
    saved config is validated like a new one, the logs are checked."""
    from purejaxdqn.host import run_directory, policy

    args = parsed.args
    run_dir = Path(args.resume)
    for option in ("output_dir", "overwrite", "preset", "config"):
        if option in vars(args):
            raise ConfigError(_option(option), "contradicts --resume (the run continues in its own directory with its own settings)")
    saved = policy.read_run_config(run_dir)
    if saved.get("processes", 1) != num_processes:
        raise ConfigError("--num-processes", f"{run_dir} was made by {saved.get('processes', 1)} process(es), "
                          f"resumed by {num_processes}: resume it with as many (each restores its own shards)")  # fmt: skip
    run_directory.check_logs(run_dir)
    config = saved["config"]
    given = {k: v for k, v in vars(args).items() if k in {f.name for f in dataclasses.fields(Config)}}
    differ = [f"{k} (saved {getattr(config, k)!r}, given {v!r})" for k, v in given.items() if getattr(config, k) != v]
    num_seeds = len(saved["runs"]) // max(1, len(saved["settings"]))  # runs = settings x seeds
    if "num_seeds" in vars(args) and args.num_seeds != num_seeds:
        differ.append(f"num_seeds (saved {num_seeds}, given {args.num_seeds})")
    if "sweep" in vars(args) and parsed.sweep != saved.get("sweep"):
        differ.append(f"sweep (saved {saved.get('sweep')}, given {parsed.sweep})")
    if differ:
        raise ConfigError("--resume", "settings differ from the saved run: " + "; ".join(differ))
    checkpoint = _checkpoint_options(args, saved.get("checkpoint"))
    meta = {k: saved[k] for k in ("preset", "num_seeds", "sweep", "mesh", "checkpoint") if k in saved}
    return Plan(config, saved["runs"], saved["settings"], num_seeds, run_dir, True, meta, checkpoint)


def _resume_start(plan: Plan) -> Plan:
    """A resumed plan with the checkpoint it continues from (0: none was complete, start over).
    Read once `jax.distributed` has started: orbax starts JAX's backends, which must come after."""
    from purejaxdqn.host import checkpointing, run_directory, runner

    start_chunk = runner.resume_point(plan.output_dir)
    if start_chunk == 0 and (plan.output_dir / run_directory.SUMMARY_FILE).exists():
        raise checkpointing.NoCheckpointError(f"{plan.output_dir} finished but has no checkpoint left to resume from")
    return plan._replace(start_chunk=start_chunk)


def _arg_or_env(args, name: str, env: str, kind):
    value = getattr(args, name, None)
    if value is None and os.environ.get(env):
        try:
            value = kind(os.environ[env])
        except ValueError:
            raise ConfigError(env, f"invalid value {os.environ[env]!r}") from None
    return value


def _usage_error(err: Exception) -> int:
    print(f"{PROG}: error: {err}", file=sys.stderr)
    return EXIT_USAGE
