"""How a batch of runs is driven on the host, apart from what it trains (`Config`).

`RunOptions` is everything `runner.train_runs` needs besides the config and the runs: where it
writes, how often it checkpoints, whether it resumes, where it logs, what config.json says it
came from. The checkpoint cadence is
saved in config.json (a resumed run keeps it); its fields carry their command-line option and
help, and cli/parsers.py generates the checkpoint options from them, so the defaults live here only.
No JAX import: the command line reads this before it starts JAX.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


def _cadence(default, option: str, saved_as: str, help: str):
    return dataclasses.field(default=default, metadata={"option": option, "saved_as": saved_as, "help": help})


@dataclasses.dataclass(frozen=True)
class RunOptions:
    output_dir: Path | None = None  # None: nothing is written, checkpointed or logged
    overwrite: bool = False  # replace a previous run in output_dir (its run files and checkpoints)
    write_outputs: bool = True  # False on the processes other than 0 of a multi-host run
    checkpoint_every: int | None = _cadence(
        1, "--checkpoint-every", "every", "save the full training state every N chunks, 0 = only at the end"
    )  # None (the Python API only): never save
    checkpoint_min_interval_s: float = _cadence(
        60.0, "--checkpoint-min-interval", "min_interval_s",
        "skip a due save if the last one was less than S seconds ago, so short runs are not slowed "
        "down; the final save always happens (0 = save whenever due)",
    )  # fmt: skip
    keep_checkpoints: int = _cadence(3, "--keep-checkpoints", "keep", "keep the newest N checkpoints")
    resume: bool = False  # continue the run in output_dir from its newest complete checkpoint
    command: list[str] | None = None  # the command line recorded in config.json (default sys.argv)
    tracking: Any = None  # tracking.TrackingSpec: the sinks besides metrics.jsonl / evals.jsonl
    preset: str = "none"  # recorded in config.json: the presets the config started from
    rerun_of: str | None = None  # recorded in config.json: the saved run a --config rerun started from
    config_file: str | None = None  # recorded in config.json: the hand-written --config file it started from
    warnings: tuple[str, ...] = ()  # recorded in summary.json: settings that do not fit the run (config.budget)

    @property
    def writing(self) -> bool:
        """Whether this process writes the run directory."""
        return self.output_dir is not None and self.write_outputs

    def cadence(self) -> dict:
        """The checkpoint cadence as saved in config.json: {"every", "min_interval_s", "keep"}."""
        return {f.metadata["saved_as"]: getattr(self, f.name) for f in CADENCE_FIELDS}

    def with_cadence(self, saved: dict) -> "RunOptions":
        """These options with a cadence as saved in config.json."""
        return dataclasses.replace(self, **{f.name: saved[f.metadata["saved_as"]] for f in CADENCE_FIELDS})


CADENCE_FIELDS = [f for f in dataclasses.fields(RunOptions) if "option" in f.metadata]


def cadence_defaults() -> dict:
    """The default checkpoint cadence, keyed as saved in config.json."""
    return RunOptions().cadence()


def option_dest(field: dataclasses.Field) -> str:
    """The argparse destination of a cadence field's option (--checkpoint-every -> checkpoint_every)."""
    return field.metadata["option"].lstrip("-").replace("-", "_")
