"""The command lines' parsers: `train`'s (generated from `Config` and `RunOptions`, plus the
options of the command itself) and `evaluate`'s, with the value types they share.

Every parser reports bad input as one line (UsageError), never a usage dump. Options not given
stay absent from the parsed namespace (argparse.SUPPRESS), so the plan can tell them from
defaults; the defaults themselves are stated once, where each setting is defined.
"""

from __future__ import annotations

import argparse
import textwrap
import dataclasses
from pathlib import Path

from purejaxdqn import __version__
from purejaxdqn.config import SWEEPABLE, Config, budget, from_preset, presets
from purejaxdqn.config.schema import option
from purejaxdqn.envs import describe_ids
from purejaxdqn.host import distributed, tracking
from purejaxdqn.host.run_options import CADENCE_FIELDS, option_dest

# The run options a hand-written --config file may hold besides the settings (cli/config_file.py):
# those a saved run's config.json records too. Where a run goes, how it is watched and on which
# devices stay the command line's.
FILE_OPTIONS = ("preset", "num_seeds", "sweep", *(option_dest(f) for f in CADENCE_FIELDS))
TRAIN_PROG = "python -m purejaxdqn.train"  # also installed as the `purejaxdqn-train` console script
EVALUATE_PROG = "python -m purejaxdqn.evaluate"  # also installed as `purejaxdqn-evaluate`
GROUP_TITLES = {
    "environment": "environment",
    "run": "run length, seed and logging",
    "network": "Q-network",
    "replay": "replay buffer",
    "learner": "learner (lr, gamma, target, loss, update schedule)",
    "exploration": "epsilon-greedy exploration",
    "actor-learner": "the actor-learner (host envs, gymnasium:ID; see README: environments that step on the host)",
}


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, wrapping lines at spaces only: env ids and preset names (MiniGrid-DoorKey-5x5,
    space-invaders) stay whole, to be read and pasted."""

    def _split_lines(self, text, width):
        return textwrap.wrap(self._whitespace_matcher.sub(" ", text).strip(), width, break_on_hyphens=False)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=HelpFormatter, **kwargs)

    def error(self, message: str):  # one line, no usage dump
        raise UsageError(message)


def integer(text: str) -> int:
    """Integers as 500000, 500_000 or 5e5 (ASCII digits only: Python's int() also reads other
    scripts' digits, which a typo should not turn into a number)."""
    if not text.isascii():
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r} (ASCII digits only)")
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


def number(text: str) -> float:
    if not text.isascii():
        raise argparse.ArgumentTypeError(f"invalid number: {text!r} (ASCII digits only)")
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None


def widths(text: str) -> tuple[int, ...]:
    """Comma-separated layer widths, e.g. 120,84. An empty string means no layers (which
    validation refuses, naming --widths); an empty item between commas is a typo."""
    parts = text.replace(" ", "").split(",")
    if parts == [""]:
        return ()
    try:
        return tuple(integer(p) for p in parts)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"widths must be comma-separated integers, got {text!r}") from None


def negative_values_attached(argv: list[str]) -> list[str]:
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


def train_parser(defaults: Config | None = None, described: str = "cartpole") -> argparse.ArgumentParser:
    """`train`'s parser; each setting's help shows its value in `defaults` (`described` says
    what they are; default: the bare command's config, the 'cartpole' preset)."""
    defaults = defaults or from_preset(None)
    parser = Parser(
        prog=TRAIN_PROG,
        description=(
            "Train a DQN agent on a JAX environment (gymnax, Craftax, XLand-MiniGrid, Jumanji), entirely on the "
            "accelerator. With no "
            f"options: CartPole-v1 with the tuned 'cartpole' preset. Defaults shown: {described}."
        ),
        epilog="Which value wins, last one first: options given; a --config FILE's values; its presets ('preset'; "
        "else --preset, or the env's default preset) or a saved run's (--config RUN_DIR); the plain defaults. "
        "'--env-id ID --help', '--preset NAME --help' or '--config RUN_DIR|FILE --help' shows the defaults it starts from.",
        argument_default=argparse.SUPPRESS,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"purejaxdqn {__version__}")
    _add_outputs(parser)
    _add_tracking(parser)
    _add_many_runs(parser)
    _add_checkpoints(parser)
    _add_devices(parser)
    _add_settings(parser, defaults)
    return parser


def _add_outputs(parser: argparse.ArgumentParser) -> None:
    main = parser.add_argument_group("preset and outputs")
    main.add_argument("--preset", metavar="NAME[,NAME...]", help=presets.help_text())
    main.add_argument(
        "--config", type=Path, metavar="RUN_DIR|FILE",
        help="the base instead of a preset: a saved run (its directory or config.json: settings, seeds, sweep), "
        "or a config file written by hand, TOML (.toml) or JSON, of settings and the run options "
        f"{', '.join(FILE_OPTIONS)}, named as these options with _ for - (a file's 'preset' names the presets it "
        "starts from); options given override it, e.g. --config runs/x --seed 7",
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
        help="status lines and a progress bar with ETA on stderr (default: the bar on a terminal, else a plain "
        "line per chunk: steps, steps/s, eval, ETA; --no-progress: neither)",
    )  # fmt: skip


def _add_tracking(parser: argparse.ArgumentParser) -> None:
    track = parser.add_argument_group("experiment tracking (metrics.jsonl and evals.jsonl are always written)")
    track.add_argument(
        "--log", metavar="SINK[,SINK...]",
        help="also log to 'tensorboard' (<output-dir>/tensorboard/<run>/; pip install \"purejaxdqn[tensorboard]\") "
        "and/or 'wandb' (one W&B run per run; pip install \"purejaxdqn[wandb]\")",
    )  # fmt: skip
    track.add_argument(
        "--log-video", action=argparse.BooleanOptionalAction,
        help=f"at the end of training, a greedy episode of run 0 (at most {tracking.VIDEO_FRAMES} steps) as a GIF in "
        f"the trackers ({tracking.VIDEO_TAG}; default: on with --log tensorboard/wandb)",
    )  # fmt: skip
    track.add_argument("--wandb-project", metavar="NAME", help=f"W&B project (default: {tracking.TrackingSpec().wandb_project})")
    track.add_argument("--wandb-entity", metavar="NAME", help="W&B entity (team or user; default: yours)")
    track.add_argument(
        "--wandb-mode", choices=tracking.WANDB_MODES,
        help="W&B mode; offline needs no network, 'wandb sync' uploads later (default: $WANDB_MODE, else online)",
    )  # fmt: skip


def _add_many_runs(parser: argparse.ArgumentParser) -> None:
    many = parser.add_argument_group("many runs in one compiled program (vmap)")
    many.add_argument(
        "--num-seeds", type=integer, metavar="N",
        help="independent runs with seeds --seed, --seed+1, ... (default: 1)",
    )  # fmt: skip
    many.add_argument(
        "--sweep", action="append", metavar="NAME=V1,V2,...",
        help="sweep a hyperparameter over values, all settings x seeds in one program; repeat "
        "for a grid. Sweepable: " + ", ".join(SWEEPABLE) + ". Settings that change shapes "
        "(widths, batch size, buffer size, envs, ...) need separate compiles: run each setting as its "
        "own command, or experiments/sweep_static.py from a checkout",
    )  # fmt: skip


def _add_checkpoints(parser: argparse.ArgumentParser) -> None:
    ckpt = parser.add_argument_group("checkpoints and resume")
    for field in CADENCE_FIELDS:  # generated from RunOptions: one source for help and defaults
        kind, metavar = (number, "S") if isinstance(field.default, float) else (integer, "N")
        ckpt.add_argument(field.metadata["option"], type=kind, metavar=metavar, dest=option_dest(field),
                          help=f"{field.metadata['help']} (default: {field.default:g})")  # fmt: skip
    ckpt.add_argument(
        "--resume", type=Path, metavar="RUN_DIR",
        help="continue a killed run from its newest complete checkpoint, with its saved settings "
        "(multi-host: on every process, with the same --num-processes)",
    )  # fmt: skip


def _add_devices(parser: argparse.ArgumentParser) -> None:
    devices = parser.add_argument_group("devices and hosts (see README: multi-device and multi-host)")
    devices.add_argument(
        "--mesh-runs", type=integer, metavar="N",
        help="devices that split the runs (seeds x settings) between them (default: auto)",
    )  # fmt: skip
    devices.add_argument(
        "--mesh-data", type=integer, metavar="N",
        help="devices that split one run data-parallel: envs, replay and batch are split, gradients "
        "averaged; --num-envs, --batch-size and --num-eval-envs are global totals (default: auto)",
    )  # fmt: skip
    devices.add_argument(
        "--mesh-model", type=integer, metavar="N",
        help="devices that split the Q-network's hidden layers tensor-parallel (kernels by columns, "
        "then rows); every --widths value must divide by N (default: 1)",
    )  # fmt: skip
    devices.add_argument(
        "--cpu-devices", type=integer, metavar="N",
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
    devices.add_argument("--num-processes", type=integer, metavar="N", help="multi-host: number of processes (env JAX_NUM_PROCESSES)")
    devices.add_argument("--process-id", type=integer, metavar="I", help="multi-host: this process's index (env JAX_PROCESS_ID)")
    devices.add_argument(
        "--distributed-timeout", type=integer, metavar="S",
        help="multi-host: seconds to wait for all processes to join, and for one that stops answering "
        f"before the others stop too (default: {distributed.DEFAULT_TIMEOUT_S})",
    )  # fmt: skip


def _add_settings(parser: argparse.ArgumentParser, defaults: Config) -> None:
    """One option per `Config` field, in the groups its metadata names."""
    groups = {key: parser.add_argument_group(title) for key, title in GROUP_TITLES.items()}
    for field in dataclasses.fields(Config):
        meta, default = field.metadata, field.default
        sweep = " [hyperparameter]" if meta.get("sweep") else ""
        choices = f"; one of: {describe_ids()}" if field.name == "env_id" else ""
        help_text = f"{meta['help']}{choices} (default: {_show(getattr(defaults, field.name))}){sweep}"
        kwargs: dict = {"help": help_text, "dest": field.name}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs.update(type=widths, metavar="W1,W2,...")
        elif isinstance(default, int):
            kwargs.update(type=integer, metavar="N")
        elif isinstance(default, float):
            kwargs.update(type=number, metavar="X")
        else:
            kwargs.update(type=str, choices=meta.get("choices"))
        groups[meta["group"]].add_argument(option(field.name), **kwargs)
    for name, setting in budget.FRACTIONS.items():  # after the setting each one sets
        group = groups[Config.__dataclass_fields__[setting].metadata["group"]]
        group.add_argument(option(name), type=number, metavar="F", dest=name, help=budget.FRACTION_HELP[name])


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def evaluate_parser(description: str) -> argparse.ArgumentParser:
    """`evaluate`'s parser."""
    parser = Parser(prog=EVALUATE_PROG, description=description)
    parser.add_argument("run_dir", type=Path, help="a run directory written by python -m purejaxdqn.train")
    parser.add_argument("--episodes", type=integer, default=100, help="episodes to play (default: 100)")
    parser.add_argument("--run", type=integer, default=0, help="which run of a multi-run directory (default: 0)")
    parser.add_argument("--seed", type=integer, default=0, help="seed for the evaluation episodes (default: 0)")
    parser.add_argument("--step", type=integer, help="the checkpoint to load: chunks done (default: the newest complete one)")
    parser.add_argument("--best", action="store_true",
                        help="the parameters of the run's best evaluation (a run trained with --keep-best), not the latest")
    parser.add_argument("--epsilon", type=float, metavar="X",
                        help="random-action probability while playing (default: the run's --eval-epsilon)")
    parser.add_argument("--gif", type=Path, metavar="PATH", help="also write one greedy episode as an animated GIF")
    parser.add_argument("--video", type=Path, metavar="PATH",
                        help="also write one greedy episode as a video, by the extension: .mp4 (H.264; needs imageio-ffmpeg, "
                        "pip install \"purejaxdqn[video]\") or .gif; beside --gif, the same episode in both")
    parser.add_argument("--max-frames", type=integer, default=1000, help="--gif, --video: longest episode drawn (default: 1000)")
    return parser
