"""A batch: the runs one compiled program trains, seeds x swept settings of one `Config`.

`make_batch(config, num_seeds, sweep)` is the one check of a batch, whoever describes it: the
command line (`--num-seeds`, `--sweep`), a saved config.json (`num_seeds`, `sweep`) or the Python
API (`runner.make_runs`). It refuses an empty or mistyped sweep, a count past `MAX_RUNS` and
seeds that do not fit uint32 before any list of runs is built.
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping, Sequence

from purejaxdqn.config.checks import check_sweep
from purejaxdqn.config.schema import SEED_LIMIT, SWEEPABLE, Config, ConfigError

MAX_RUNS = 65_536  # seeds x settings of one program: each run is a row of every array it holds


def make_batch(config: Config, num_seeds: int = 1, sweep: Mapping[str, Sequence] | None = None, *,
               compile_in: bool = True) -> tuple[Config, list[dict], list[dict]]:  # fmt: skip
    """Check a batch and lay it out: (the config to compile, runs, settings); ConfigError
    naming the option otherwise. `compile_in` as in `check_sweep`."""
    sweep = {} if sweep is None else sweep
    check_num_seeds(num_seeds)
    check_sweep_shape(sweep)
    count = num_seeds * math.prod(len(v) for v in sweep.values())
    if count > MAX_RUNS:
        raise ConfigError("--num-seeds/--sweep", f"{num_seeds} seeds x {count // num_seeds} settings = {count:,} runs in "
                          f"one program; at most {MAX_RUNS:,}: split the batch over several commands")  # fmt: skip
    if config.seed + num_seeds > SEED_LIMIT:
        raise ConfigError("--seed", f"seeds {config.seed}..{config.seed + num_seeds - 1} do not fit uint32: "
                          f"--seed must be at most 2**32 - --num-seeds = {SEED_LIMIT - num_seeds}")  # fmt: skip
    config = check_sweep(config, sweep, compile_in=compile_in)
    return (config, *layout(config, num_seeds, sweep))


def layout(config: Config, num_seeds: int, sweep: Mapping[str, Sequence]) -> tuple[list[dict], list[dict]]:
    """The grid of swept settings x seeds config.seed, config.seed + 1, ... (checked first by
    `make_batch`). Run i is {"run": i, "seed", "setting": index into settings, **that
    setting's values}; runs are ordered setting-major, seed-minor."""
    settings = [dict(zip(sweep, values)) for values in itertools.product(*sweep.values())]
    runs = [
        {"run": i * num_seeds + k, "seed": config.seed + k, "setting": i, **setting}
        for i, setting in enumerate(settings)
        for k in range(num_seeds)
    ]
    return runs, settings


def check_num_seeds(num_seeds) -> None:
    if isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or not 0 < num_seeds <= MAX_RUNS:
        raise ConfigError("--num-seeds", f"must be an integer from 1 to {MAX_RUNS:,}, got {num_seeds!r}")


def check_sweep_shape(sweep) -> None:
    """A sweep is {sweepable setting: a non-empty list of distinct values of its type}."""
    if not isinstance(sweep, dict):
        raise ConfigError("--sweep", f"must map settings to lists of values, got {sweep!r}"[:200])
    for name, values in sweep.items():
        kind = check_sweep_name(name)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"--sweep {name}", f"needs a non-empty list of values, got {values!r}"[:200])
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
                raise ConfigError(f"--sweep {name}", f"values must be {'numbers' if kind is float else 'integers'}, got {value!r}"[:200])
        if len(set(values)) != len(values):
            raise ConfigError(f"--sweep {name}", f"repeated values in {values}")


def check_sweep_name(name) -> type:
    """A setting `--sweep` accepts; returns its type (int or float)."""
    fields = Config.__dataclass_fields__
    if name not in fields:
        raise ConfigError("--sweep", f"unknown setting {name!r}; sweepable: {', '.join(SWEEPABLE)}"[:300])
    if name not in SWEEPABLE:
        raise ConfigError(f"--sweep {name}", "changes array shapes or program structure, so it cannot be vmapped in one "
                          "program; run each setting as its own command, or experiments/sweep_static.py from a checkout")  # fmt: skip
    return type(fields[name].default)
