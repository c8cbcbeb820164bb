"""The researcher's workflow: status and progress text, rerun from a saved config, GIFs of
greedy episodes, curves, --help/--version and the package files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxdqn import Config, ConfigError, Policy, cli, evaluate
from purejaxdqn.host import memory, run_directory, progress, report, runner, video
from purejaxdqn.envs import env_from_config
from purejaxdqn.algorithm.networks import make_network
from purejaxdqn.host.policy import RunDirError, load_policy

from tiny import TINY

ROOT = Path(__file__).resolve().parent.parent
TINY = [*TINY, "--checkpoint-min-interval", "0"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("workflow") / "run"
    assert cli.main([*TINY, "--num-seeds", "2", "--sweep", "lr=1e-3,3e-4", "--output-dir", str(run_dir)]) == 0
    return run_dir


# ---------------------------------------------------------------- progress that speaks
def test_progress_text_eta_and_durations():
    assert progress.format_duration(7) == "0:07" and progress.format_duration(3723) == "1:02:03"
    assert progress.format_duration(None) == "?" and progress.format_duration(float("inf")) == "?"
    assert progress.eta_seconds(50_000, 200_000, 10_000.0) == 15.0
    assert progress.eta_seconds(0, 200_000, 0.0) is None
    # 8 runs at 80,000 steps/s together: each run moves at 10,000 steps/s.
    assert progress.eta_seconds(50_000, 200_000, 80_000.0, runs=8) == 15.0
    assert progress.describe(50_000, 200_000, 80_000.0, None, runs=8).endswith("ETA 0:15")
    assert progress.describe(60_000, 200_000, 40_000.0, 212.44) == (
        "60,000/200,000 steps | 40,000 steps/s | eval 212.4 | ETA 0:04"
    )
    assert progress.describe(0, 10, 0.0, None).endswith("eval - | ETA ?")
    assert progress.runs_text(1) == "1 run" and progress.runs_text(4) == "4 runs"


def test_progress_bar_writes_status_then_bar_only_when_enabled(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the width rich assumes for a stream that is not a terminal
    stream = io.StringIO()
    bar = progress.ProgressBar(200_000, enabled=True, stream=stream)
    bar.status("compiling 4 runs ...")
    bar.note("compiled 4 runs in 3.2 s")
    bar.update(100_000, 50_000.0, 10.0)
    bar.close()
    text = stream.getvalue()
    assert "compiled 4 runs in 3.2 s" in text and "100,000/200,000 steps" in text and "ETA 0:02" in text
    log = io.StringIO()  # not a terminal, no --progress: a plain line per chunk, no status lines
    bar = progress.ProgressBar(10, stream=log, runs=2)
    bar.status("x"), bar.note("y"), bar.update(5, 1.0, None), bar.close()
    assert log.getvalue() == "purejaxdqn: 5/10 steps | 1 steps/s | eval - | ETA 0:10\n"
    quiet = io.StringIO()  # --no-progress: nothing at all
    bar = progress.ProgressBar(10, enabled=False, stream=quiet)
    bar.status("x"), bar.note("y"), bar.update(5, 1.0, None), bar.close()
    assert quiet.getvalue() == ""


def test_a_log_file_gets_a_line_per_chunk_and_the_eta_counts_every_run(tmp_path):
    """stderr redirected to a file, no --progress: one line per chunk (and the plan's warnings),
    whose ETA is one run's steps left at one run's share of the summed speed (4 runs)."""
    args = [a for a in TINY if a != "--no-progress"]
    with open(tmp_path / "log.txt", "w") as log:
        proc = subprocess.run([sys.executable, "-m", "purejaxdqn.train", *args, "--num-seeds", "4", "--output-dir",
                               str(tmp_path / "run")], stderr=log, stdout=subprocess.PIPE, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0
    lines = (tmp_path / "log.txt").read_text().splitlines()
    bars = [line for line in lines if " steps | " in line]
    assert len(bars) == 3 and all(": warning: " in line for line in lines if line not in bars), lines
    rows = run_directory.read_jsonl(tmp_path / "run" / run_directory.METRICS_FILE)
    for chunk, line in enumerate(bars):
        of_chunk = [row for row in rows if row["chunk"] == chunk]
        row, eval_mean = of_chunk[0], float(np.mean([r["eval_return_mean"] for r in of_chunk]))  # the bar's: all runs'
        left = (3000 - row["env_steps"]) * 4 / row["env_steps_per_s"]
        assert line == f"purejaxdqn: {progress.describe(row['env_steps'], 3000, row['env_steps_per_s'], eval_mean, 4)}"
        assert line.endswith(f"ETA {progress.format_duration(left)}")


def test_status_can_come_before_jax_is_imported(monkeypatch, capsys):
    """The package imports JAX lazily, so train.py's first status line precedes it; it respects
    --no-progress and a non-terminal stderr."""
    code = "import sys, purejaxdqn, purejaxdqn.train; print('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    progress.early_status([])  # capsys: not a terminal
    progress.early_status(["--progress", "--no-progress"][1:])
    assert capsys.readouterr().err == ""
    progress.early_status(["--progress"])
    assert "importing JAX" in capsys.readouterr().err


# ---------------------------------------------------------------- rerun from a saved config
def test_nothing_follows_the_error_line_of_a_failed_command():
    """A failed restore can leave reads that print tracebacks seconds later, from Python or C++;
    after mute_stderr neither reaches the user (sys.stderr or file descriptor 2)."""
    code = ("import os, sys; from purejaxdqn.host.progress import mute_stderr; print('error: one line', file=sys.stderr); "
            "mute_stderr(); print('Traceback', file=sys.stderr); os.write(2, b'C++ says')")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "error: one line\n"


def test_rerun_from_config_with_overrides(finished, tmp_path):
    """--config (dir or config.json) is the base; explicit options win; the sweep of an
    overridden setting is dropped; seeds and the rest carry over."""
    saved = json.loads((finished / run_directory.CONFIG_FILE).read_text())
    for source in (finished, finished / run_directory.CONFIG_FILE):
        parsed = cli.make_plan(["--config", str(source), "--seed", "7"])
        assert parsed.config.to_dict() == {**saved["config"], "seed": 7}
        assert parsed.num_seeds == 2 and parsed.sweep == {"lr": [1e-3, 3e-4]}
    parsed = cli.make_plan(["--config", str(finished), "--lr", "5e-4", "--num-seeds", "1"])
    assert parsed.config.lr == 5e-4 and parsed.sweep == {} and parsed.num_seeds == 1
    out = tmp_path / "again"
    assert cli.main(["--config", str(finished), "--seed", "7", "--num-seeds", "1", "--output-dir", str(out)]) == 0
    rerun = json.loads((out / run_directory.CONFIG_FILE).read_text())
    assert rerun["config"]["seed"] == 7 and rerun["rerun_of"] == str(finished) and len(rerun["runs"]) == 2


# Bad --config, --log, --wandb-*, evaluate --step/--gif/--max-frames input: tests/test_bad_inputs.py.


# ---------------------------------------------------------------- video
def gif_frames(path: Path) -> list[np.ndarray]:
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]


def test_evaluate_writes_gif_of_a_chosen_checkpoint(finished, tmp_path, capsys):
    """evaluate --gif draws a greedy CartPole episode (frames decode); --step picks a checkpoint."""
    gif = tmp_path / "cartpole.gif"
    args = [str(finished), "--episodes", "2", "--run", "1", "--gif", str(gif), "--max-frames", "60"]
    assert evaluate.main([*args, "--step", "3"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint after chunk 3" in out and "frames" in out
    frames = gif_frames(gif)
    assert 1 < len(frames) <= 60 and frames[0].shape[2] == 3


def test_policy_play_is_what_evaluate_reports(finished, capsys):
    """load_policy(...).play(n, seed, epsilon): the returns `evaluate` summarizes, the same for
    the same seed."""
    policy = load_policy(finished, run=1)
    returns = policy.play(6, seed=4, epsilon=0.0)
    assert returns.shape == (6,) and np.array_equal(returns, policy.play(6, seed=4, epsilon=0.0))
    capsys.readouterr()
    assert evaluate.main([str(finished), "--run", "1", "--episodes", "6", "--seed", "4", "--epsilon", "0"]) == 0
    out = capsys.readouterr().out
    assert "6 greedy episodes" in out and f"mean return {returns.mean():.2f} +- {returns.std():.2f}" in out
    assert "run 1 (seed 1, lr=0.001)" in out  # which of the 2 seeds x 2 learning rates
    assert repr(policy) == "Policy(CartPole-v1, run 1 (seed 1, lr=0.001), checkpoint 3, mlp 16, 2 actions)"


def test_keep_best_is_offered_beside_the_final_policy(finished, tmp_path, capsys):
    """--keep-best: load_policy(best=True) and evaluate --best read the best eval's parameters
    (its step and return named); the final ones stay the default. A run trained without it
    refuses best in one line."""
    run_dir = tmp_path / "best"
    assert cli.main([*TINY, "--num-seeds", "2", "--keep-best", "--output-dir", str(run_dir)]) == 0
    evals = [r for r in run_directory.read_jsonl(run_dir / run_directory.EVALS_FILE) if r["run"] == 1]
    top = max(evals, key=lambda r: r["eval_return_mean"])  # max() keeps the first of ties, as the run does
    best = load_policy(run_dir, run=1, best=True)
    assert best.best_eval == (top["env_steps"], pytest.approx(top["eval_return_mean"]))
    assert load_policy(run_dir, run=1).best_eval is None
    capsys.readouterr()
    assert evaluate.main([str(run_dir), "--run", "1", "--episodes", "3", "--best", "--epsilon", "0"]) == 0
    out = capsys.readouterr().out
    assert f"best evaluation up to chunk 3: env step {top['env_steps']:,}" in out and "3 greedy episodes" in out
    with pytest.raises(RunDirError, match="without --keep-best"):
        load_policy(finished, best=True)
    assert evaluate.main([str(finished), "--best"]) == 2
    assert "without --keep-best" in capsys.readouterr().err


def test_minatar_gif_from_the_python_api(tmp_path):
    """render_episode + save_gif on a MinAtar game: colored cells, several frames."""
    from purejaxdqn import render_episode, save_gif

    config = Config(env_id="Breakout-MinAtar", torso="conv", widths=(8,))
    venv = env_from_config(config, 1)
    network = make_network(config, venv.num_actions)
    params = network.init(jax.random.key(0), jnp.zeros((1, *venv.obs_shape), jnp.float32))
    frames, _ = render_episode(Policy(config, params, network, venv.obs_shape, 0), max_frames=25)
    path = save_gif(frames, tmp_path / "breakout.gif")
    decoded = gif_frames(path)
    assert len(decoded) == len(frames) > 1
    assert decoded[0].shape == (10 * 48 + 32, 10 * 48, 3)  # 48-pixel cells below a 32-pixel caption
    assert len(np.unique(decoded[0][32:].reshape(-1, 3), axis=0)) >= 3  # black plus at least two objects


# ---------------------------------------------------------------- plots
def test_curves_markers_band_label_and_training_returns(finished):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [{"run": 0, "seed": 0, "setting": 0}, {"run": 1, "seed": 1, "setting": 0}]
    _, ax = plt.subplots()
    report._plot_panel(ax, np.array([100]), np.array([[1.0], [3.0]]), runs, [{}], note="one point")
    assert ax.lines[0].get_marker() == "o"
    assert "band: min..max over seeds" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.get_text() == "one point" for t in ax.texts)
    _, ax = plt.subplots()
    report._plot_panel(ax, np.arange(50), np.zeros((1, 50)), runs[:1], [{}])
    assert ax.lines[0].get_marker() in (None, "None", "")
    rows = run_directory.read_jsonl(finished / run_directory.METRICS_FILE)
    steps, returns = report.training_returns(rows, 4)
    assert list(steps) == [1000, 2000, 3000] and returns.shape == (4, 3)
    for row in rows:
        if row["train_return"] is not None:
            assert returns[row["run"], list(steps).index(row["env_steps"])] == pytest.approx(row["train_return"])
    assert (finished / run_directory.CURVES_FILE).stat().st_size > 0
    plt.close("all")


@pytest.mark.parametrize("train", [False, True])
def test_curves_fixed_margins_hold_every_label(monkeypatch, tmp_path, train):
    """curves.png's margins are fixed (no tight_layout): the widest tick labels the default
    formatter writes ("-900000"), the axis labels, the offset text and the title stay inside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    runs = [{"run": i, "seed": i, "setting": i % 2} for i in range(4)]
    values = -np.linspace(0, 900_000, 4 * 30).reshape(4, 30)
    steps = np.linspace(0, 5e7, 30)
    report.plot_curves(tmp_path / "curves.png", steps, values, runs, [{"lr": 1e-3}, {"lr": 3e-4}], title="Atlantis (4 runs)",
                       train=(steps[::3], values[:, ::3]) if train else None)  # fmt: skip
    (fig,) = figures
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    # each panel with its tick labels, axis labels and offset text (what tight_layout fits), the title
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes] + [fig._suptitle.get_window_extent(renderer)]
    assert len(boxes) == 2 + train
    for b in boxes:
        assert 0 <= b.x0 and b.x1 <= fig.bbox.x1 and 0 <= b.y0 and b.y1 <= fig.bbox.y1, b
    if train:  # the panels do not overlap: the right one's tick labels clear the left one
        assert boxes[0].x1 < boxes[1].x0
    plt.close(fig)


def test_single_eval_point_warns(capsys, monkeypatch, tmp_path):
    def stop(*a, **k):
        raise memory.OutOfMemoryError("stopped here by the test")

    monkeypatch.setattr(runner, "prepare", stop)
    cli.main([*[a for a in TINY if a != "--no-progress"], "--eval-every", "5000", "--output-dir", str(tmp_path / "r")])
    assert "warning: --eval-every 5,000 is not below the run's 3,000 env steps" in capsys.readouterr().err


# ---------------------------------------------------------------- CLI details and package
def test_help_shows_the_effective_preset_defaults_env_ids_and_version(capsys):
    with pytest.raises(SystemExit):
        cli.make_plan(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "W1,W2,... hidden layer widths of the MLP Q-network (default: 120,84)" in text  # cartpole preset
    assert "Acrobot-v1, MountainCar-v0" in text and "Defaults shown: the 'cartpole' preset" in text
    for option in ("--log", "--wandb-project", "--wandb-entity", "--wandb-mode", "--config", "--version"):
        assert option in text
    with pytest.raises(SystemExit):
        cli.make_plan(["--env-id", "Breakout-MinAtar", "--help"])
    assert "(default: conv)" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit) as exc:
        cli.make_plan(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == "purejaxdqn 0.1.0"


def test_static_sweep_error_does_not_need_a_checkout():
    with pytest.raises(ConfigError, match="run each setting as its own command, or experiments/sweep_static.py from a checkout"):
        cli.make_plan(["--sweep", "widths=16,32"])


def test_package_files():
    """LICENSE matches pyproject's license, py.typed ships, console scripts, extras for sinks."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"]["text"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "purejaxdqn" / "py.typed").is_file()
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["purejaxdqn"]
    assert project["project"]["scripts"]["purejaxdqn-train"] == "purejaxdqn.train:main"
    extras = project["project"]["optional-dependencies"]
    assert any(d.startswith("tensorboardX") for d in extras["tensorboard"]) and extras["wandb"]
    assert {"tensorboardX>=2.6", "wandb>=0.19.10"} <= set(extras["dev"])
    assert any(d.startswith(video.MP4_PACKAGE) for d in extras["video"]) and set(extras["video"]) <= set(extras["dev"])
