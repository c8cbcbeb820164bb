"""From a command line to a `Plan`: every option resolved (presets, a saved config, a resumed
run's record, environment variables) and checked, before JAX starts or anything is written.

No argparse namespace lives past `make_plan`; what is not given takes its default here, from
the one place that defines it (`Config`, `RunOptions`, `TrackingSpec`, `distributed`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import NamedTuple

from purejaxdqn.cli.parsers import TRAIN_PROG, Parser, UsageError, integer, negative_values_attached, number, option, train_parser
from purejaxdqn.config import PRESETS, Config, budget, ConfigError, check_used, from_preset, preset_names, validate
from purejaxdqn.config.batch import check_sweep_name, check_sweep_shape, make_batch
from purejaxdqn.host import distributed, hardware, run_directory, tracking
from purejaxdqn.host.run_options import CADENCE_FIELDS, cadence_defaults, option_dest

CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


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
    warnings: tuple[str, ...] = ()  # a new run's settings that do not fit it (config.budget), no preset, ...


def make_plan(argv: list[str]) -> Plan:
    """Parse and check a `train` command line. Raises UsageError or ConfigError; reads a saved
    run (--config, --resume) but writes nothing."""
    attached = negative_values_attached(argv)
    defaults = help_defaults(attached) if {"-h", "--help"} & set(attached) else ()
    given = vars(train_parser(*defaults).parse_args(attached))
    overrides = {k: v for k, v in given.items() if k in CONFIG_FIELDS}
    _check_command_options(given, overrides)
    common = dict(tracking=parse_tracking(given), progress=given.get("progress"), devices=_devices(given),
                  command=[TRAIN_PROG, *argv])  # fmt: skip
    if "resume" in given:
        return _resume_plan(given, overrides, common)
    return _new_plan(given, overrides, common)


def help_defaults(argv: list[str]) -> tuple[Config, str]:
    """The base config the command would start from (for --help), and what it is; the plain
    defaults when the preset, env id or --config given is not valid (parsing reports that)."""
    peek = Parser(add_help=False)
    for name in ("--preset", "--env-id", "--config"):
        peek.add_argument(name)
    known, _ = peek.parse_known_args(argv)
    try:
        if known.config:
            return _read_base(Path(known.config)).config, f"the saved config {known.config}"
        names = preset_names(known.preset, known.env_id)
        return from_preset(known.preset, **({"env_id": known.env_id} if known.env_id else {})), (
            f"the {'+'.join(names)!r} preset" if names else "the plain defaults (no preset)")
    except (ConfigError, TypeError):
        return Config(), "the plain defaults (no preset)"


def _read_base(path: Path) -> run_directory.RunRecord:
    """--config: a run directory or a run's config.json, checked like a new config."""
    try:
        return run_directory.read(path) if path.is_dir() else run_directory.read_file(path)
    except run_directory.RunDirError as err:
        raise ConfigError("--config", str(err)) from None


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
    if "preset" in given and not all(n.strip() for n in given["preset"].split(",")):
        raise ConfigError("--preset", f"empty preset name in {given['preset']!r}; choose from {', '.join([*PRESETS, 'none'])}")
    if given.get("overwrite") and "output_dir" not in given:
        raise ConfigError("--overwrite", "only applies together with --output-dir")
    if "config" in given:
        for name in ("preset", "resume"):
            if name in given:
                raise ConfigError(option(name), "contradicts --config (the saved config is the base)")
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


def _new_plan(given: dict, overrides: dict, common: dict) -> Plan:
    """A new run: from presets (or a saved config) plus the options given."""
    notes = []
    if "config" in given:
        base = _read_base(given["config"])
        config, preset, rerun_of = base.config.replace(**overrides), base.preset, str(given["config"])
        saved_seeds, saved_sweep = base.num_seeds, {k: v for k, v in base.sweep.items() if k not in overrides}
    else:
        preset = ",".join(preset_names(given.get("preset"), overrides.get("env_id"))) or "none"
        config, rerun_of = from_preset(given.get("preset"), **overrides), None
        saved_seeds, saved_sweep = 1, {}
        if preset == "none" and "preset" not in given:
            notes.append(f"{config.env_id} has no tuned preset: the plain defaults (--preset none) with the options given")
    config, overrides = _with_fractions(config, overrides, given)
    if "num_chunks" not in given and (chunks := budget.chunks_for_exact_length(config)):
        config = config.replace(num_chunks=chunks)  # the run exactly as long as asked
    validate(config)
    check_used(config, overrides)
    sweep = parse_sweep(given["sweep"], overrides) if "sweep" in given else saved_sweep
    num_seeds = given.get("num_seeds", saved_seeds)
    config, runs, settings = make_batch(config, num_seeds, sweep)  # max_grad_norm swept: clipping compiled in
    notes += budget_notes(config, settings)
    return Plan(config, preset, num_seeds, sweep, runs, settings, given.get("output_dir"), given.get("overwrite", False), None,
                rerun_of, cadence=_cadence(given, cadence_defaults()), **common, warnings=tuple(notes))  # fmt: skip


def budget_notes(config: Config, settings: list[dict]) -> list[str]:
    """The run's length when it is not the one asked, and schedules that do not fit it."""
    return [n for n in [budget.length_note(config)] if n] + budget.warnings(config, settings)


def _with_fractions(config: Config, overrides: dict, given: dict) -> tuple[Config, dict]:
    """--exploration-fraction / --learning-starts-fraction as the step counts they stand for
    (config.budget), which count as given settings from here on."""
    fractions = {name: given[name] for name in budget.FRACTIONS if name in given}
    swept = {spec.partition("=")[0].strip().replace("-", "_") for spec in given.get("sweep", [])}
    for name in fractions:
        setting = budget.FRACTIONS[name]
        if setting in overrides or setting in swept:
            given_as = f"--sweep {setting}" if setting in swept else option(setting)
            raise ConfigError(option(name), f"contradicts {given_as}: give the steps or the fraction, not both")
    steps = budget.from_fractions(config, fractions)
    return config.replace(**steps), {**overrides, **steps}


def parse_sweep(specs: list[str], overrides: dict) -> dict[str, list]:
    """`["lr=1e-3,3e-4", "gamma=0.99,0.995"]` -> {"lr": [...], "gamma": [...]}, typed and checked."""
    sweep: dict[str, list] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip().replace("-", "_")
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
    config, overrides = _with_fractions(config, overrides, given)
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
