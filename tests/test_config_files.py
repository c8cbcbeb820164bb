"""--config FILE: a config file written by hand (TOML or JSON) trains, is the base the command
line overrides, names presets to start from, holds seeds and a sweep, and is told apart from a
saved run's config.json. Every bad file is a case of tests/test_bad_inputs.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from purejaxdqn import Config, ConfigError, cli, from_preset
from purejaxdqn.cli import parsers
from purejaxdqn.host import run_directory

from test_readme import README, examples, run_block, write_file_example

# tests/tiny.py's TINY options, as a file holds them.
TINY_FILE = {"total_steps": 3000, "num_envs": 4, "learning_starts": 500, "batch_size": 32, "buffer_size": 1000,
             "eval_every": 1000, "num_chunks": 3, "widths": [16], "num_eval_envs": 2}  # fmt: skip


def write(path: Path, options: dict) -> Path:
    """`options` as a TOML file (a .toml path: `key = value` lines and [tables]) or a JSON one."""
    if path.suffix != ".toml":
        path.write_text(json.dumps(options))
        return path
    scalars = [f"{k} = {json.dumps(v)}" for k, v in options.items() if not isinstance(v, dict)]
    tables = [f"\n[{k}]\n" + "\n".join(f"{n} = {json.dumps(x)}" for n, x in v.items()) for k, v in options.items() if isinstance(v, dict)]
    path.write_text("\n".join(scalars) + "\n" + "\n".join(tables) + "\n")
    return path


@pytest.mark.parametrize("name", ["run.toml", "run.json"])
def test_a_hand_written_file_trains_and_config_json_holds_its_values(name, tmp_path):
    """Both formats train; config.json is a complete saved config of the resolved values (so
    --config RUN_DIR and --resume read it as any run's) and records the file."""
    options = {**TINY_FILE, "lr": 1e-3, "gamma": 0.98, "total_steps": 3e3, "checkpoint_every": 0, "keep_checkpoints": 2}
    if name.endswith(".toml"):
        options.update(num_seeds=2, sweep={"eps_end": [0.05, 0.1]})
    path = write(tmp_path / name, options)
    out = tmp_path / "out"
    assert cli.main(["--config", str(path), "--no-progress", "--output-dir", str(out)]) == 0
    saved = json.loads((out / run_directory.CONFIG_FILE).read_text())
    expected = from_preset(None, **{**TINY_FILE, "widths": (16,), "lr": 1e-3, "gamma": 0.98}).to_dict()
    assert saved["config"] == expected and saved["preset"] == "cartpole" and saved["config_file"] == str(path)
    assert saved["checkpoint"] == {"every": 0, "min_interval_s": 60.0, "keep": 2} and "rerun_of" not in saved
    if name.endswith(".toml"):
        assert saved["num_seeds"] == 2 and saved["sweep"] == {"eps_end": [0.05, 0.1]} and len(saved["runs"]) == 4
    rerun = cli.make_plan(["--config", str(out)])
    assert rerun.config.to_dict() == expected and rerun.rerun_of == str(out) and rerun.config_file is None
    assert cli.make_plan(["--resume", str(out)]).config.to_dict() == expected


def test_the_command_line_overrides_the_file(tmp_path):
    path = write(tmp_path / "c.toml", {"env_id": "Acrobot-v1", "lr": 1e-3, "gamma": 0.98, "num_seeds": 3,
                                       "sweep": {"eps_end": [0.05, 0.1], "tau": [0.5, 1.0]}})  # fmt: skip
    plan = cli.make_plan(["--config", str(path)])
    assert (plan.config.lr, plan.config.gamma, plan.num_seeds, len(plan.runs)) == (1e-3, 0.98, 3, 12)
    assert plan.preset == "acrobot" and plan.config.widths == (256, 256)  # the env's default preset below the file
    plan = cli.make_plan(["--config", str(path), "--lr", "5e-4", "--num-seeds", "1", "--tau", "0.9"])
    assert (plan.config.lr, plan.config.gamma, plan.num_seeds) == (5e-4, 0.98, 1)
    assert plan.sweep == {"eps_end": [0.05, 0.1]} and plan.config.tau == 0.9  # a single value drops that sweep
    plan = cli.make_plan(["--config", str(path), "--sweep", "lr=1e-3,2e-3"])  # --sweep replaces the file's
    assert plan.sweep == {"lr": [1e-3, 2e-3]} and plan.num_seeds == 3
    plan = cli.make_plan(["--config", str(path), "--env-id", "CartPole-v1"])  # the default preset follows the env
    assert plan.preset == "cartpole" and plan.config.widths == (120, 84) and plan.config.lr == 1e-3


def test_the_preset_key_names_presets_to_start_from(tmp_path):
    path = write(tmp_path / "c.json", {"env_id": "Breakout-MinAtar", "preset": "rainbow", "lr": 3e-4})
    plan = cli.make_plan(["--config", str(path)])
    assert plan.preset == "breakout,rainbow" and plan.config.torso == "conv" and plan.config.distributional
    assert plan.config.lr == 3e-4  # the file's value over the preset's 1e-4
    path = write(tmp_path / "c.toml", {"preset": ["breakout", "original"]})
    plan = cli.make_plan(["--config", str(path)])
    assert plan.preset == "breakout,original" and plan.config.env_id == "Breakout-MinAtar" and plan.config.sticky_actions == 0.1
    path = write(tmp_path / "none.toml", {"preset": "none", "gamma": 0.9})
    assert cli.make_plan(["--config", str(path)]).config == Config(gamma=0.9)


def test_values_are_read_as_the_command_line_reads_them(tmp_path):
    """The option's own type: integers as 5e3 or "5_000", widths as a list or "16,16", numbers as text."""
    path = write(tmp_path / "c.toml", {**TINY_FILE, "total_steps": 5e3, "widths": "16,16", "lr": "1e-3", "dueling": True})
    config = cli.make_plan(["--config", str(path)]).config
    assert (config.total_steps, config.widths, config.lr, config.dueling) == (5000, (16, 16), 1e-3, True)
    assert isinstance(config.total_steps, int)


def test_an_error_names_the_file_only_for_the_files_values(tmp_path):
    path = write(tmp_path / "c.toml", {"lr": -1.0})
    with pytest.raises(ConfigError) as exc:
        cli.make_plan(["--config", str(path)])
    assert exc.value.option == f"{path}: lr" and "positive" in exc.value.message
    assert cli.make_plan(["--config", str(path), "--lr", "1e-3"]).config.lr == 1e-3  # the file's value overridden
    path = write(tmp_path / "d.toml", {"gamma": 0.99})
    with pytest.raises(ConfigError) as exc:
        cli.make_plan(["--config", str(path), "--gamma", "2"])  # the bad value is the command line's
    assert exc.value.option == "--gamma"


def test_a_saved_config_json_is_told_apart_wherever_it_is(tmp_path):
    """A run's config.json copied anywhere (any name) is still a saved run: its keys say so."""
    out = tmp_path / "out"
    assert cli.main(["--config", str(write(tmp_path / "c.toml", TINY_FILE)), "--no-progress", "--output-dir", str(out)]) == 0
    saved = json.loads((out / run_directory.CONFIG_FILE).read_text())
    assert run_directory.is_record(saved) and not run_directory.is_record({**TINY_FILE, "preset": "rainbow"})
    copy = shutil.copy(out / run_directory.CONFIG_FILE, tmp_path / "settings.json")
    plan = cli.make_plan(["--config", str(copy), "--seed", "4"])
    assert plan.rerun_of == str(copy) and plan.config_file is None and plan.config.seed == 4
    assert plan.config.replace(seed=0).to_dict() == saved["config"]


def test_help_shows_the_defaults_the_file_gives(tmp_path, capsys):
    path = write(tmp_path / "c.toml", {"env_id": "Acrobot-v1", "lr": 0.00123})
    with pytest.raises(SystemExit):
        cli.make_plan(["--config", str(path), "--help"])
    text = " ".join(capsys.readouterr().out.split())
    shown = f"Defaults shown: the config file {path} on the 'acrobot' preset"  # a long path is wrapped anywhere
    assert "".join(shown.split()) in "".join(text.split())
    assert "(default: 0.00123)" in text and "(default: 256,256)" in text  # the file's, then its preset's


def test_the_file_options_are_documented_in_one_list():
    """--help and the README name every run option a file may hold (parsers.FILE_OPTIONS)."""
    section = README.read_text().split("**Config files.**", 1)[1].split("\n**", 1)[0]
    help_text = " ".join(cli.train_parser().format_help().split())
    for name in parsers.FILE_OPTIONS:
        assert f"`{name}`" in section and name in help_text, name


def test_the_readme_config_file_example_runs(tmp_path, monkeypatch):
    """README's "Config files" example, as tests/test_readme.py runs it (the whole README: slow)."""
    monkeypatch.chdir(tmp_path)
    section = README.read_text().split("**Config files.**", 1)[1].split("\n**", 1)[0]
    done = []
    for language, code in examples(section):
        done += [write_file_example(code, tmp_path)] if language == "toml" else run_block(code, tmp_path)
    assert done == ["file", "train"]
    saved = json.loads((tmp_path / "runs" / "my-acrobot" / run_directory.CONFIG_FILE).read_text())
    assert saved["preset"] == "acrobot" and saved["config"]["lr"] == 1e-3 and saved["sweep"] == {"gamma": [0.99, 0.995]}
    assert saved["num_seeds"] == 2 and saved["config_file"] == "my-acrobot.toml"
