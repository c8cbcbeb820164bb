"""One id per optional family through the command line: two vmapped seeds, a run stopped
after its first checkpoint and resumed ends bit for bit where the uninterrupted run ends, the
exported policy and its GIF; and a masked family's replay never holds a disallowed action."""

from __future__ import annotations

import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from purejaxdqn import load_policy, render_episode
from purejaxdqn.host.video import save_video
from purejaxdqn.envs import action_mask, env_from_config
from purejaxdqn.host import run_directory

from test_checkpoint import assert_states_bitwise_equal, full_state, rows_without_timing
from test_faults import start, steps, wait_for
from test_workflow import gif_frames

SMALL = [
    "--num-envs", "4", "--learning-starts", "200", "--batch-size", "32", "--buffer-size", "800",
    "--widths", "32", "--num-eval-envs", "2", "--num-seeds", "2", "--no-progress",
    "--checkpoint-every", "1", "--checkpoint-min-interval", "0", "--keep-checkpoints", "3",
]  # fmt: skip
FAMILIES = {
    # A time limit keeps the evaluations short (Craftax's own is 10,000 steps).
    "xminigrid": ["--env-id", "MiniGrid-Empty-5x5", "--torso", "conv", "--time-limit", "40"],
    # Shared resets (--reset-ratio): 2 resets per step for the 4 envs, resumed bit for bit too.
    "jumanji": ["--env-id", "Minesweeper-v0", "--reset-ratio", "2"],
    "craftax": ["--env-id", "Craftax-Classic-Symbolic-v1", "--time-limit", "60", "--reset-ratio", "4"],
}
CHUNKS = ["--total-steps", "1200", "--num-chunks", "3", "--eval-every", "400"]


def train(args, cwd):
    """The command line in its own process, as a user runs it (the CPU split into one device per
    core, one seed on each: in this process, already started, the seeds would be vmapped on one
    device instead, which rounds differently)."""
    proc = subprocess.run([sys.executable, "-m", "purejaxdqn.train", *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_trains_resumes_bit_identically_and_exports_its_policy(family, tmp_path):
    args = [*SMALL, *FAMILIES[family], *CHUNKS]
    whole = tmp_path / "whole"
    train([*args, "--output-dir", str(whole)], tmp_path)

    stopped = tmp_path / "stopped"
    proc = start([*args, "--output-dir", str(stopped)], tmp_path)
    wait_for(lambda: (stopped / run_directory.CHECKPOINT_DIR).exists() and len(steps(stopped)) >= 1, proc, timeout=600)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "resumed from the checkpoint after chunk" in train(["--resume", str(stopped)], tmp_path).stdout

    step_a, state_a = full_state(whole)
    step_b, state_b = full_state(stopped)
    assert step_a == step_b == 3
    assert_states_bitwise_equal(state_a, state_b)
    for name in (run_directory.METRICS_FILE, run_directory.EVALS_FILE):
        assert rows_without_timing(whole / name) == rows_without_timing(stopped / name)

    policy = load_policy(whole, run=1)
    frames, _ = render_episode(policy, max_frames=20)
    assert frames and frames[0].ndim == 3 and frames[0].dtype == np.uint8 and max(frames[0].shape[:2]) >= 480
    decoded = gif_frames(save_video(frames, tmp_path / "episode.gif"))  # the family's video decodes, frame for frame
    assert len(decoded) == len(frames) and decoded[0].shape == frames[0].shape
    venv = env_from_config(policy.config, 3)
    obs, _ = venv.reset(jax.random.key(0))
    action = policy(np.asarray(obs))
    assert action.shape == (3,) and ((venv.action_mask(obs) is None) or np.asarray(venv.action_mask(obs))[np.arange(3), action].all())
    if family == "jumanji":
        _replay_holds_only_allowed_actions(state_a, venv.spec)


def _replay_holds_only_allowed_actions(state, spec):
    """Every stored action (both seeds, every filled row) is allowed by its observation's mask."""
    data = state.replay.data
    obs, taken = np.asarray(data.obs), np.asarray(data.action)  # [seeds, rows, envs, ...]
    filled = np.broadcast_to(np.asarray(state.replay.filled), obs.shape[:1])
    for seed in range(obs.shape[0]):
        rows = slice(0, int(filled[seed]))
        mask = np.asarray(action_mask(spec, obs[seed, rows]))
        picked = np.take_along_axis(mask, taken[seed, rows][..., None], axis=-1)[..., 0]
        assert picked.all() and picked.size > 0


def test_time_limit_truncates_in_each_familys_own_terms():
    from purejaxdqn.envs import make_vec_env

    for env_id, limit in [("CartPole-v1", 7), ("MiniGrid-Empty-8x8", 9), ("Snake-v1", 11), ("Craftax-Classic-Symbolic-v1", 13)]:
        venv = make_vec_env(env_id, 2, time_limit=limit)
        assert venv.max_episode_steps == limit, env_id


def test_a_family_id_through_the_real_entry_point_without_its_extra_is_one_line(tmp_path):
    """The package hidden from the interpreter: exit 2, one line naming the extra, nothing written."""
    code = ("import importlib.util, sys; real = importlib.util.find_spec; "
            "importlib.util.find_spec = lambda n, *a: None if n == 'xminigrid' else real(n, *a); "
            "from purejaxdqn import cli; sys.exit(cli.main(sys.argv[1:]))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, "--env-id", "MiniGrid-Empty-8x8", "--output-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "xminigrid extra" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
