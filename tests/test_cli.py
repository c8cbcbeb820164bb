"""The command line: end to end on a tiny budget, and every bad-input case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from purejaxdqn import cli
from purejaxdqn.host import run_directory, runner
from purejaxdqn.config import PRESETS

from tiny import TINY


def run_module(args, cwd, timeout=300):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "purejaxdqn.train", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def test_cli_end_to_end_tiny_budget(tmp_path):
    """`python -m purejaxdqn.train` trains, prints the final eval and timings, writes the run dir."""
    out = tmp_path / "run"
    proc = run_module([*TINY, "--output-dir", str(out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "final eval return" in proc.stdout
    assert "compile" in proc.stdout and "run" in proc.stdout and "env steps/s" in proc.stdout
    assert proc.stderr.strip() == "" or "Traceback" not in proc.stderr  # not a terminal: no progress bar
    assert "steps/s | eval" not in proc.stderr

    saved = json.loads((out / run_directory.CONFIG_FILE).read_text())
    assert saved["config"]["total_steps"] == 3000 and saved["config"]["widths"] == [16]
    metrics = run_directory.read_jsonl(out / run_directory.METRICS_FILE)
    assert [m["chunk"] for m in metrics] == [0, 1, 2]
    assert metrics[-1]["env_steps"] == 3000
    assert metrics[-1]["updates"] == (3000 - 500) // 10 + 1  # an update at every multiple of 10 from 500
    evals = run_directory.read_jsonl(out / run_directory.EVALS_FILE)
    assert [e["env_steps"] for e in evals] == [1000, 2000, 3000]
    summary = json.loads((out / run_directory.SUMMARY_FILE).read_text())
    for key in ("compile_s", "run_s", "env_steps_per_s", "updates_per_s", "final_eval_return_mean"):
        assert key in summary
    assert summary["final_eval_return_mean"][0] == evals[-1]["eval_return_mean"]


def test_cli_help_explains_every_option(capsys):
    """--help lists every Config setting with its explanation."""
    with pytest.raises(SystemExit) as exc:
        cli.train_parser().parse_args(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--env-id", "--preset", "--total-steps", "--seed", "--lr", "--gamma", "--double-dqn",
                 "--dueling", "--loss", "--tau", "--target-update-every", "--update-every",
                 "--gradient-steps", "--buffer-size", "--batch-size", "--widths", "--output-dir",
                 "--eps-decay-steps", "--max-grad-norm", "--learning-starts", "--progress"):  # fmt: skip
        assert flag in text, flag
    preset_help = " ".join(text.split("--preset NAME[,NAME...]")[2].split("--config")[0].split())
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for name in PRESETS:  # --help and the README's table are generated from the preset records
        assert f"'{name}'" in preset_help and f"`{name}`" in readme, name


# Every bad-input case (exit 2, one line, nothing changed) is in tests/test_bad_inputs.py.


def test_unknown_env_lists_valid_ids(capsys):
    assert cli.main(["--env-id", "Nope"]) == 2
    err = capsys.readouterr().err
    assert "CartPole-v1" in err and "Breakout-MinAtar" in err


def test_existing_output_dir_is_refused_and_untouched(tmp_path, capsys, monkeypatch):
    """A non-empty --output-dir is refused (exit 2) and its files are left as they were."""
    monkeypatch.setattr(runner, "compile_program", lambda *a, **k: pytest.fail("training started"))
    out = tmp_path / "old"
    out.mkdir()
    (out / run_directory.SUMMARY_FILE).write_text("precious")
    (out / "notes.txt").write_text("mine")
    assert cli.main(["--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--overwrite" in err
    assert (out / run_directory.SUMMARY_FILE).read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", run_directory.SUMMARY_FILE]


def test_overwrite_replaces_only_run_files(tmp_path):
    """--overwrite replaces the run files and leaves the user's other files alone."""
    out = tmp_path / "old"
    out.mkdir()
    (out / run_directory.SUMMARY_FILE).write_text("stale")
    (out / run_directory.METRICS_FILE).write_text('{"stale": true}\n')
    (out / "notes.txt").write_text("mine")
    proc = run_module([*TINY, "--output-dir", str(out), "--overwrite"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / run_directory.SUMMARY_FILE).read_text())["num_runs"] == 1
    assert all("stale" not in row for row in run_directory.read_jsonl(out / run_directory.METRICS_FILE))


def test_preset_defaults_and_overrides():
    """No options: the cartpole preset on CartPole-v1; explicit options override the preset."""
    config, preset, *_ = cli.make_plan([])
    assert preset == "cartpole" and config.env_id == "CartPole-v1" and config.total_steps == 300_000 and not config.double_dqn
    config, *_ = cli.make_plan(["--lr", "3e-4", "--widths", "32,32,32", "--double-dqn"])
    assert config.lr == 3e-4 and config.widths == (32, 32, 32) and config.double_dqn is True
    config, preset, *_ = cli.make_plan(["--env-id", "Acrobot-v1"])
    assert preset == "acrobot" and config.widths == (256, 256)
    config, *_ = cli.make_plan(["--total-steps", "5e5"])
    assert config.total_steps == 500_000


def test_configs_saved_before_a_setting_existed_keep_their_old_behaviour():
    """A config.json from before --eval-epsilon and --keep-best loads with the values runs had
    then (greedy evaluation, no best parameters); any other missing setting is refused."""
    from purejaxdqn.config import ADDED_SINCE, Config, ConfigError

    old = {k: v for k, v in Config().to_dict().items() if k not in ADDED_SINCE}
    loaded = Config.from_dict(old)
    assert loaded.eval_epsilon == 0.0 and loaded.keep_best is False and loaded.optimizer == "adam"
    assert loaded.loop == "branching" and loaded.unroll == 0  # the loop those runs compiled: resumes bit for bit
    assert Config.from_dict({**old, "eval_epsilon": 0.05}).eval_epsilon == 0.05
    with pytest.raises(ConfigError, match="missing from the saved config"):
        Config.from_dict({k: v for k, v in old.items() if k != "lr"})
