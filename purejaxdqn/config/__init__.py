"""Run configuration: every setting in one frozen dataclass, plus presets and validation.

- `schema`: `Config` (each setting, its help and group, `sweep=True` on the traced ones),
  `HParams` (the traced settings, derived from those markers), `ConfigError`, the integer limits.
- `presets`: the presets as data (`Preset` records), `from_preset`, `preset_names`, and the
  `--preset` help and README table generated from them.
- `checks`: `validate(config)`, `check_sweep(config, sweep)`, `check_used(config, names)` and
  `check_hparams(config, hp)`.
- `batch`: `make_batch(config, num_seeds, sweep)`, the one check and layout of seeds x settings.
"""

from purejaxdqn.config.checks import check_hparams, check_sweep, check_used, validate
from purejaxdqn.config.presets import DEFAULT_PRESETS, PRESETS, RECORDS, Preset, from_preset, preset_names
from purejaxdqn.config.schema import (
    ADDED_SINCE,
    HPARAM_DTYPES,
    INT32_LIMIT,
    SEED_LIMIT,
    SWEEPABLE,
    Config,
    ConfigError,
    HParams,
)

__all__ = [
    "ADDED_SINCE", "DEFAULT_PRESETS", "HPARAM_DTYPES", "INT32_LIMIT", "PRESETS", "RECORDS", "SEED_LIMIT",
    "SWEEPABLE", "Config", "ConfigError", "HParams", "Preset", "check_hparams", "check_sweep", "check_used", "from_preset", "preset_names",
    "validate",
]  # fmt: skip
