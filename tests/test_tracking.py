"""Logging sinks: TensorBoard event files read back with TensorBoard's own reader, W&B offline
runs written without a network, one scalar namespace, and a missing package refused up front."""

from __future__ import annotations

import importlib.util
import json

import pytest

from purejaxdqn import cli
from purejaxdqn.host import run_directory, runner, tracking

from tiny import TINY


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One tiny two-seed run logged to TensorBoard and to W&B (offline, W&B files in a tmp dir),
    without the end-of-training video (tests/test_video.py has it)."""
    root = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_DIR", str(root / "wandb-dir"))
        mp.setenv("WANDB_SILENT", "true")
        (root / "wandb-dir").mkdir()
        args = [*TINY, "--num-seeds", "2", "--log", "tensorboard,wandb", "--wandb-mode", "offline",
                "--wandb-project", "test", "--no-log-video", "--output-dir", str(root / "run")]  # fmt: skip
        assert cli.main(args) == 0
    summary = json.loads((root / "run" / run_directory.SUMMARY_FILE).read_text())
    assert summary["logging_s"] > 0 and summary["run_s"] > 0
    return root


def read_scalars(path):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(path), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return acc, {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_event_files_read_back(tracked):
    """One subdirectory per run; the CleanRL-style tags hold the JSONL values at their env steps."""
    run_dir = tracked / "run"
    board = run_dir / run_directory.TENSORBOARD_DIR
    assert sorted(p.name for p in board.iterdir()) == ["run-0_seed-0", "run-1_seed-1"]
    evals = run_directory.read_jsonl(run_dir / run_directory.EVALS_FILE)
    metrics = run_directory.read_jsonl(run_dir / run_directory.METRICS_FILE)
    for run in (0, 1):
        acc, scalars = read_scalars(board / f"run-{run}_seed-{run}")
        for tag in ("charts/episodic_return", "charts/eval_return", "charts/epsilon", "charts/SPS",
                    "losses/td_loss", "losses/q_values", "charts/updates"):  # fmt: skip
            assert tag in scalars, tag
        expected = [(e["env_steps"], e["eval_return_mean"]) for e in evals if e["run"] == run]
        assert [s for s, _ in scalars["charts/eval_return"]] == [s for s, _ in expected] == [1000, 2000, 3000]
        assert [v for _, v in scalars["charts/eval_return"]] == pytest.approx([v for _, v in expected])
        eps = [(m["env_steps"], m["epsilon"]) for m in metrics if m["run"] == run]
        assert scalars["charts/epsilon"] == [(s, pytest.approx(v)) for s, v in eps]
        assert "hyperparameters" in "".join(acc.Tags()["tensors"])  # logged once, as text
        assert tracking.VIDEO_TAG not in acc.Tags()["images"]  # --no-log-video


def test_tensorboard_hparams_hold_each_runs_seed_and_final_metrics(tracked):
    """TensorBoard's HParams dashboard: per run, a session with its seed and env as hparams and
    the final eval return / mean of the last evals (summary.json's figures) as metrics."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir = tracked / "run"
    summary = json.loads((run_dir / run_directory.SUMMARY_FILE).read_text())
    for run in (0, 1):
        acc, scalars = read_scalars(run_dir / run_directory.TENSORBOARD_DIR / f"run-{run}_seed-{run}")
        content = acc.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
        assert start.hparams["seed"].number_value == run and start.hparams["env_id"].string_value == "CartPole-v1"
        assert scalars["result/final_eval_return"] == [(3000, pytest.approx(summary["final_eval_return_mean"][run]))]
        assert scalars["result/last_evals_return"] == [(3000, pytest.approx(summary["last_3_evals_return_mean"][run]))]


def test_wandb_offline_writes_one_run_per_run(tracked):
    """W&B offline: no network, one run directory per run under WANDB_DIR, with the log file."""
    found = sorted((tracked / "wandb-dir" / "wandb").glob("offline-run-*"))
    assert len(found) == 2
    for run_dir in found:
        assert list(run_dir.glob("*.wandb")), run_dir
        assert not list(run_dir.glob("files/media/videos/**/*.gif"))  # --no-log-video


def test_scalar_namespace_is_shared():
    """metrics/evals rows -> (run, env step, {CleanRL-style name: value}), None left out."""
    metric = {"run": 1, "env_steps": 40, "train_return": 9.0, "loss": None, "epsilon": 0.5, "env_steps_per_s": 10.0,
              "q_mean": 1.5, "updates": 3, "train_length": 9.0, "eval_return_mean": 7.0}  # fmt: skip
    evaluation = {"run": 1, "env_steps": 30, "eval_return_mean": 7.0, "eval_return_min": 2.0}
    rows = tracking.scalar_rows([metric], [evaluation])
    assert rows[0] == (1, 40, {"charts/episodic_return": 9.0, "charts/episodic_length": 9.0, "charts/epsilon": 0.5,
                               "charts/SPS": 10.0, "charts/updates": 3, "losses/q_values": 1.5})  # fmt: skip
    assert rows[1] == (1, 30, {"charts/eval_return": 7.0, "charts/eval_return_min": 2.0})
    assert tracking.run_label({"run": 2, "seed": 5, "setting": 1, "lr": 0.001}) == "run-2_seed-5_lr-0.001"


def test_end_of_run_lines_say_where_the_data_went(monkeypatch):
    monkeypatch.delenv("WANDB_DIR", raising=False)
    spec = tracking.TrackingSpec(("tensorboard", "wandb"), wandb_mode="offline")
    tb, wb = tracking.where(spec, "runs/x", 2)
    assert "tensorboard --logdir runs/x/tensorboard" in tb
    assert "project purejaxdqn, group x (offline)" in wb and "wandb sync runs/x/wandb/offline-run-*" in wb
    assert tracking.where(tracking.TrackingSpec(), "runs/x", 1) == []


@pytest.mark.parametrize("args, needle", [
    (["--log", "wandb"], '--log wandb: the wandb package is not installed; pip install "purejaxdqn[wandb]"'),
    (["--log", "jsonl,tensorboard"], 'the tensorboardX package is not installed; pip install "purejaxdqn[tensorboard]"'),
])  # fmt: skip
def test_missing_sink_package_is_one_line_before_anything(tmp_path, capsys, monkeypatch, args, needle):
    """A sink whose package is missing (simulated): one line, exit 2, nothing compiled or
    written. (Unknown sinks and W&B options without W&B: tests/test_bad_inputs.py.)"""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("wandb", "tensorboardX") else real(name, *a))
    monkeypatch.setattr(runner, "compile_program", lambda *a, **k: pytest.fail("compiled"))
    out = tmp_path / "run"
    assert cli.main([*args, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert not out.exists()


def test_overwrite_clears_old_tensorboard_series(tmp_path):
    """--overwrite must not leave the old run's event files to mix with the new run's series."""
    (tmp_path / run_directory.TENSORBOARD_DIR / "run-0_seed-0").mkdir(parents=True)
    (tmp_path / run_directory.TENSORBOARD_DIR / "run-0_seed-0" / "events.out.tfevents.1").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("mine")
    run_directory.clear_previous_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
