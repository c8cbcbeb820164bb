"""Every bad input, one table: train options, evaluate, resume and the Python API.

Each case must end in exit status 2 (the API: the documented exception), exactly one stderr
line naming the problem, no traceback, nothing compiled (unless the case needs a checkpoint
read, which comes after the compile) and no file changed anywhere under the test's directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from purejaxdqn import Config, ConfigError, cli, evaluate, from_preset, load_policy, make_train, make_trainer
from purejaxdqn.host import run_directory
from purejaxdqn import RunDirError, validate
from purejaxdqn.host import actor_learner, runner
from purejaxdqn.host.run_options import RunOptions

from tiny import HOST_TINY, TINY


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("corpus") / "run"
    assert cli.main([*TINY, "--checkpoint-min-interval", "0", "--output-dir", str(run_dir)]) == 0
    return run_dir


# ---------------------------------------------------------------- ways to damage a run directory
def edit_config(change):
    def setup(run: Path):
        path = run / run_directory.CONFIG_FILE
        saved = json.loads(path.read_text())
        change(saved)
        path.write_text(json.dumps(saved))

    return setup


def set_key(*keys_and_value):
    *keys, value = keys_and_value

    def change(saved):
        target = saved
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit_config(change)


def drop_key(*keys):
    def change(saved):
        target = saved
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return edit_config(change)


def write(name: str, data: bytes):
    def setup(run: Path):
        (run / name).write_bytes(data)

    return setup


def both(*setups):
    def setup(run: Path):
        for one in setups:
            one(run)

    return setup


def drop_trained_settings(run: Path):
    """Checkpoints as saved before they held the settings they were trained with."""
    for step in ("1", "2", "3"):
        shutil.rmtree(run / run_directory.CHECKPOINT_DIR / step / "settings")


def edit_seed(seed: int):
    """A consistent edit of the seed: config.json's seed and every run's (then only the
    checkpoint can tell)."""

    def change(saved):
        saved["config"]["seed"] = seed
        for k, run in enumerate(saved["runs"]):
            run["seed"] = seed + k

    return edit_config(change)


def deep_nesting(run: Path):
    (run / run_directory.CONFIG_FILE).write_text("[" * 100_000)


def lock_unwritable(tmp: Path, monkeypatch):
    """The run directory's lock file cannot be opened for writing (a read-only directory, as a
    user other than root meets it)."""

    def refuse(path, mode="r", *args, **kwargs):
        if Path(path).name == run_directory.LOCK_FILE:
            raise PermissionError(13, "Permission denied")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(run_directory, "open", refuse, raising=False)


def gif_directory(tmp: Path, monkeypatch):
    (tmp / "x.gif").mkdir()


def without_ffmpeg(tmp: Path, monkeypatch):
    """imageio-ffmpeg not installed (an import of it fails)."""
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)


def truncate_checkpoint(run: Path):
    """Cut every array file of the newest checkpoint in half, as a full disk or a bad copy might."""
    for path in (run / run_directory.CHECKPOINT_DIR / "3").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def garbage_checkpoint_metadata(run: Path):
    for step in ("1", "2", "3"):
        (run / run_directory.CHECKPOINT_DIR / step / "_CHECKPOINT_METADATA").write_text("{garbage")


def hand_file(name: str, text: str):
    """A config file written by hand, in the test's directory ({tmp}/NAME)."""

    def setup(tmp: Path, monkeypatch):
        (tmp / name).write_text(text)

    return setup


def toml(text: str) -> dict:
    """The options of a case whose --config {tmp}/c.toml holds `text`."""
    return {"setup_tmp": hand_file("c.toml", text)}


def read_only(name: str):
    """A directory without write permission. Root ignores permission bits, so for root the test
    also makes os.access say what it says for everyone else."""

    def setup(tmp: Path, monkeypatch):
        target = tmp / name
        target.mkdir()
        target.chmod(0o555)
        if os.geteuid() == 0:
            real = os.access
            monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == target and mode & os.W_OK else real(p, mode, **kw))

    return setup


# ---------------------------------------------------------------- the corpus
# (id, kind, argv or call, text the line must contain, run-dir damage, options)
# kind: train = cli.main(argv); resume = cli.main(["--resume", RUN, *argv]); evaluate =
# evaluate.main(argv); api = call(paths) must raise the exception in options["raises"].
# Placeholders: {run} a copy of a finished run, {file} a plain file, {tmp} the test directory.
CASES = [
    # train: environment and run length
    ("env-unknown", "train", ["--env-id", "NoSuchEnv-v0"], "--env-id", None, {}),
    ("env-continuous", "train", ["--env-id", "Pendulum-v1"], "--env-id", None, {}),
    ("total-steps-0", "train", ["--total-steps", "0"], "--total-steps", None, {}),
    ("total-steps-negative", "train", ["--total-steps", "-100"], "--total-steps", None, {}),
    ("total-steps-int32", "train", ["--total-steps", "3e9"], "--total-steps", None, {}),
    ("total-steps-fraction", "train", ["--total-steps", "1.5"], "--total-steps", None, {}),
    ("num-envs-huge", "train", ["--num-envs", "1e7"], "--buffer-size", None, {}),
    ("num-chunks-too-many", "train", ["--num-chunks", "1e6"], "--num-chunks", None, {}),
    ("eval-every-below-envs", "train", ["--eval-every", "2", "--num-envs", "4"], "--eval-every", None, {}),
    ("eval-every-int32", "train", ["--eval-every", "3e9"], "--eval-every", None, {}),
    ("num-eval-envs-memory", "train", [*TINY, "--num-eval-envs", "1e9"], "memory", None, {}),
    ("seed-negative", "train", ["--seed", "-1"], "--seed", None, {}),
    ("seed-too-big", "train", ["--seed", "5e9"], "--seed", None, {}),
    ("seed-plus-seeds", "train", ["--seed", "4294967295", "--num-seeds", "2"], "--seed", None, {}),
    ("num-seeds-0", "train", ["--num-seeds", "0"], "--num-seeds", None, {}),
    # train: the compiled program's layout (#19), schedules as fractions and finer logging (#24)
    ("loop-unknown", "train", ["--loop", "fast"], "--loop", None, {}),
    ("loop-static-impossible", "train", [*TINY, "--loop", "static", "--num-chunks", "7"], "--loop", None, {}),
    ("unroll-negative", "train", ["--unroll", "-1"], "--unroll", None, {}),
    ("unroll-fraction", "train", ["--unroll", "1.5"], "--unroll", None, {}),
    ("exploration-fraction-0", "train", ["--exploration-fraction", "0"], "--exploration-fraction", None, {}),
    ("exploration-fraction-and-steps", "train", ["--exploration-fraction", "0.5", "--eps-decay-steps", "100"],
     "--exploration-fraction", None, {}),
    ("learning-starts-fraction-above-1", "train", ["--learning-starts-fraction", "1.5"], "--learning-starts-fraction", None, {}),
    ("learning-starts-fraction-and-sweep", "train", ["--learning-starts-fraction", "0.1", "--sweep", "learning_starts=100,200"],
     "--learning-starts-fraction", None, {}),
    ("log-every-not-a-multiple", "train", [*TINY, "--log-every", "6"], "--log-every", None, {}),
    ("log-every-too-fine", "train", [*TINY, "--total-steps", "30000", "--log-every", "4"], "--log-every", None, {}),
    # train: network, replay, learner, exploration
    ("widths-empty", "train", ["--widths", ""], "--widths", None, {}),
    ("widths-zero", "train", ["--widths", "64,0"], "--widths", None, {}),
    ("widths-text", "train", ["--widths", "abc"], "--widths", None, {}),
    ("widths-negative", "train", ["--widths", "-4"], "--widths", None, {}),
    ("torso-conv-cartpole", "train", ["--torso", "conv"], "--torso", None, {}),
    ("c51-support", "train", ["--distributional", "--v-min", "1", "--v-max", "0"], "--v-min", None, {}),
    ("batch-0", "train", ["--batch-size", "0"], "--batch-size", None, {}),
    ("batch-over-buffer", "train", ["--batch-size", "512", "--buffer-size", "256", "--learning-starts", "1000"], "--batch-size", None, {}),
    ("learning-starts-below-batch", "train", ["--learning-starts", "10", "--batch-size", "64"], "--learning-starts", None, {}),
    ("learning-starts-after-end", "train", ["--learning-starts", "1e9"], "--learning-starts", None, {}),
    ("lr-0", "train", ["--lr", "0"], "--lr", None, {}),
    ("lr-negative", "train", ["--lr", "-1e-3"], "--lr", None, {}),
    ("lr-text", "train", ["--lr", "abc"], "--lr", None, {}),
    ("lr-nan", "train", ["--lr", "nan"], "--lr", None, {}),
    ("gamma-0", "train", ["--gamma", "0"], "--gamma", None, {}),
    ("gamma-above-1", "train", ["--gamma", "1.5"], "--gamma", None, {}),
    ("tau-0", "train", ["--tau", "0"], "--tau", None, {}),
    ("loss-unknown", "train", ["--loss", "l1"], "--loss", None, {}),
    ("huber-delta-with-mse", "train", ["--loss", "mse", "--huber-delta", "2"], "--huber-delta", None, {}),
    ("target-update-int32", "train", ["--target-update-every", "3e9"], "--target-update-every", None, {}),
    ("eps-decay-int32", "train", ["--eps-decay-steps", "3e9"], "--eps-decay-steps", None, {}),
    ("eps-start-above-1", "train", ["--eps-start", "2"], "--eps-start", None, {}),
    ("sticky-1", "train", ["--sticky-actions", "1"], "--sticky-actions", None, {}),
    ("time-limit-negative", "train", ["--time-limit", "-1"], "--time-limit", None, {}),
    ("reset-ratio-0", "train", ["--env-id", "Snake-v1", "--reset-ratio", "0"], "--reset-ratio", None, {}),
    ("reset-ratio-on-gymnax", "train", ["--reset-ratio", "2"], "--reset-ratio", None, {}),
    ("reset-ratio-above-envs", "train", ["--env-id", "Snake-v1", "--num-envs", "4", "--reset-ratio", "8"], "--reset-ratio", None, {}),
    ("conv-on-vectors", "train", ["--env-id", "Snake-v1", "--torso", "conv"], "--torso", None, {}),
    ("full-action-set-on-minigrid", "train", ["--env-id", "MiniGrid-Empty-8x8", "--full-action-set"], "--full-action-set", None, {}),
    ("full-action-set-cartpole", "train", ["--full-action-set"], "--full-action-set", None, {}),
    ("priority-beta", "train", ["--priority-beta", "2"], "--priority-beta", None, {}),
    # train: presets, sweeps, checkpoints, devices
    ("preset-unknown", "train", ["--preset", "nosuch"], "--preset", None, {}),
    ("preset-empty", "train", ["--preset", ""], "--preset", None, {}),
    ("preset-env-clash", "train", ["--preset", "cartpole", "--env-id", "Acrobot-v1"], "--preset", None, {}),
    ("sweep-dashes", "train", ["--sweep=--lr=1e-3"], "--sweep", None, {}),
    ("sweep-shape", "train", ["--sweep", "widths=16,32"], "--sweep widths", None, {}),
    ("sweep-repeated", "train", ["--sweep", "lr=1e-3,1e-3"], "--sweep lr", None, {}),
    ("sweep-bad-value", "train", ["--sweep", "lr=1e-3,-1"], "--sweep lr=-1", None, {}),
    ("checkpoint-every-negative", "train", ["--checkpoint-every", "-1"], "--checkpoint-every", None, {}),
    ("checkpoint-interval-negative", "train", ["--checkpoint-min-interval", "-1"], "--checkpoint-min-interval", None, {}),
    ("keep-0", "train", ["--keep-checkpoints", "0"], "--keep-checkpoints", None, {}),
    ("mesh-runs-0", "train", ["--mesh-runs", "0"], "--mesh-runs", None, {}),
    ("mesh-too-big", "train", ["--mesh-data", "2", "--mesh-runs", "2"], "--mesh-runs/--mesh-data", None, {}),
    ("mesh-model-0", "train", ["--mesh-model", "0"], "--mesh-model", None, {}),
    ("mesh-model-widths", "train", [*TINY, "--mesh-model", "3"], "--mesh-model: every hidden width must divide by 3", None, {}),
    ("mesh-model-too-big", "train", [*TINY, "--mesh-model", "2"], "--mesh-runs/--mesh-data/--mesh-model", None, {}),
    ("distributed-timeout-negative", "train", ["--distributed-timeout", "-5"], "--distributed-timeout", None, {}),
    ("coordinator-alone", "train", ["--coordinator-address", "127.0.0.1:1"], "--coordinator-address", None, {}),
    ("peer-without-coordinator", "train", ["--coordinator-address", "127.0.0.1:9", "--num-processes", "2", "--process-id", "1",
                                           "--distributed-timeout", "1"], "no coordinator answered", None, {}),
    ("unknown-option", "train", ["--no-such-option", "1"], "--no-such-option", None, {}),
    # train: output directory (nothing may be created, removed or written)
    ("overwrite-alone", "train", ["--overwrite"], "--overwrite", None, {}),
    ("output-dir-not-empty", "train", ["--output-dir", "{run}"], "--overwrite", None, {}),
    ("output-dir-is-file", "train", ["--output-dir", "{file}", "--overwrite"], "not a directory", None, {}),
    ("output-dir-under-file", "train", [*TINY, "--output-dir", "{file}/sub"], "--output-dir", None, {}),
    ("output-dir-proc", "train", [*TINY, "--output-dir", "/proc/x/run"], "--output-dir", None, {}),
    ("output-dir-read-only", "train", [*TINY, "--output-dir", "{tmp}/ro/run"], "--output-dir", None, {"setup_tmp": read_only("ro")}),
    ("overwrite-then-bad-seed", "train", ["--seed", "-1", "--overwrite", "--output-dir", "{run}"], "--seed", None, {}),
    ("overwrite-then-int32", "train", ["--total-steps", "3e9", "--overwrite", "--output-dir", "{run}"], "--total-steps", None, {}),
    ("overwrite-then-memory", "train", [*TINY, "--num-eval-envs", "1e9", "--overwrite", "--output-dir", "{run}"], "memory", None, {}),
    # rerun from a saved config, tracking
    ("config-missing", "train", ["--config", "{tmp}/missing"], "--config: ", None, {}),
    ("config-plain-file", "train", ["--config", "{file}"], "--config: ", None, {}),
    ("config-damaged", "train", ["--config", "{run}"], "--config: ", set_key("config", "lr", -1), {}),
    ("config-with-preset", "train", ["--config", "{run}", "--preset", "cartpole"], "--preset: contradicts --config", None, {}),
    ("config-with-resume", "train", ["--config", "{run}", "--resume", "{run}"], "--resume: contradicts --config", None, {}),
    ("config-bad-override", "train", ["--config", "{run}", "--lr", "-1"], "--lr", None, {}),
    ("log-unknown", "train", ["--log", "neptune"], "--log: unknown sink 'neptune'", None, {}),
    ("wandb-option-without-wandb", "train", ["--wandb-mode", "offline"], "--wandb-mode: only applies", None, {}),
    ("log-video-without-tracker", "train", ["--log-video"], "--log-video: only applies together with --log", None, {}),
    ("wandb-mode-unknown", "train", ["--log", "wandb", "--wandb-mode", "sometimes"], "--wandb-mode", None, {}),
    # resume
    ("resume-missing", "train", ["--resume", "{tmp}/missing"], "not a directory", None, {}),
    ("resume-not-a-run", "train", ["--resume", "{tmp}"], "not a purejaxdqn run directory", None, {}),
    ("resume-changed-lr", "resume", ["--lr", "0.5"], "lr (saved", None, {}),
    ("resume-changed-widths", "resume", ["--widths", "64,64"], "widths (saved", None, {}),
    ("resume-changed-env", "resume", ["--buffer-size", "1600", "--env-id", "Acrobot-v1"], "env_id (saved", None, {}),
    ("resume-changed-seeds", "resume", ["--num-seeds", "2"], "num_seeds (saved", None, {}),
    ("resume-output-dir", "resume", ["--output-dir", "elsewhere"], "--output-dir", None, {}),
    ("resume-preset", "resume", ["--preset", "cartpole"], "--preset", None, {}),
    ("resume-other-data-axis", "resume", ["--mesh-data", "2"], "--mesh-data: the run was made with --mesh-data 1", None, {}),
    ("resume-runs-axis-too-big", "resume", ["--mesh-runs", "2"], "needs 2 devices", None, {}),
    ("resume-config-not-json", "resume", [], "damaged", write(run_directory.CONFIG_FILE, b"{not json"), {}),
    ("resume-config-unreadable", "resume", [], "damaged", write(run_directory.CONFIG_FILE, b"\xff\xfe\x00garbage"), {}),
    ("resume-config-a-list", "resume", [], "not a JSON object", write(run_directory.CONFIG_FILE, b"[1, 2]"), {}),
    ("resume-saved-env-unknown", "resume", [], "--env-id", set_key("config", "env_id", "NoSuchEnv-v0"), {}),
    ("resume-saved-widths-text", "resume", [], "--widths", set_key("config", "widths", "abc"), {}),
    ("resume-saved-widths-negative", "resume", [], "--widths", set_key("config", "widths", [-4]), {}),
    ("resume-saved-lr-negative", "resume", [], "--lr", set_key("config", "lr", -1), {}),
    ("resume-saved-lr-text", "resume", [], "--lr", set_key("config", "lr", "fast"), {}),
    ("resume-saved-seed-negative", "resume", [], "--seed", set_key("config", "seed", -1), {}),
    ("resume-saved-unknown-key", "resume", [], "unknown setting", set_key("config", "colour", "blue"), {}),
    ("resume-missing-lr", "resume", [], "lr: missing", drop_key("config", "lr"), {}),
    ("resume-missing-mesh", "resume", [], "mesh: missing", drop_key("mesh"), {}),
    ("resume-missing-runs", "resume", [], "runs: missing", drop_key("runs"), {}),
    ("resume-bad-mesh", "resume", [], "mesh", set_key("mesh", "runs", 0), {}),
    ("resume-multi-host-on-one", "resume", [], "--num-processes: ", set_key("processes", 2), {}),
    ("resume-on-more-processes", "resume", ["--coordinator-address", "127.0.0.1:9", "--num-processes", "2", "--process-id", "1"],
     "resumed by 2", None, {}),
    ("resume-metrics-garbage", "resume", [], "metrics.jsonl line 1", write(run_directory.METRICS_FILE, b"garbage\n{}\n"), {}),
    ("resume-metrics-no-chunk", "resume", [], "metrics.jsonl line 2", write(run_directory.METRICS_FILE, b'{"chunk": 0}\n[1]\n{"chunk": 1}\n'), {}),
    ("resume-evals-garbage", "resume", [], "evals.jsonl line 1", write(run_directory.EVALS_FILE, b'{"env_steps": "x"}\n{}\n'), {}),
    ("resume-truncated-checkpoint", "resume", [], "cannot be restored", truncate_checkpoint, {"compiles": True}),
    ("resume-shape-mismatch", "resume", [], "cannot be restored", both(set_key("config", "widths", [32]), drop_trained_settings),
     {"compiles": True}),
    # round two (issue #23): empty lists, wrong JSON types, deep nesting, unbounded counts,
    # edited saved configs, unwritable paths, settings a run would ignore
    ("sweep-empty-over-finished-run", "train", ["--sweep", "lr=,,", "--output-dir", "{run}", "--overwrite"], "--sweep lr: an empty value", None, {}),
    ("sweep-blank-values", "train", ["--sweep", "lr= , ", "--output-dir", "{tmp}/new"], "--sweep lr: an empty value", None, {}),
    ("sweep-trailing-comma", "train", ["--sweep", "lr=1e-3,"], "--sweep lr: an empty value", None, {}),
    ("sweep-no-values", "train", ["--sweep", "lr="], "--sweep lr: an empty value", None, {}),
    ("sweep-unknown-setting", "train", ["--sweep", "colour=1,2"], "--sweep: unknown setting 'colour'", None, {}),
    ("sweep-integer-setting-fraction", "train", ["--sweep", "learning_starts=600,700.5"], "--sweep learning_starts", None, {}),
    ("sweep-unused-huber", "train", ["--loss", "mse", "--sweep", "huber_delta=1,2"], "--sweep huber_delta: only applies with --loss huber", None, {}),
    ("sweep-unused-priority", "train", ["--sweep", "priority_alpha=0.4,0.6"], "--sweep priority_alpha: only applies with --prioritized", None, {}),
    ("priority-alpha-uniform-replay", "train", ["--priority-alpha", "0.6"], "--priority-alpha: only applies with --prioritized", None, {}),
    ("num-seeds-unbounded", "train", ["--num-seeds", "1e9"], "--num-seeds", None, {}),
    ("runs-unbounded", "train", ["--num-seeds", "40000", "--sweep", "lr=1e-3,2e-3"], "--num-seeds/--sweep", None, {}),
    ("cpu-devices-unbounded", "train", ["--cpu-devices", "1000000"], "--cpu-devices: must be an integer from 1 to", None, {}),
    ("num-processes-unbounded", "train", ["--num-processes", "1e9"], "--num-processes", None, {}),
    ("distributed-timeout-unbounded", "train", ["--distributed-timeout", "1e12"], "--distributed-timeout", None, {}),
    ("compilation-cache-a-file", "train", ["--compilation-cache", "{file}"], "--compilation-cache: ", None, {}),
    ("compilation-cache-under-a-file", "train", ["--compilation-cache", "{file}/cache"], "--compilation-cache: ", None, {}),
    ("env-id-empty", "train", ["--env-id", ""], "--env-id: unknown or unsupported environment ''", None, {}),
    ("preset-two-envs", "train", ["--preset", "cartpole,acrobot"], "--preset: 'cartpole' and 'acrobot'", None, {}),
    ("digits-of-another-script", "train", [*TINY, "--total-steps", "\u0664\u0660\u0660\u0660"], "--total-steps: invalid integer", None, {}),
    ("number-of-another-script", "train", [*TINY, "--lr", "\u0661e-3"], "--lr: invalid number", None, {}),
    ("widths-empty-item", "train", ["--widths", "16,,16"], "--widths", None, {}),
    ("config-saved-empty-sweep", "train", ["--config", "{run}"], "--sweep lr: needs a non-empty list", set_key("sweep", {"lr": []}), {}),
    ("config-saved-sweep-a-list", "train", ["--config", "{run}"], "--sweep: must map settings", set_key("sweep", [1]), {}),
    ("config-saved-sweep-text", "train", ["--config", "{run}"], "damaged: --sweep lr: needs a non-empty list", set_key("sweep", {"lr": "abc"}), {}),
    ("config-saved-sweep-widths", "train", ["--config", "{run}"], "damaged: --sweep widths: changes array shapes", set_key("sweep", {"widths": [[16]]}), {}),
    ("config-saved-num-seeds-text", "train", ["--config", "{run}"], "damaged: --num-seeds", set_key("num_seeds", "two"), {}),
    ("config-saved-settings-edited", "train", ["--config", "{run}"], "damaged: settings: do not match", set_key("settings", [{"lr": 0.1}]), {}),
    ("config-saved-seed-alone", "train", ["--config", "{run}"], "damaged: runs: do not match", set_key("config", "seed", 5), {}),
    ("config-deep-nesting", "train", ["--config", "{run}"], "nested too deeply", deep_nesting, {}),
    ("resume-deep-nesting", "resume", [], "nested too deeply", deep_nesting, {}),
    ("resume-saved-sweep-empty", "resume", [], "--sweep lr: needs a non-empty list", set_key("sweep", {"lr": []}), {}),
    ("resume-edited-num-chunks", "resume", [], "num_chunks (trained with 3, config.json has 6)", set_key("config", "num_chunks", 6), {}),
    ("resume-edited-lr", "resume", [], "lr (trained with 0.00025", set_key("config", "lr", 1e-3), {}),
    ("resume-edited-seed", "resume", [], "seed (trained with 0, config.json has 5)", edit_seed(5), {}),
    ("resume-lock-unwritable", "resume", [], "--resume ", None, {"setup_tmp": lock_unwritable}),
    ("overwrite-unwritable-run", "train", ["--output-dir", "{run}", "--overwrite"], "--output-dir ", None, {"setup_tmp": lock_unwritable}),
    ("evaluate-edited-env", "evaluate", ["{run}"], "env_id (trained with 'CartPole-v1'", set_key("config", "env_id", "Acrobot-v1"), {}),
    ("evaluate-edited-epsilon", "evaluate", ["{run}"], "eval_epsilon (trained with", set_key("config", "eval_epsilon", 0.5), {}),
    ("evaluate-gif-a-directory", "evaluate", ["{run}", "--gif", "{tmp}/x.gif"], "--gif: ", None, {"setup_tmp": gif_directory}),
    ("evaluate-gif-read-only", "evaluate", ["{run}", "--gif", "{tmp}/ro/x.gif"], "--gif: ", None, {"setup_tmp": read_only("ro")}),
    ("evaluate-video-a-directory", "evaluate", ["{run}", "--video", "{tmp}/x.gif"], "--video: ", None, {"setup_tmp": gif_directory}),
    ("evaluate-video-read-only", "evaluate", ["{run}", "--video", "{tmp}/ro/x.mp4"], "--video: ", None, {"setup_tmp": read_only("ro")}),
    ("evaluate-mp4-without-ffmpeg", "evaluate", ["{run}", "--video", "{tmp}/x.mp4"],
     '--video: writing .mp4 needs the imageio-ffmpeg package (its ffmpeg); pip install "purejaxdqn[video]"', None, {"setup_tmp": without_ffmpeg}),
    ("evaluate-deep-nesting", "evaluate", ["{run}"], "nested too deeply", deep_nesting, {}),
    ("evaluate-saved-sweep-empty", "evaluate", ["{run}"], "--sweep lr: needs a non-empty list", set_key("sweep", {"lr": []}), {}),
    # evaluate
    ("evaluate-missing", "evaluate", ["{tmp}/missing"], "not a directory", None, {}),
    ("evaluate-no-args", "evaluate", [], "run_dir", None, {}),
    ("evaluate-episodes-0", "evaluate", ["{run}", "--episodes", "0"], "--episodes", None, {}),
    ("evaluate-episodes-text", "evaluate", ["{run}", "--episodes", "many"], "--episodes", None, {}),
    ("evaluate-episodes-memory", "evaluate", ["{run}", "--episodes", "1e9"], "--episodes", None, {}),
    ("evaluate-run-out-of-range", "evaluate", ["{run}", "--run", "5"], "run 5", None, {}),
    ("evaluate-seed-negative", "evaluate", ["{run}", "--seed", "-1"], "--seed", None, {}),
    ("evaluate-step-missing", "evaluate", ["{run}", "--step", "99"], "--step 99: ", None, {}),
    ("evaluate-step-0", "evaluate", ["{run}", "--step", "0"], "--step", None, {}),
    ("evaluate-gif-not-gif", "evaluate", ["{run}", "--gif", "{tmp}/x.png"], "--gif", None, {}),
    ("evaluate-gif-no-dir", "evaluate", ["{run}", "--gif", "{tmp}/nowhere/x.gif"], "--gif", None, {}),
    ("evaluate-gif-an-mp4", "evaluate", ["{run}", "--gif", "{tmp}/x.mp4"], "--gif: ", None, {}),
    ("evaluate-video-not-a-video", "evaluate", ["{run}", "--video", "{tmp}/x.avi"], "must be a .gif or .mp4 file", None, {}),
    ("evaluate-video-no-dir", "evaluate", ["{run}", "--video", "{tmp}/nowhere/x.mp4"], "--video: ", None, {}),
    ("evaluate-max-frames-0", "evaluate", ["{run}", "--gif", "{tmp}/x.gif", "--max-frames", "0"], "--max-frames", None, {}),
    ("evaluate-config-not-json", "evaluate", ["{run}"], "damaged", write(run_directory.CONFIG_FILE, b"{not json"), {}),
    ("evaluate-config-unreadable", "evaluate", ["{run}"], "damaged", write(run_directory.CONFIG_FILE, b"\xff\xfe\x00"), {}),
    ("evaluate-saved-env-unknown", "evaluate", ["{run}"], "--env-id", set_key("config", "env_id", "Nope-v0"), {}),
    ("evaluate-saved-widths-text", "evaluate", ["{run}"], "--widths", set_key("config", "widths", "abc"), {}),
    ("evaluate-saved-loss-unknown", "evaluate", ["{run}"], "--loss", set_key("config", "loss", "l1"), {}),
    ("evaluate-missing-key", "evaluate", ["{run}"], "gamma: missing", drop_key("config", "gamma"), {}),
    ("evaluate-no-checkpoint", "evaluate", ["{run}"], "no checkpoints", lambda run: shutil.rmtree(run / run_directory.CHECKPOINT_DIR), {}),
    ("evaluate-truncated-checkpoint", "evaluate", ["{run}"], "cannot be restored", truncate_checkpoint, {}),
    ("evaluate-shape-mismatch", "evaluate", ["{run}"], "cannot be restored", both(set_key("config", "widths", [32]), drop_trained_settings), {}),
    # config files written by hand (issue #24): one line naming the file and the key
    ("file-unknown-key", "train", ["--config", "{tmp}/c.toml"], "c.toml: lrr: unknown setting; did you mean 'lr'?", None, toml("lrr = 1e-3\n")),
    ("file-dashed-key", "train", ["--config", "{tmp}/c.toml"], "c.toml: env-id: unknown setting; did you mean 'env_id'?", None,
     toml('env-id = "Acrobot-v1"\n')),
    ("file-unknown-key-far-off", "train", ["--config", "{tmp}/c.toml"], "c.toml: colour: unknown setting; settings and run options",
     None, toml('colour = "blue"\n')),
    ("file-command-line-option", "train", ["--config", "{tmp}/c.toml"], "c.toml: output_dir: is a command-line option only", None,
     toml('output_dir = "runs/x"\n')),
    ("file-text-for-number", "train", ["--config", "{tmp}/c.toml"], "c.toml: lr: invalid number: 'fast'", None, toml('lr = "fast"\n')),
    ("file-number-for-flag", "train", ["--config", "{tmp}/c.toml"], "c.toml: dueling: must be true or false, got 1", None, toml("dueling = 1\n")),
    ("file-number-for-text", "train", ["--config", "{tmp}/c.toml"], "c.toml: loss: must be a string, got 1", None, toml("loss = 1\n")),
    ("file-list-for-value", "train", ["--config", "{tmp}/c.toml"], "c.toml: lr: must be a single number or string", None,
     toml("lr = [1e-3, 3e-4]\n")),
    ("file-fraction-for-integer", "train", ["--config", "{tmp}/c.toml"], "c.toml: total_steps: invalid integer: '1.5'", None,
     toml("total_steps = 1.5\n")),
    ("file-widths-text", "train", ["--config", "{tmp}/c.toml"], "c.toml: widths: widths must be comma-separated integers", None,
     toml('widths = ["a"]\n')),
    ("file-lr-negative", "train", ["--config", "{tmp}/c.toml"], "c.toml: lr: learning rate must be positive", None, toml("lr = -1\n")),
    ("file-loss-unknown", "train", ["--config", "{tmp}/c.toml"], "c.toml: loss: must be one of", None, toml('loss = "l1"\n')),
    ("file-env-unknown", "train", ["--config", "{tmp}/c.toml"], "c.toml: env_id: unknown or unsupported environment", None,
     toml('env_id = "NoSuchEnv-v0"\n')),
    ("file-unused-setting", "train", ["--config", "{tmp}/c.toml"], "c.toml: huber_delta: only applies with --loss huber", None,
     toml('loss = "mse"\nhuber_delta = 2.0\n')),
    ("file-seed-plus-seeds", "train", ["--config", "{tmp}/c.toml"], "c.toml: seed: seeds 4294967295..", None,
     toml("seed = 4294967295\nnum_seeds = 2\n")),
    ("file-toml-syntax", "train", ["--config", "{tmp}/c.toml"], "c.toml is damaged (not TOML: Invalid value (at line 2, column 8))",
     None, toml("lr = 1e-3\nseed = = 1\n")),
    ("file-toml-duplicate-key", "train", ["--config", "{tmp}/c.toml"], "c.toml is damaged (not TOML: Cannot overwrite a value (at line 2",
     None, toml("lr = 1e-3\nlr = 2e-3\n")),
    ("file-json-syntax", "train", ["--config", "{tmp}/c.json"], "c.json is damaged (not JSON: Expecting value: line 2 column 11", None,
     {"setup_tmp": hand_file("c.json", '{"lr": 1e-3,\n "gamma": }')}),
    ("file-json-a-list", "train", ["--config", "{tmp}/c.json"], "c.json: must hold a table of settings", None,
     {"setup_tmp": hand_file("c.json", "[1, 2]")}),
    ("file-json-null", "train", ["--config", "{tmp}/c.json"], "c.json: lr: must be a single number or string, got None", None,
     {"setup_tmp": hand_file("c.json", '{"lr": null}')}),
    ("file-json-part-of-a-saved-run", "train", ["--config", "{tmp}/c.json"], "c.json is damaged: config: missing", None,
     {"setup_tmp": hand_file("c.json", '{"lr": 1e-3, "runs": []}')}),
    ("file-preset-unknown", "train", ["--config", "{tmp}/c.toml"], "c.toml: preset: unknown preset 'nosuch'", None, toml('preset = "nosuch"\n')),
    ("file-preset-empty-name", "train", ["--config", "{tmp}/c.toml"], "c.toml: preset: empty preset name", None,
     toml('preset = ["rainbow", ""]\n')),
    ("file-preset-env-clash", "train", ["--config", "{tmp}/c.toml"], "c.toml: preset: 'cartpole' is made for CartPole-v1", None,
     toml('env_id = "Acrobot-v1"\npreset = "cartpole"\n')),
    ("file-and-preset-option", "train", ["--config", "{tmp}/c.toml", "--preset", "rainbow"], "--preset: contradicts --config", None,
     toml("lr = 1e-3\n")),
    ("file-bad-option-over-it", "train", ["--config", "{tmp}/c.toml", "--gamma", "2"], "error: --gamma: ", None, toml("gamma = 0.99\n")),
    ("file-sweep-not-a-table", "train", ["--config", "{tmp}/c.toml"], "c.toml: sweep: must be a table of settings", None, toml("sweep = 1\n")),
    ("file-sweep-not-a-list", "train", ["--config", "{tmp}/c.toml"], "c.toml: sweep: lr: needs a non-empty list", None,
     toml("[sweep]\nlr = 1e-3\n")),
    ("file-sweep-empty", "train", ["--config", "{tmp}/c.toml"], "c.toml: sweep: lr: needs a non-empty list", None, toml("[sweep]\nlr = []\n")),
    ("file-sweep-shape", "train", ["--config", "{tmp}/c.toml"], "c.toml: sweep widths: changes array shapes", None,
     toml("[sweep]\nwidths = [16, 32]\n")),
    ("file-sweep-unknown", "train", ["--config", "{tmp}/c.toml"], "c.toml: sweep: unknown setting 'colour'", None, toml("[sweep]\ncolour = [1, 2]\n")),
    ("file-sweep-bad-value", "train", ["--config", "{tmp}/c.toml"], "c.toml: sweep lr=-1", None, toml("[sweep]\nlr = [1e-3, -1]\n")),
    ("file-sweep-repeated", "train", ["--config", "{tmp}/c.toml"], "c.toml: sweep lr: repeated values", None, toml("[sweep]\nlr = [1e-3, 1e-3]\n")),
    ("file-sweep-and-single-value", "train", ["--config", "{tmp}/c.toml"], "c.toml: sweep lr: contradicts", None,
     toml("lr = 1e-3\n[sweep]\nlr = [1e-3, 2e-3]\n")),
    ("file-num-seeds-0", "train", ["--config", "{tmp}/c.toml"], "c.toml: num_seeds: must be an integer from 1", None, toml("num_seeds = 0\n")),
    ("file-runs-unbounded", "train", ["--config", "{tmp}/c.toml"], "c.toml: num_seeds/sweep: ", None,
     toml("num_seeds = 40000\n[sweep]\nlr = [1e-3, 2e-3]\n")),
    ("file-checkpoint-every-negative", "train", ["--config", "{tmp}/c.toml"], "c.toml: checkpoint_every: must be 0 or more", None,
     toml("checkpoint_every = -1\n")),
    ("file-keep-0", "train", ["--config", "{tmp}/c.toml"], "c.toml: keep_checkpoints: must be at least 1", None, toml("keep_checkpoints = 0\n")),
    # train: host envs, the actor-learner (#21)
    ("host-env-unknown", "train", ["--env-id", "gymnasium:NoSuchEnv-v0"], "--env-id", None, {}),
    ("host-env-continuous", "train", ["--env-id", "gymnasium:Pendulum-v1"], "--env-id", None, {}),
    ("host-actors-not-dividing", "train", [*HOST_TINY, "--actors", "3"], "--actors", None, {}),
    ("host-actors-0", "train", [*HOST_TINY, "--actors", "0"], "--actors", None, {}),
    ("host-num-seeds", "train", [*HOST_TINY, "--num-seeds", "2"], "--num-seeds", None, {}),
    ("host-sweep", "train", [*HOST_TINY, "--sweep", "lr=1e-3,1e-4"], "--sweep", None, {}),
    ("host-mesh", "train", [*HOST_TINY, "--mesh-data", "2"], "--mesh-data", None, {}),
    ("host-free-sync", "train", [*HOST_TINY, "--rate-limit", "free", "--host-loop", "sync"], "--rate-limit", None, {}),
    ("host-sticky", "train", [*HOST_TINY, "--sticky-actions", "0.1"], "--sticky-actions", None, {}),
    ("host-eval-below-block", "train", [*HOST_TINY, "--eval-every", "12"], "--eval-every", None, {}),
    ("host-block-0", "train", [*HOST_TINY, "--block-steps", "0"], "--block-steps", None, {}),
    ("host-log-video", "train", [*HOST_TINY, "--log", "tensorboard", "--log-video"], "--log-video", None, {}),
    ("host-apex-and-schedule", "train", [*HOST_TINY, "--apex-epsilons", "--eps-end", "0.1"], "--eps-end", None, {}),
    ("actors-on-a-jax-env", "train", [*TINY, "--actors", "2"], "--actors", None, {}),
    ("host-actor-priorities-uniform", "train", [*HOST_TINY, "--actor-priorities"], "--actor-priorities", None, {}),
    ("host-actor-priorities-n-step", "train", [*HOST_TINY, "--actor-priorities", "--prioritized", "--n-step", "3"],
     "--actor-priorities", None, {}),
    ("frames-on-a-host-env", "train", [*HOST_TINY, "--replay-layout", "frames"], "--replay-layout", None, {}),
    ("frames-buffer-too-small", "train", [*TINY, "--replay-layout", "frames", "--buffer-size", "16"], "--buffer-size", None, {}),
    ("frames-learning-starts-early", "train", [*TINY, "--replay-layout", "frames", "--n-step", "3", "--learning-starts", "12",
     "--batch-size", "8"], "--learning-starts", None, {}),  # fmt: skip
    ("replay-layout-choice", "train", [*TINY, "--replay-layout", "triples"], "--replay-layout", None, {}),
    # train: Atari games (#20)
    ("atari-pairs", "train", ["--env-id", "Breakout", "--replay-layout", "pairs"], "--replay-layout", None, {}),
    ("atari-noop-max-negative", "train", ["--env-id", "Breakout", "--noop-max", "-1"], "--noop-max", None, {}),
    ("atari-noop-max-fraction", "train", ["--env-id", "Breakout", "--noop-max", "1.5"], "--noop-max", None, {}),
    ("atari-sticky-1", "train", ["--env-id", "Breakout", "--sticky-actions", "1"], "--sticky-actions", None, {}),
    ("atari-mesh", "train", ["--env-id", "Breakout", "--mesh-runs", "2", "--num-seeds", "2"], "--mesh-runs", None, {}),
    ("atari-multi-host", "train", ["--env-id", "Breakout", "--num-processes", "2"], "--num-processes", None, {}),
    ("atari-memory", "train", ["--env-id", "Breakout", "--buffer-size", "1e8"], "memory", None, {}),
    ("atari-conv-torso", "train", ["--env-id", "Breakout", "--torso", "conv"], "--torso", None, {}),
    ("atari-rom-unknown", "train", ["--env-id", "Breakouts"], "--env-id", None, {}),
    ("noop-max-on-cartpole", "train", [*TINY, "--noop-max", "10"], "--noop-max", None, {}),
    ("episodic-life-on-minatar", "train", ["--env-id", "Breakout-MinAtar", "--episodic-life"], "--episodic-life", None, {}),
    ("nature-torso-on-cartpole", "train", [*TINY, "--torso", "nature"], "--torso", None, {}),
    # the Python API
    ("api-make-train-num-envs-0", "api", lambda p: make_train(Config(num_envs=0)), "--num-envs", None, {"raises": ConfigError}),
    ("api-make-trainer-lr", "api", lambda p: make_trainer(Config(lr=-1.0)), "--lr", None, {"raises": ConfigError}),
    ("api-make-train-int32", "api", lambda p: make_train(Config(total_steps=3 * 10**9)), "--total-steps", None, {"raises": ConfigError}),
    ("api-validate-seed", "api", lambda p: validate(Config(seed=-1)), "--seed", None, {"raises": ConfigError}),
    ("api-episodic-life-cartpole", "api", lambda p: make_train(Config(episodic_life=True)), "--episodic-life", None,
     {"raises": ConfigError}),
    ("api-validate-type", "api", lambda p: validate(Config(dueling="yes")), "--dueling", None, {"raises": ConfigError}),
    ("api-validate-choice", "api", lambda p: validate(Config(optimizer="sgd")), "--optimizer", None, {"raises": ConfigError}),
    ("api-from-preset", "api", lambda p: from_preset("nosuch"), "--preset", None, {"raises": ConfigError}),
    ("api-from-dict-missing", "api", lambda p: Config.from_dict({"lr": 1e-3}), "missing", None, {"raises": ConfigError}),
    ("api-load-policy-missing", "api", lambda p: load_policy(p["tmp"] / "missing"), "not a directory", None, {"raises": RunDirError}),
    ("api-load-policy-run", "api", lambda p: load_policy(p["run"], run=3), "run 3", None, {"raises": RunDirError}),
    ("api-replace-unknown", "api", lambda p: Config().replace(colour=1), "colour: unknown setting", None, {"raises": ConfigError}),
    ("api-from-preset-unknown", "api", lambda p: from_preset(None, colour=1), "colour: unknown setting", None, {"raises": ConfigError}),
    ("api-hp-lr-negative", "api", lambda p: train_with(lr=-1.0), "hp.lr=-1.0", None, {"raises": ConfigError}),
    ("api-hp-gamma-nan", "api", lambda p: train_with(gamma=float("nan")), "hp.gamma=nan", None, {"raises": ConfigError}),
    ("api-hp-learning-starts-float", "api", lambda p: train_with(learning_starts=600.5), "hp.learning_starts: must be integers", None,
     {"raises": ConfigError}),
    ("api-hp-one-bad-of-many", "api", lambda p: train_with(lr=[1e-3, -1.0]), "hp.lr=-1.0", None, {"raises": ConfigError}),
    ("api-make-runs-empty-sweep", "api", lambda p: runner.make_runs(from_preset("cartpole"), 1, {"lr": []}), "--sweep lr", None,
     {"raises": ConfigError}),
    ("api-make-runs-0-seeds", "api", lambda p: runner.make_runs(from_preset("cartpole"), 0), "--num-seeds", None, {"raises": ConfigError}),
    ("api-train-runs-not-empty", "api", lambda p: runner.train_runs(from_preset("cartpole"), *runner.make_runs(from_preset("cartpole")), RunOptions(output_dir=p["run"])),
     "--overwrite", None, {"raises": run_directory.OutputDirError}),
]  # fmt: skip
assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


def train_with(**hp):
    """`train(key, hp)` of the tiny config with some traced hyperparameters replaced."""
    import jax
    import jax.numpy as jnp

    config = tiny_config()
    return make_train(config)(jax.random.key(0), config.hparams()._replace(**{k: jnp.asarray(v) for k, v in hp.items()}))


def tiny_config() -> Config:
    return Config(total_steps=3000, num_envs=4, learning_starts=500, batch_size=32, buffer_size=1000, eval_every=1000,
                  num_chunks=3, widths=(16,), num_eval_envs=2)  # fmt: skip


def tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): "dir" if p.is_dir() else p.read_bytes().hex() for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("name,kind,args,text,damage,options", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, kind, args, text, damage, options, finished, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default output dir would land here, and be seen
    paths = {"tmp": tmp_path, "run": tmp_path / "run", "file": tmp_path / "file"}
    shutil.copytree(finished, paths["run"])
    paths["file"].write_text("a plain file")
    if damage:
        damage(paths["run"])
    if "setup_tmp" in options:
        options["setup_tmp"](tmp_path, monkeypatch)
    if not options.get("compiles"):
        monkeypatch.setattr(runner, "compile_program", lambda *a, **k: pytest.fail("compiled"))
        monkeypatch.setattr(actor_learner.ActorLearnerTraining, "_compile", lambda *a, **k: pytest.fail("compiled"))
    before = tree_hash(tmp_path)
    capfd.readouterr()

    if kind == "api":
        with pytest.raises(options["raises"]) as exc:
            args(paths)
        lines = [str(exc.value)]
        assert len(str(exc.value).splitlines()) == 1
    else:
        argv = [a.format(**paths) for a in args]
        main = evaluate.main if kind == "evaluate" else cli.main
        argv = ["--resume", str(paths["run"]), *argv] if kind == "resume" else argv
        assert main(argv) == 2
        out, err = capfd.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
        assert lines[0].startswith(f"{evaluate.PROG if kind == 'evaluate' else cli.PROG}: error:")
    assert text in lines[0], lines[0]
    assert "tree structures do not match:" != lines[0][-len("tree structures do not match:"):]
    assert "pybind11" not in lines[0] and "<bound method" not in lines[0]
    assert tree_hash(tmp_path) == before


@pytest.mark.parametrize("argv", [["--seed", "-1"], ["--lr", "-1e-3", "--output-dir", "out"]], ids=["train", "train-dir"])
def test_bad_input_through_the_real_entry_point(argv, tmp_path):
    """A few cases as a user meets them: a fresh interpreter, exit status 2, one line."""
    proc = subprocess.run([sys.executable, "-m", "purejaxdqn.train", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert argv[0] in proc.stderr and not list(tmp_path.iterdir())


def test_bad_evaluate_through_the_real_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "purejaxdqn.evaluate", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "not a directory" in proc.stderr


def test_garbage_checkpoint_metadata_is_no_noise(finished, tmp_path, capfd):
    """orbax tolerates a damaged _CHECKPOINT_METADATA but logs absl ERROR lines for each one; the
    command line must not print them for a run that resumes fine."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    garbage_checkpoint_metadata(run)
    capfd.readouterr()
    assert cli.main(["--resume", str(run)]) == 0
    assert capfd.readouterr().err.strip() == ""


def changed(name: str, value):
    """Another value of the same type for a setting (the class test of edited config.json)."""
    others = {"env_id": "Acrobot-v1", "widths": [32], "loss": "huber", "torso": "conv", "optimizer": "rmsprop", "loop": "branching",
              "host_loop": "sync", "rate_limit": "free", "replay_layout": "frames"}
    if name in others:
        return others[name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1 if name not in ("num_chunks",) else value * 2
    return value / 2 if value else 0.5


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Config)])
def test_every_edited_setting_of_a_saved_run_is_refused_on_resume(name, finished, tmp_path, capfd, monkeypatch):
    """Any edit of config.json's settings after a checkpoint (a valid value or not) ends in exit
    2 and one line naming the setting (the validation's or the checkpoint's), and changes
    nothing: the resumed run would otherwise mix two runs."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    saved = json.loads((run / run_directory.CONFIG_FILE).read_text())
    saved["config"][name] = changed(name, saved["config"][name])
    if name == "seed":
        saved["runs"][0]["seed"] = saved["config"]["seed"]
    (run / run_directory.CONFIG_FILE).write_text(json.dumps(saved))
    monkeypatch.setattr(runner, "compile_program", lambda *a, **k: pytest.fail("compiled"))
    before = tree_hash(tmp_path)
    capfd.readouterr()
    assert cli.main(["--resume", str(run)]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert name in lines[0].replace("-", "_"), lines[0]
    assert tree_hash(tmp_path) == before


def wrong_type(value):
    """A JSON value of another type than `value`'s."""
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, (int, float)):
        return "1"
    if isinstance(value, str):
        return 1
    return {"a": 1}


@pytest.mark.parametrize("key", [*(f"config.{f.name}" for f in dataclasses.fields(Config)), "num_seeds", "sweep", "runs", "settings", "mesh"])
def test_every_saved_value_of_the_wrong_json_type_is_one_line(key, finished, tmp_path, capfd):
    """config.json with any value of another JSON type: `--config` (and so `--resume` and
    `evaluate`, which read it the same way) say it is damaged, naming the key, in one line."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    saved = json.loads((run / run_directory.CONFIG_FILE).read_text())
    *parents, last = key.split(".")
    target = saved[parents[0]] if parents else saved
    target[last] = wrong_type(target[last])
    (run / run_directory.CONFIG_FILE).write_text(json.dumps(saved))
    before = tree_hash(tmp_path)
    capfd.readouterr()
    assert cli.main(["--config", str(run), "--output-dir", str(tmp_path / "new")]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0] and "is damaged" in lines[0], lines
    assert last in lines[0].replace("-", "_"), lines[0]
    assert tree_hash(tmp_path) == before
