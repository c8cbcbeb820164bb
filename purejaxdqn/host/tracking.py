"""Where a run's per-chunk rows go: the JSONL logs (always), TensorBoard and Weights & Biases.

Every sink gets the same rows the runner makes after each chunk (`metrics.jsonl` rows, one per
run, and `evals.jsonl` rows, one per new evaluation per run). TensorBoard and W&B see
them as scalars in one namespace (`SCALARS`, CleanRL's names), stepped by env steps, one series
per run: a TensorBoard subdirectory `tensorboard/<run label>` and a W&B run per run (grouped by
the output directory). Hyperparameters are logged once per run, at the start. At the end of
training the trackers also get a video (`VIDEO_TAG`, an animated GIF: what TensorBoard shows
and W&B plays) of one greedy episode of run 0 with its final parameters (`TrackingSpec.video`,
the command line's --log-video; runner.ChunkLogger draws it).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, NamedTuple

from purejaxdqn.host import run_directory

# metrics.jsonl / evals.jsonl key -> scalar name shared by every scalar sink.
SCALARS = {
    "train_return": "charts/episodic_return",
    "train_length": "charts/episodic_length",
    "eval_return_mean": "charts/eval_return",
    "eval_return_min": "charts/eval_return_min",
    "epsilon": "charts/epsilon",
    "env_steps_per_s": "charts/SPS",
    "updates": "charts/updates",
    "loss": "losses/td_loss",
    "q_mean": "losses/q_values",
}
VIDEO_TAG = "videos/greedy_episode"  # the end-of-training video, at the final env step
VIDEO_FRAMES = 500  # longest episode drawn for it (a few seconds of drawing and encoding on a CPU)
EVAL_KEYS = ("eval_return_mean", "eval_return_min")  # taken from evals.jsonl rows (at their own step)
# --log name -> (module that must be importable, pip extra that installs it)
OPTIONAL = {"tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb", "wandb")}
WANDB_MODES = ("online", "offline", "disabled")


class TrackingSpec(NamedTuple):
    """The sinks chosen on the command line (besides the JSONL logs, which are always written)."""

    log: tuple[str, ...] = ()  # names from OPTIONAL
    wandb_project: str = "purejaxdqn"
    wandb_entity: str | None = None
    wandb_mode: str | None = None  # None: W&B's own default (WANDB_MODE, else online)
    video: bool = True  # the trackers get a greedy episode of run 0 at the end (--log-video)

    @property
    def wants_video(self) -> bool:
        """Whether the end-of-training video is drawn: asked for, and a tracker to take it."""
        return self.video and bool(self.log)


class TrackingError(ValueError):
    """A sink that is unknown or whose package is missing; the message says how to fix it."""


def parse_log(text: str) -> tuple[str, ...]:
    """`"tensorboard,wandb"` -> ("tensorboard", "wandb"), checking names and installed packages."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    for name in names:
        if name == "jsonl":
            continue
        if name not in OPTIONAL:
            raise TrackingError(f"--log: unknown sink {name!r}; choose from jsonl, {', '.join(OPTIONAL)}")
        module, extra = OPTIONAL[name]
        if importlib.util.find_spec(module) is None:
            raise TrackingError(f'--log {name}: the {module} package is not installed; pip install "purejaxdqn[{extra}]"')
    return tuple(n for n in names if n != "jsonl")


def run_label(run: dict) -> str:
    """A file-name-safe label of one run: its index, seed and swept values (run-3_seed-1_lr-0.001)."""
    swept = [f"{k}-{v:g}" if isinstance(v, float) else f"{k}-{v}" for k, v in run.items() if k not in ("run", "seed", "setting")]
    return "_".join([f"run-{run['run']}", f"seed-{run['seed']}", *swept])


def scalar_rows(metric_rows: list[dict], eval_rows: list[dict]) -> list[tuple[int, int, dict[str, float]]]:
    """(run index, env step, {scalar name: value}) for one chunk's rows; missing values left out."""
    out = []
    for row in metric_rows:
        values = {SCALARS[k]: row[k] for k in SCALARS if k not in EVAL_KEYS and row.get(k) is not None}
        out.append((row["run"], row["env_steps"], values))
    for row in eval_rows:
        out.append((row["run"], row["env_steps"], {SCALARS[k]: row[k] for k in EVAL_KEYS}))
    return out


# The end-of-run metrics the trackers compare runs by (TensorBoard's HParams, W&B's summary).
RESULT_METRICS = ("result/final_eval_return", "result/last_evals_return")


def comparable(value):
    """A value TensorBoard's HParams takes (int, float, str, bool): tuples as text."""
    return value if isinstance(value, (int, float, str, bool)) else str(value)


class Clip(NamedTuple):
    """A video for the trackers: an animated GIF and its frame size."""

    gif: bytes
    height: int
    width: int


class Sink:
    """One destination of a run's rows. `log` gets each chunk's rows, `video` the end-of-training
    clip (trackers only); `close` ends the run."""

    def log(self, metric_rows: list[dict], eval_rows: list[dict]) -> None:
        for run, step, values in scalar_rows(metric_rows, eval_rows):
            self.scalars(run, step, values)

    def scalars(self, run: int, step: int, values: dict[str, float]) -> None:
        """Scalar sinks write one run's values at one env step here."""

    def video(self, run: int, step: int, clip: Clip) -> None:
        """Trackers show `clip` of run `run` at env step `step` as VIDEO_TAG here."""

    def results(self, run: int, step: int, swept: dict, metrics: dict[str, float]) -> None:
        """Trackers record run `run`'s final `metrics` (RESULT_METRICS) beside its `swept` values
        (seed and swept settings) here, for comparing the runs of a sweep."""

    def close(self) -> None:
        pass


class JsonlSink(Sink):
    """metrics.jsonl and evals.jsonl, the run directory's own logs (resume truncates them)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def log(self, metric_rows, eval_rows):
        run_directory.append_jsonl(self.run_dir / run_directory.METRICS_FILE, metric_rows)
        run_directory.append_jsonl(self.run_dir / run_directory.EVALS_FILE, eval_rows)


class TensorBoardSink(Sink):
    """Event files in `<run dir>/tensorboard/<run label>/`: `tensorboard --logdir <run dir>/tensorboard`."""

    def __init__(self, run_dir: Path, runs: list[dict], hparams: dict):
        from tensorboardX import SummaryWriter

        root = Path(run_dir) / run_directory.TENSORBOARD_DIR
        self.writers = {r["run"]: SummaryWriter(str(root / run_label(r))) for r in runs}
        for r in runs:
            table = "\n".join(f"|{k}|{v}|" for k, v in {**hparams, **r}.items())
            self.writers[r["run"]].add_text("hyperparameters", "|param|value|\n|-|-|\n" + table)

    def scalars(self, run, step, values):
        for name, value in values.items():
            self.writers[run].add_scalar(name, value, step)

    def video(self, run, step, clip):
        """An image summary holding the GIF, as tensorboardX's add_video writes (which would need
        moviepy to encode it): TensorBoard's Images tab plays it."""
        from tensorboardX.proto.summary_pb2 import Summary

        image = Summary.Image(height=clip.height, width=clip.width, colorspace=3, encoded_image_string=clip.gif)
        self.writers[run].file_writer.add_summary(Summary(value=[Summary.Value(tag=VIDEO_TAG, image=image)]), step)

    def results(self, run, step, swept, metrics):
        """The HParams dashboard's row of this run: its seed and swept values, its env, and the
        final metrics, so a sweep's runs compare side by side. Written by the run's own writer
        (tensorboardX's add_hparams opens a second writer, whose file name, to the second, can
        be the first one's: the two then overwrite each other)."""
        from tensorboardX.summary import hparams

        writer = self.writers[run]
        for summary in hparams({k: comparable(v) for k, v in swept.items()}, metrics):  # experiment, session start, end
            writer.file_writer.add_summary(summary)
        for name, value in metrics.items():
            writer.add_scalar(name, value, step)

    def close(self):
        for writer in self.writers.values():
            writer.close()


def wandb_dir(run_dir: Path) -> Path:
    """Where W&B puts its wandb/ directory: $WANDB_DIR, else the run directory. Passed to every
    wandb.init (W&B reads its environment only once per process)."""
    return Path(os.environ.get("WANDB_DIR") or run_dir)


class WandbSink(Sink):
    """One W&B run per run, grouped by the run directory's name; config = hyperparameters + the
    run's seed and swept values. Offline mode writes under WANDB_DIR (default: the run dir)."""

    def __init__(self, run_dir: Path, runs: list[dict], hparams: dict, spec: TrackingSpec):
        import wandb

        self.runs = {}
        for r in runs:
            try:
                self.runs[r["run"]] = self._init(wandb, run_dir, r, hparams, spec)
            except Exception as err:  # W&B raises many types (no login, no network, bad entity)
                self.close()
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise TrackingError(f"--log wandb: W&B could not start a run: {first} (--wandb-mode offline needs no network)") from None

    @staticmethod
    def _init(wandb, run_dir: Path, r: dict, hparams: dict, spec: TrackingSpec):
        run = wandb.init(
            project=spec.wandb_project, entity=spec.wandb_entity, mode=spec.wandb_mode,
            dir=str(wandb_dir(run_dir)),
            group=Path(run_dir).name, name=f"{Path(run_dir).name}/{run_label(r)}",
            config={**hparams, **r}, reinit="create_new", settings=wandb.Settings(silent=True, console="off"),
        )  # fmt: skip
        run.define_metric("env_steps")
        for section in sorted({name.split("/")[0] for name in (*SCALARS.values(), VIDEO_TAG)}):
            run.define_metric(f"{section}/*", step_metric="env_steps")  # x axis: env steps, as in CleanRL
        return run

    def scalars(self, run, step, values):
        self.runs[run].log({"env_steps": step, **values})

    def video(self, run, step, clip):
        import io

        import wandb

        self.runs[run].log({"env_steps": step, VIDEO_TAG: wandb.Video(io.BytesIO(clip.gif), format="gif")})

    def results(self, run, step, swept, metrics):
        self.runs[run].summary.update(metrics)

    def close(self):
        for run in self.runs.values():
            run.finish()


class Sinks(Sink):
    """Every chosen sink, fed together; closing closes them all (also after an error)."""

    def __init__(self, sinks: list[Sink]):
        self.sinks = sinks

    def log(self, metric_rows, eval_rows):
        for sink in self.sinks:
            sink.log(metric_rows, eval_rows)

    def video(self, run, step, clip):
        for sink in self.sinks:
            sink.video(run, step, clip)

    def results(self, run, step, swept, metrics):
        for sink in self.sinks:
            sink.results(run, step, swept, metrics)

    def close(self):
        for sink in self.sinks:
            sink.close()


def open_sinks(spec: TrackingSpec | None, run_dir: Path, runs: list[dict], hparams: dict[str, Any]) -> Sinks:
    """The JSONL logs plus the sinks `spec` names, opened for this batch of runs."""
    spec = spec or TrackingSpec()
    sinks = Sinks([JsonlSink(run_dir)])
    try:
        if "tensorboard" in spec.log:
            sinks.sinks.append(TensorBoardSink(run_dir, runs, hparams))
        if "wandb" in spec.log:
            sinks.sinks.append(WandbSink(run_dir, runs, hparams, spec))
    except Exception:
        sinks.close()
        raise
    return sinks


def where(spec: TrackingSpec, run_dir: Path, num_runs: int) -> list[str]:
    """One line per tracker for the end of a run: where its data went and how to look at it."""
    lines = []
    if "tensorboard" in spec.log:
        lines.append(f"tensorboard: {num_runs} run(s); view with `tensorboard --logdir {Path(run_dir) / run_directory.TENSORBOARD_DIR}`")
    if "wandb" in spec.log:
        place = wandb_dir(run_dir) / "wandb"
        mode = spec.wandb_mode or os.environ.get("WANDB_MODE") or "online"
        hint = f"; upload with `wandb sync {place}/offline-run-*`" if mode == "offline" else ""
        lines.append(f"wandb: {num_runs} run(s) in project {spec.wandb_project}, group {Path(run_dir).name} ({mode}){hint}")
    return lines
