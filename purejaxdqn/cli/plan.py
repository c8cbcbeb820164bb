"""From a command line to a `Plan`: every option resolved (presets, a config file written by
hand or a saved run's, a resumed run's record, environment variables) and checked, before JAX
starts or anything is written.

No argparse namespace lives past `make_plan`; what is not given takes its default here, from
the one place that defines it (`Config`, `RunOptions`, `TrackingSpec`, `distributed`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NamedTuple

from purejaxdqn.cli import config_file
from purejaxdqn.cli.parsers import TRAIN_PROG, Parser, UsageError, integer, negative_values_attached, number, option, train_parser
from purejaxdqn.config import PRESETS, Config, budget, ConfigError, check_used, from_preset, preset_names, validate
from purejaxdqn.config.batch import check_sweep_name, check_sweep_shape, make_batch
from purejaxdqn.envs import is_atari_id
from purejaxdqn.envs.host import is_host_id
from purejaxdqn.host import distributed, hardware, run_directory, tracking
from purejaxdqn.host.run_options import CADENCE_FIELDS, cadence_defaults, option_dest

class Devices(NamedTuple):
    """How the process starts JAX and lays out its device mesh (None: chosen automatically)."""

    cpu_devices: int | None = None  # split a CPU into N host devices (None: one per core for the command itself)
    compilation_cache: str | None = None  # a directory or "off" (None: $PUREJAXDQN_CACHE_DIR or the default)
    coordinator: str | None = None  # multi-host: process 0's HOST:PORT
    num_processes: int | None = None
    process_id: int | None = None
    timeout_s: int = distributed.DEFAULT_TIMEOUT_S
    mesh_runs: int | None = None
    mesh_data: int | None = None
    mesh_model: int | None = None


class Plan(NamedTuple):
    """A command line, resolved and checked: what to train, where, and on what."""

    config: Config
    preset: str  # the presets the config started from ('none': plain defaults)
    num_seeds: int
    sweep: dict[str, list]  # swept hyperparameter -> values
    runs: list[dict]  # seeds x settings (config.batch.make_batch)
    settings: list[dict]
    output_dir: Path | None  # as named by --output-dir or --resume (None: a new default one)
    overwrite: bool
    resume: run_directory.RunRecord | None  # --resume: the saved record of the run continued
    rerun_of: str | None  # --config: the saved run started from
    cadence: dict  # the checkpoint cadence, as saved in config.json (RunOptions.cadence)
    tracking: tracking.TrackingSpec
    progress: bool | None  # None: on when stderr is a terminal
    devices: Devices
    command: list[str]  # as recorded in config.json
    config_file: str | None = None  # --config: the hand-written config file started from
    warnings: tuple[str, ...] = ()  # a new run's settings that do not fit it (config.budget), no preset, ...


def make_plan(argv: list[str]) -> Plan:
    """Parse and check a `train` command line. Raises UsageError or ConfigError; reads a saved
    run (--config, --resume) but writes nothing."""
    attached = negative_values_attached(argv)
    defaults = help_defaults(attached) if {"-h", "--help"} & set(attached) else ()
    given = vars(train_parser(*defaults).parse_args(attached))
    overrides = config_file.settings(given)
    _check_command_options(given, overrides)
    common = dict(tracking=parse_tracking(given), progress=given.get("progress"), devices=_devices(given),
                  command=[TRAIN_PROG, *argv])  # fmt: skip
    if "resume" in given:
        plan = _resume_plan(given, overrides, common)
    else:
        plan = _new_plan(_read_base(given["config"]) if "config" in given else {}, given, overrides, common)
    _check_host_plan(plan, given)
    return plan


def _check_host_plan(plan: Plan, given: dict) -> None:
    """A host env (the actor-learner) trains one run in one process, on its own devices; an
    Atari game trains in one process on one device (its emulators live in the process, outside
    the compiled program: one set of them, which devices or processes cannot split)."""
    env_id = plan.config.env_id
    host, atari = is_host_id(env_id), is_atari_id(env_id)
    if not (host or atari):
        return
    if host and len(plan.runs) > 1:
        name = "--sweep" if plan.sweep else "--num-seeds"
        raise ConfigError(name, f"a host env ({env_id}) trains one run per command (the actor-learner): "
                          "run each seed or setting as its own command")  # fmt: skip
    what, why = (("a host env", "the actor-learner runs in one process (its actors are threads)") if host else
                 ("an Atari game", "its emulators live in this process, outside the program, on one device"))  # fmt: skip
    d = plan.devices
    for name, value in (("mesh_runs", d.mesh_runs), ("mesh_data", d.mesh_data), ("mesh_model", d.mesh_model),
                        ("coordinator_address", d.coordinator), ("num_processes", d.num_processes)):  # fmt: skip
        if value is not None and value != 1:
            raise ConfigError(option(name), f"does not apply to {what} ({env_id}): {why}")
    if host and given.get("log_video"):
        raise ConfigError("--log-video", f"does not apply to a host env ({env_id}) yet: its video is not drawn")


def help_defaults(argv: list[str]) -> tuple[Config, str]:
    """The base config the command would start from (for --help), and what it is; the plain
    defaults when the preset, env id or --config given is not valid (parsing reports that)."""
    peek = Parser(add_help=False)
    for name in ("--preset", "--env-id", "--config"):
        peek.add_argument(name)
    known, _ = peek.parse_known_args(argv)
    try:
        base = _read_base(Path(known.config)) if known.config else {}
        if isinstance(base, run_directory.RunRecord):
            return base.config, f"the saved config {known.config}"
        settings = {**config_file.settings(base), **({"env_id": known.env_id} if known.env_id else {})}
        spec = base.get("preset", known.preset)
        names = preset_names(spec, settings.get("env_id"))
        on = f"the {'+'.join(names)!r} preset" if names else "the plain defaults (no preset)"
        return from_preset(spec, **settings), f"the config file {known.config} on {on}" if known.config else on
    except (ConfigError, TypeError):
        return Config(), "the plain defaults (no preset)"


def _read_base(path: Path) -> run_directory.RunRecord | dict:
    """--config: a saved run (its directory, or its config.json wherever it is now), checked
    like a new config; or a config file written by hand, its options typed (config_file.read)."""
    try:
        if path.is_dir():
            return run_directory.read(path)
        contents = config_file.load(path)
        if not config_file.is_toml(path) and run_directory.is_record(contents):
            return run_directory.record_from(path, contents)
    except run_directory.RunDirError as err:
        raise ConfigError("--config", str(err)) from None
    return config_file.read(path, contents)


def parse_tracking(given: dict) -> tracking.TrackingSpec:
    """--log and the W&B options, checked (names, installed packages, consistency)."""
    try:
        log = tracking.parse_log(given["log"]) if "log" in given else ()
    except tracking.TrackingError as err:
        raise UsageError(str(err)) from None
    wandb = {name: given[name] for name in ("wandb_project", "wandb_entity", "wandb_mode") if name in given}
    for name in wandb:
        if "wandb" not in log:
            raise ConfigError(option(name), "only applies together with --log wandb")
    if "log_video" in given and not log:
        raise ConfigError("--log-video", "only applies together with --log tensorboard or wandb")
    video = {"video": given["log_video"]} if "log_video" in given else {}
    return tracking.TrackingSpec(log, **wandb, **video)


def _check_command_options(given: dict, overrides: dict) -> None:
    """Checks of the options that are the command's own (not `Config` settings)."""
    if given.get("overwrite") and "output_dir" not in given:
        raise ConfigError("--overwrite", "only applies together with --output-dir")
    if "config" in given:
        for name in ("preset", "resume"):
            if name in given:
                raise ConfigError(option(name), "contradicts --config (the file or saved run is the base; a file names "
                                  "its presets itself: preset = ...)")  # fmt: skip
    if not given.get("distributed_timeout", 1) > 0:
        raise ConfigError("--distributed-timeout", f"must be a positive number of seconds, got {given['distributed_timeout']}")
    # Every count has a bound (the mesh axes: parallel.choose_mesh, against the devices there are).
    for name, most in (("num_processes", distributed.MAX_PROCESSES), ("cpu_devices", hardware.MAX_CPU_DEVICES)):
        if name in given and not 0 < given[name] <= most:
            raise ConfigError(option(name), f"must be an integer from 1 to {most}, got {given[name]}")
    if given.get("distributed_timeout", 1) > distributed.MAX_TIMEOUT_S:
        raise ConfigError("--distributed-timeout", f"must be at most {distributed.MAX_TIMEOUT_S} s (a day), "
                          f"got {given['distributed_timeout']}")  # fmt: skip
    cache = given.get("compilation_cache")
    if cache is not None and cache.lower() != "off" and (problem := hardware.cache_dir_problem(cache)):
        raise ConfigError("--compilation-cache", f"{problem}; name a directory, or off")
    _check_cadence(given)


def _check_cadence(given: dict) -> None:
    """The checkpoint cadence options, given on the command line or in a config file."""
    if given.get("checkpoint_every", 0) < 0:
        raise ConfigError("--checkpoint-every", f"must be 0 or more, got {given['checkpoint_every']}")
    if not given.get("checkpoint_min_interval", 0) >= 0:
        raise ConfigError("--checkpoint-min-interval", f"must be 0 or more seconds, got {given['checkpoint_min_interval']}")
    if given.get("keep_checkpoints", 1) < 1:
        raise ConfigError("--keep-checkpoints", f"must be at least 1, got {given['keep_checkpoints']}")


def _devices(given: dict) -> Devices:
    """The device and host options, each from its option or else its environment variable."""
    named = {name: given[name] for name in Devices._fields if name in given}
    named.update(
        coordinator=_given_or_env(given, "coordinator_address", "JAX_COORDINATOR_ADDRESS", str),
        num_processes=_given_or_env(given, "num_processes", "JAX_NUM_PROCESSES", int),
        process_id=_given_or_env(given, "process_id", "JAX_PROCESS_ID", int),
    )  # fmt: skip
    if "distributed_timeout" in given:
        named["timeout_s"] = given["distributed_timeout"]
    return Devices(**named)


def _given_or_env(given: dict, name: str, env: str, kind):
    value = given.get(name)
    if value is None and os.environ.get(env):
        try:
            value = kind(os.environ[env])
        except ValueError:
            raise ConfigError(env, f"invalid value {os.environ[env]!r}") from None
    return value


def _cadence(given: dict, base: dict) -> dict:
    """The checkpoint cadence (keyed as saved in config.json): the options given, else `base`
    (RunOptions' defaults, or a resumed run's saved cadence)."""
    return {f.metadata["saved_as"]: given.get(option_dest(f), base[f.metadata["saved_as"]]) for f in CADENCE_FIELDS}


def _new_plan(base: run_directory.RunRecord | dict, given: dict, overrides: dict, common: dict) -> Plan:
    """A new run: a saved run's config (`base` its record) or else presets and a hand-written
    config file (`base` its options, {} without one), then the options given. An error about a
    value from the file names the file and its key."""
    rerun = isinstance(base, run_directory.RunRecord)
    file = {} if rerun else base
    with config_file.blamed(given.get("config"), file, given):
        if rerun:
            config, preset, named = base.config.replace(**overrides), base.preset, overrides
            saved_seeds, saved_sweep = base.num_seeds, base.sweep
        else:
            named = {**config_file.settings(file), **overrides}  # the command line's win
            config, preset = _from_presets({**file, **given}.get("preset"), named)
            saved_seeds = file.get("num_seeds", 1)
            saved_sweep = parse_sweep(file["sweep"], config_file.settings(file)) if "sweep" in file else {}
            _check_cadence(file)
        notes = [] if rerun or preset != "none" or "preset" in {**file, **given} else [
            f"{config.env_id} has no tuned preset: the plain defaults (--preset none) with the options given"]
        config, steps = _with_fractions(config, overrides, given)
        named, overrides = {**named, **steps}, {**overrides, **steps}
        if "num_chunks" not in named and (chunks := budget.chunks_for_exact_length(config)):
            config = config.replace(num_chunks=chunks)  # the run exactly as long as asked
        validate(config)
        check_used(config, named)
        sweep = parse_sweep(given["sweep"], overrides) if "sweep" in given else {k: v for k, v in saved_sweep.items() if k not in overrides}
        num_seeds = given.get("num_seeds", saved_seeds)
        config, runs, settings = make_batch(config, num_seeds, sweep)  # max_grad_norm swept: clipping compiled in
        notes += budget_notes(config, settings)
    return Plan(config, preset, num_seeds, sweep, runs, settings, given.get("output_dir"), given.get("overwrite", False), None,
                str(given["config"]) if rerun else None, cadence=_cadence({**file, **given}, cadence_defaults()),
                config_file=str(given["config"]) if "config" in given and not rerun else None, **common,
                warnings=tuple(notes))  # fmt: skip


def _from_presets(spec: str | None, settings: dict) -> tuple[Config, str]:
    """The config from the presets `spec` names (None: the env's default) and `settings`, and
    the presets it started from ('none': plain defaults)."""
    if spec is not None and not all(n.strip() for n in spec.split(",")):
        raise ConfigError("--preset", f"empty preset name in {spec!r}; choose from {', '.join([*PRESETS, 'none'])}")
    return from_preset(spec, **settings), ",".join(preset_names(spec, settings.get("env_id"))) or "none"


def budget_notes(config: Config, settings: list[dict]) -> list[str]:
    """The run's length when it is not the one asked, and schedules that do not fit it."""
    return [n for n in [budget.length_note(config)] if n] + budget.warnings(config, settings)


def _with_fractions(config: Config, overrides: dict, given: dict) -> tuple[Config, dict]:
    """--exploration-fraction / --learning-starts-fraction as the step counts they stand for
    (config.budget): the config with them, and them (given settings from here on)."""
    fractions = {name: given[name] for name in budget.FRACTIONS if name in given}
    swept = {_sweep_parts(spec)[0] for spec in given.get("sweep", [])}
    for name in fractions:
        setting = budget.FRACTIONS[name]
        if setting in overrides or setting in swept:
            given_as = f"--sweep {setting}" if setting in swept else option(setting)
            raise ConfigError(option(name), f"contradicts {given_as}: give the steps or the fraction, not both")
    steps = budget.from_fractions(config, fractions)
    return config.replace(**steps), steps


def _sweep_parts(spec: str) -> tuple[str, str, str]:
    """`--sweep` text 'lr=1e-3,3e-4' -> ('lr', '=', '1e-3,3e-4'), the name as the setting's (_ for -)."""
    name, sep, text = spec.partition("=")
    return name.strip().replace("-", "_"), sep, text


def parse_sweep(specs: list[str], overrides: dict) -> dict[str, list]:
    """`["lr=1e-3,3e-4", "gamma=0.99,0.995"]` -> {"lr": [...], "gamma": [...]}, typed and checked."""
    sweep: dict[str, list] = {}
    for spec in specs:
        name, sep, text = _sweep_parts(spec)
        if not sep or not name.isidentifier() or name.startswith("_"):
            raise ConfigError("--sweep", f"expected NAME=V1,V2,..., got {spec!r}")
        parse = integer if check_sweep_name(name) is int else number
        if name in sweep:
            raise ConfigError(f"--sweep {name}", "given twice; list all values in one --sweep")
        if name in overrides:
            raise ConfigError(f"--sweep {name}", f"contradicts {option(name)} given as a single value")
        if not all(v.strip() for v in text.split(",")):
            raise ConfigError(f"--sweep {name}", f"an empty value in {text!r}; expected {name}=V1,V2,...")
        try:
            sweep[name] = [parse(v.strip()) for v in text.split(",")]
        except argparse.ArgumentTypeError as err:
            raise ConfigError(f"--sweep {name}", str(err)) from None
    check_sweep_shape(sweep)  # repeated values
    return sweep


def _resume_plan(given: dict, overrides: dict, common: dict) -> Plan:
    """Continue the run in --resume DIR with its saved settings, on as many processes as it was
    made with (each restores its own shards); options that differ are refused."""
    for name in ("output_dir", "overwrite", "preset", "config"):
        if name in given:
            raise ConfigError(option(name), "contradicts --resume (the run continues in its own directory with its own settings)")
    run_dir = Path(given["resume"])
    saved = run_directory.read(run_dir)
    num_processes = common["devices"].num_processes or 1
    if saved.processes != num_processes:
        raise ConfigError("--num-processes", f"{run_dir} was made by {saved.processes} process(es), "
                          f"resumed by {num_processes}: resume it with as many (each restores its own shards)")  # fmt: skip
    config = saved.config
    overrides = {**overrides, **_with_fractions(config, overrides, given)[1]}  # compared with the saved steps
    differ = [f"{k} (saved {getattr(config, k)!r}, given {v!r})" for k, v in overrides.items() if getattr(config, k) != v]
    if given.get("num_seeds", saved.num_seeds) != saved.num_seeds:
        differ.append(f"num_seeds (saved {saved.num_seeds}, given {given['num_seeds']})")
    if "sweep" in given and (sweep := parse_sweep(given["sweep"], overrides)) != saved.sweep:
        differ.append(f"sweep (saved {saved.sweep}, given {sweep})")
    if differ:
        raise ConfigError("--resume", "settings differ from the saved run: " + "; ".join(differ))
    return Plan(config, saved.preset, saved.num_seeds, saved.sweep, saved.runs, saved.settings, run_dir, False, saved,
                saved.rerun_of, cadence=_cadence(given, saved.checkpoint), **common,
                warnings=tuple(budget_notes(config, saved.settings)))  # fmt: skip
