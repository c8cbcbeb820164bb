"""Checkpoints: kill and resume ends bit-identical, crash safety, refusals, NaN guard, policy export."""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from purejaxdqn.host import checkpointing, run_directory, runner
from purejaxdqn import cli
from purejaxdqn.host.policy import load_policy

# Many small chunks, a checkpoint after each: a kill lands mid-run, maybe mid-save.
RUN = [
    "--total-steps", "60000", "--num-chunks", "40", "--num-envs", "6", "--buffer-size", "3000",
    "--batch-size", "32", "--learning-starts", "1000", "--eval-every", "6000", "--widths", "32",
    "--num-eval-envs", "4", "--checkpoint-every", "1", "--checkpoint-min-interval", "0", "--keep-checkpoints", "2", "--num-seeds", "2",
]  # fmt: skip
TIMING = {"chunk_s", "env_steps_per_s"}


def cli_run(args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "purejaxdqn.train", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip


def full_state(run_dir: Path):
    saved = run_directory.read(run_dir)
    step = checkpointing.latest_step(run_dir)
    return step, jax.device_get(checkpointing.restore(run_dir, step, runner.abstract_state(saved.config, saved.runs)))


def rows_without_timing(path: Path):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in run_directory.read_jsonl(path)]


def assert_states_bitwise_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)


def test_killed_run_resumes_to_the_bit_identical_end(tmp_path):
    """SIGKILL at a random point, resume: final state (replay, params, RNG, ...) and metrics equal
    the uninterrupted run's, bit for bit (CPU, same device count), with 2 vmapped seeds."""
    whole = tmp_path / "whole"
    assert cli_run([*RUN, "--output-dir", str(whole)], tmp_path).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "purejaxdqn.train", *RUN, "--output-dir", str(killed)],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    target = random.Random().randint(3, 25)
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in (killed / "checkpoints").glob("*") if p.name.isdigit()] if (killed / "checkpoints").exists() else []
        if steps and max(steps) >= target:
            time.sleep(random.random() * 0.2)
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = checkpointing.latest_step(killed)
    assert killed_at < 40

    resumed = cli_run(["--resume", str(killed)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from the checkpoint after chunk {killed_at}" in resumed.stdout

    step_a, state_a = full_state(whole)
    step_b, state_b = full_state(killed)
    assert step_a == step_b == 40
    assert_states_bitwise_equal(state_a, state_b)
    assert rows_without_timing(whole / run_directory.METRICS_FILE) == rows_without_timing(killed / run_directory.METRICS_FILE)
    assert rows_without_timing(whole / run_directory.EVALS_FILE) == rows_without_timing(killed / run_directory.EVALS_FILE)
    assert load_policy(whole, run=1).params is not None


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A finished 4-chunk run with a checkpoint after every chunk."""
    run_dir = tmp_path_factory.mktemp("ck") / "run"
    args = ["--total-steps", "8000", "--num-chunks", "4", "--num-envs", "4", "--buffer-size", "800", "--batch-size",
            "32", "--learning-starts", "500", "--eval-every", "2000", "--widths", "16", "--num-eval-envs", "2",
            "--checkpoint-every", "1", "--checkpoint-min-interval", "0", "--keep-checkpoints", "4", "--output-dir", str(run_dir)]  # fmt: skip
    assert cli.main(args) == 0
    return run_dir


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run_dir, target)
    return target


def test_incomplete_newest_checkpoint_is_ignored(small_run, tmp_path):
    """A save cut off by a kill leaves only a temporary directory: resume takes the newest complete one."""
    run_dir = copy_run(small_run, tmp_path)
    partial = run_dir / "checkpoints" / "5.orbax-checkpoint-tmp-1764000000000000"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "junk").write_bytes(b"\x00" * 100)
    assert checkpointing.latest_step(run_dir) == 4
    step, state = full_state(run_dir)
    assert step == 4 and int(state.env_steps) == 8000


def test_keeps_the_last_k_checkpoints(small_run):
    assert sorted(int(p.name) for p in (small_run / "checkpoints").iterdir() if p.name.isdigit()) == [1, 2, 3, 4]


def test_loading_never_unpickles(small_run, monkeypatch):
    """Restoring a checkpoint and loading a policy never call pickle."""
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    load_policy(small_run)
    full_state(small_run)


# Refused resumes (changed settings, missing, empty or damaged directories) are cases of the
# bad-input corpus in tests/test_bad_inputs.py.


def test_resume_from_a_corrupt_checkpoint_is_one_clear_line(small_run, tmp_path):
    run_dir = copy_run(small_run, tmp_path)
    for f in (run_dir / "checkpoints" / "4" / "state").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(b"garbage")
    proc = cli_run(["--resume", str(run_dir)], tmp_path, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "cannot be restored" in proc.stderr, proc.stderr[-2000:]


def test_nonfinite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    """A diverging run (absurd learning rate) stops naming the step and run; no checkpoint of the
    bad chunk is written."""
    out = tmp_path / "nan"
    args = ["--total-steps", "8000", "--num-chunks", "8", "--num-envs", "4", "--buffer-size", "800", "--batch-size",
            "32", "--learning-starts", "2000", "--eval-every", "2000", "--widths", "16", "--num-eval-envs", "2",
            "--lr", "1e38", "--max-grad-norm", "1e38", "--checkpoint-min-interval", "0", "--output-dir", str(out)]  # fmt: skip
    proc = cli_run(args, tmp_path, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "non-finite" in line and "run 0 (seed 0)" in line and "env step" in line
    bad_step = int(line.split("env step ")[1].split(" ")[0].replace(",", ""))
    last_good = checkpointing.latest_step(out)
    assert last_good * 1000 < bad_step  # 1000 env steps per chunk: only chunks before the NaN were saved
    _, state = full_state(out)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.learner.params))


def test_trained_cartpole_policy_balances_the_pole_in_a_plain_python_loop(tmp_path):
    """load_policy(run_dir) -> act(obs) on host NumPy observations, one at a time, in a plain loop."""
    import gymnax

    run_dir = tmp_path / "cartpole"
    assert cli.main(["--output-dir", str(run_dir), "--checkpoint-every", "0"]) == 0
    act = load_policy(run_dir)
    assert json.loads((run_dir / run_directory.SUMMARY_FILE).read_text())["final_eval_return_mean"][0] >= 475
    env, params = gymnax.make("CartPole-v1")
    step = jax.jit(env.step)
    returns = []
    for episode in range(3):
        key = jax.random.key(100 + episode)
        obs, state = env.reset(key, params)
        total, done = 0.0, False
        while not done:
            key, sub = jax.random.split(key)
            action = act(np.asarray(obs))
            assert isinstance(action, int)
            obs, state, reward, terminated, truncated, _ = step(sub, state, action, params)
            total += float(reward)
            done = bool(terminated) or bool(truncated)
        returns.append(total)
    assert min(returns) >= 475, returns
    batch = np.stack([np.asarray(obs)] * 5)
    assert act(batch).shape == (5,)

    proc = subprocess.run([sys.executable, "-m", "purejaxdqn.evaluate", str(run_dir), "--episodes", "20"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    mean = float(proc.stdout.split("mean return ")[1].split(" ")[0])
    assert mean >= 475 and "+-" in proc.stdout


def test_min_interval_skips_due_saves_of_a_short_run_but_never_the_last(tmp_path):
    """With the default 60 s minimum interval a short run saves only at its end."""
    args = ["--total-steps", "4000", "--num-chunks", "4", "--num-envs", "4", "--buffer-size", "1000",
            "--batch-size", "16", "--learning-starts", "500", "--eval-every", "1000", "--widths", "8",
            "--num-eval-envs", "2", "--no-progress"]  # fmt: skip
    assert cli.main([*args, "--output-dir", str(tmp_path / "a")]) == 0
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir() if p.name.isdigit()) == ["4"]
    assert cli.main([*args, "--checkpoint-min-interval", "0", "--output-dir", str(tmp_path / "b")]) == 0
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "3", "4"]
