"""`--config FILE`: a config file written by hand, TOML (a .toml file) or JSON (any other), read
as the command line reads its options: the same names (with _ for -), the same value types.

Its keys are `Config` settings (env_id, lr, widths, ...) and the run options of
`parsers.FILE_OPTIONS`, the ones a saved run's config.json records beside its settings (presets,
seeds, sweep, checkpoint cadence). `plan` makes the file the base that the options given
override: plain defaults < the presets it names (else the env's default preset) < its values <
the command line. A file is a user's own preset, kept as data beside their code. A saved run's
config.json is told apart by its own keys (`run_directory.is_record`) and read as before.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import tomllib
from pathlib import Path

from purejaxdqn.cli.parsers import FILE_OPTIONS, option, train_parser, widths
from purejaxdqn.config import Config, ConfigError
from purejaxdqn.host import run_directory

SETTINGS = tuple(f.name for f in dataclasses.fields(Config))
KEYS = (*SETTINGS, *FILE_OPTIONS)


def is_toml(path: Path) -> bool:
    """A .toml file is TOML (and written by hand); any other is JSON (a saved run's config.json, or not)."""
    return Path(path).suffix.lower() == ".toml"


def load(path: Path):
    """A --config file's contents, TOML or JSON by its extension; RunDirError naming the file
    and the line where it does not parse."""
    return run_directory.load(path, tomllib.loads, "TOML") if is_toml(path) else run_directory.load(path)


def read(path: Path, contents) -> dict:
    """A hand-written file's options, {key: value} typed as the command line types them (its
    sweep as the --sweep options that say the same); ConfigError naming the file and the key."""
    if not isinstance(contents, dict):
        raise ConfigError(str(path), f"must hold a table of settings (key = value), got {type(contents).__name__}")
    actions = {action.dest: action for action in train_parser()._actions}  # the command line's own types
    options = {}
    for key, value in contents.items():
        _check_key(path, key, actions)
        try:
            options[key] = _sweep_specs(value) if key == "sweep" else _typed(actions[key], value)
        except argparse.ArgumentTypeError as err:
            raise ConfigError(f"{path}: {key}", str(err)) from None
    return options


def settings(options: dict) -> dict:
    """The `Config` settings among options (a file's, or the command line's)."""
    return {k: v for k, v in options.items() if k in SETTINGS}


def _check_key(path: Path, key: str, actions: dict) -> None:
    """A key is a setting or one of `FILE_OPTIONS`; else one line naming it, with the closest."""
    if key in KEYS:
        return
    if key in actions and key not in ("help", "version", "config"):
        raise ConfigError(f"{path}: {key}", f"is a command-line option only: give {option(key)} on the command line")
    close = difflib.get_close_matches(key, KEYS, n=1)
    hint = f"did you mean {close[0]!r}?" if close else "settings and run options are named as in --help, with _ for -"
    raise ConfigError(f"{path}: {key}", f"unknown setting; {hint}")


def _typed(action: argparse.Action, value):
    """A file's value as the command line reads that option: a flag takes true or false; any
    other value goes through the option's own type (a list: the comma-separated list --widths
    and --preset take). Bad values of the right type are left to the checks of every config."""
    if action.nargs == 0:  # --dueling/--no-dueling
        if not isinstance(value, bool):
            raise argparse.ArgumentTypeError(f"must be true or false, got {value!r}"[:200])
        return value
    if isinstance(value, list) and (action.type is widths or action.dest == "preset"):
        value = ",".join(map(_text, value))
    if action.type in (None, str) and not isinstance(value, str):
        raise argparse.ArgumentTypeError(f"must be a string, got {value!r}"[:200])
    return (action.type or str)(_text(value))


def _sweep_specs(table) -> list[str]:
    """A file's sweep, {setting: [values]}, as the --sweep options that say the same (which
    `plan.parse_sweep` types and checks)."""
    if not isinstance(table, dict):
        raise argparse.ArgumentTypeError(f"must be a table of settings, each a list of values (lr = [1e-3, 3e-4]), got {table!r}"[:200])
    for name, values in table.items():
        if not isinstance(values, list) or not values:
            raise argparse.ArgumentTypeError(f"{name}: needs a non-empty list of values, got {values!r}"[:200])
    return [f"{name}={','.join(map(_text, values))}" for name, values in table.items()]


def _text(value) -> str:
    """A single number or string, as it would be typed on the command line."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        hint = " (to sweep a setting, list its values under sweep)" if isinstance(value, list) else ""
        raise argparse.ArgumentTypeError(f"must be a single number or string, got {value!r}"[:200] + hint)
    return str(value)


@contextlib.contextmanager
def blamed(path: Path | None, options: dict, given: dict):
    """Name the file and its key in a ConfigError about a value that came from the file (the
    command line did not give it): `--lr: must be positive` -> `FILE: lr: must be positive`."""
    try:
        yield
    except ConfigError as err:
        head, sep, rest = err.option.partition(" ")
        names = [name.removeprefix("--").replace("-", "_") for name in head.split("/")]
        if path is None or not any(name in options and name not in given for name in names):
            raise
        raise ConfigError(f"{path}: {'/'.join(names)}{sep}{rest}", err.message) from None
