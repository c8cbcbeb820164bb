"""Atari games in the compiled loop (envs/atari_adapter.py): the adapter against ale-py stepped
from NumPy, the rows the loop stores from real ALE steps against a NumPy reference, vmapped runs
and chunks, what a resume restores and what it restarts, and the CLI end to end.

The recordings play Breakout with random actions and a 150-step time limit, so they hold game
overs (terminations), truncations, lost lives and the ALE's reset steps (NEXT_STEP: the step
after an end restarts the env, ignores its action and stores nothing)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxdqn import Config
from purejaxdqn.algorithm import frame_replay, loop
from purejaxdqn.envs import atari_adapter

GAME, ENVS, STEPS, LIMIT, GAMMA = "Breakout", 4, 400, 150, 0.9


def record(venv, key, actions):
    """The adapter's StepResults of `actions` [T, E] from a reset, stacked over the steps, and the
    observation each step started from."""

    def step(carry, action):
        obs, env_state = carry
        res = venv.step(key, env_state, action)
        return (res.obs, res.env_state), (obs, res)

    obs, env_state = venv.reset(key)
    return jax.device_get(jax.jit(lambda a: jax.lax.scan(step, (obs, env_state), a)[1])(jnp.asarray(actions)))


@pytest.fixture(scope="module")
def recording():
    venv = atari_adapter.make(GAME, ENVS, time_limit=LIMIT, role="test")
    key = jax.random.key(3)
    actions = np.random.default_rng(0).integers(0, venv.num_actions, (STEPS, ENVS)).astype(np.int32)
    obs, res = record(venv, key, actions)
    seeds = np.asarray(jax.random.randint(key, (ENVS,), 0, 2**31 - 1, dtype=jnp.int32))
    return venv, seeds, actions, obs, res


def test_the_adapter_steps_as_ale_py_does_from_numpy(recording):
    """Observations (stack last, newest last), rewards, ends, reset steps and lost lives equal
    ale-py's vector env stepped from NumPy with the same seeds and actions."""
    venv, seeds, actions, obs, res = recording
    host = venv.options.vector_env(ENVS)
    o, info = host.reset(seed=seeds)
    lives, resetting = info["lives"], np.zeros(ENVS, bool)
    np.testing.assert_array_equal(obs[0], np.moveaxis(o, 1, -1))
    for t in range(STEPS):
        o, reward, terminated, truncated, info = host.step(actions[t])
        np.testing.assert_array_equal(res.obs[t], np.moveaxis(o, 1, -1))
        np.testing.assert_array_equal(res.reward[t], reward)
        np.testing.assert_array_equal(res.terminated[t], terminated)
        np.testing.assert_array_equal(res.truncated[t], truncated & ~terminated)
        np.testing.assert_array_equal(res.reset_step[t], resetting)
        np.testing.assert_array_equal(res.life_lost[t], (info["lives"] < lives) & ~resetting)
        lives, resetting = info["lives"], terminated | truncated
    assert res.terminated.sum() and res.truncated.sum() and res.life_lost.sum() > res.terminated.sum()
    # The stack shifts by one frame a step within an episode and starts from zeros after a reset step.
    within = ~res.reset_step[1:]
    np.testing.assert_array_equal(res.obs[1:][within][..., :-1], res.obs[:-1][within][..., 1:])
    first = res.obs[res.reset_step]
    assert first.shape[0] and not first[..., :-1].any() and first[..., -1].any()


def reference_rows(obs, res, clip: bool, episodic_life: bool):
    """What replay should hold, in NumPy: per (step, env) a transition or None (a reset step)."""
    rows = []
    for t in range(STEPS):
        row = []
        for e in range(ENVS):
            if res.reset_step[t, e]:
                row.append(None)
                continue
            reward = float(np.sign(res.reward[t, e]) if clip else res.reward[t, e])
            terminal = bool(res.terminated[t, e] or (episodic_life and res.life_lost[t, e]))
            row.append((obs[t, e], reward, res.next_obs[t, e], terminal, bool(res.truncated[t, e]) and not terminal))
        rows.append(row)
    return rows


def reference_item(rows, t, e, n):
    """The n-step item of (step t, env e): observation, discounted reward, bootstrap observation
    and discount, the window ending at a terminal or truncation."""
    total = 0.0
    for j in range(n):
        obs, reward, next_obs, terminal, truncated = rows[t + j][e]
        total += GAMMA**j * reward
        if terminal or truncated:
            break
    return rows[t][e][0], total, next_obs, 0.0 if terminal else GAMMA ** (j + 1)


@pytest.mark.parametrize("clip,episodic_life,n", [(False, False, 1), (True, True, 3)])
def test_stored_rows_give_the_reference_items_on_real_ale_steps(recording, clip, episodic_life, n):
    """loop.stored_row on the recorded steps, written to the frames replay (single frames, the
    stacks rebuilt when sampled): every sampleable item is the reference's, rebuilt stacks equal
    the ALE's own, reset steps are never sampled, truncations bootstrap and game overs (and with
    episodic_life lost lives) do not; clipped rewards are signs."""
    venv, _, actions, obs, res = recording
    config = Config(env_id=GAME, clip_rewards=clip, episodic_life=episodic_life)
    rows_cap = 300
    layout = frame_replay.make_layout(rows_cap, 4, n, False, LIMIT)
    step_at = lambda t: jax.tree.map(lambda x: jnp.asarray(x[t]), res)  # noqa: E731
    row, valid = loop.stored_row(config, jnp.asarray(obs[0]), jnp.asarray(actions[0]), step_at(0))
    state = frame_replay.init(layout, row)
    add = jax.jit(lambda s, row, valid: frame_replay.add(layout, s, row, valid))
    for t in range(STEPS):
        row, valid = loop.stored_row(config, jnp.asarray(obs[t]), jnp.asarray(actions[t]), step_at(t))
        state = add(state, row, valid)
    reference = reference_rows(obs, res, clip, episodic_life)
    count = int(frame_replay.num_sampleable(layout, state))
    ts = np.arange(STEPS - rows_cap + 3, STEPS - rows_cap + 3 + count)
    batch = jax.device_get(frame_replay.batch_at(layout, state, jnp.asarray(np.repeat(ts % rows_cap, ENVS)),
                                                 jnp.asarray(np.tile(np.arange(ENVS), count)), GAMMA))  # fmt: skip
    valid_rows = np.asarray(state.data.valid)
    checked = 0
    for i, (t, e) in enumerate(zip(np.repeat(ts, ENVS), np.tile(np.arange(ENVS), count))):
        assert valid_rows[t % rows_cap, e] == (reference[t][e] is not None)
        if reference[t][e] is None:
            continue
        item_obs, reward, next_obs, discount = reference_item(reference, t, e, n)
        np.testing.assert_array_equal(batch.obs[i], item_obs)
        assert float(batch.reward[i]) == pytest.approx(reward, rel=1e-5)
        assert float(batch.discount[i]) == pytest.approx(discount, rel=1e-6)
        if discount:
            np.testing.assert_array_equal(batch.next_obs[i], next_obs)
        checked += 1
    assert checked > 0.9 * count * ENVS


LOOP = dict(env_id=GAME, num_envs=2, num_eval_envs=2, total_steps=160, num_chunks=1, buffer_size=128, batch_size=4,
            learning_starts=64, eval_every=80, time_limit=60, widths=(16,), torso="nature", replay_layout="frames",
            clip_rewards=True, episodic_life=True, target_update_every=8)  # fmt: skip


def train(config, seed=0, num_seeds=1):
    from purejaxdqn.host import runner

    return jax.device_get(runner.train_runs(config, *runner.make_runs(config.replace(seed=seed), num_seeds=num_seeds)).state)


def test_the_loop_is_chunk_invariant_and_a_seed_in_a_batch_is_the_seed_alone():
    """The emulators live outside the program, yet 1 chunk and 2 are the same run, and vmapped
    runs (their envs merged into one ALE vector env) are each the run alone."""
    config = Config(**LOOP)
    one = train(config)
    two = train(config.replace(num_chunks=2))
    same = lambda s: (s.learner, s.replay, s.obs, s.episode_return, s.episode_length, s.env_steps)  # stats: per chunk  # noqa: E731
    for x, y in zip(jax.tree.leaves(same(one)), jax.tree.leaves(same(two))):
        np.testing.assert_array_equal(x, y)
    both = train(config, seed=0, num_seeds=2)
    alone = train(config, seed=1)
    np.testing.assert_array_equal(both.replay.data.frame[1], alone.replay.data.frame[0])
    for x, y in zip(jax.tree.leaves(both.learner.params), jax.tree.leaves(alone.learner.params)):
        np.testing.assert_allclose(x[1], y[0], rtol=2e-4, atol=2e-5)
    assert int(one.stats.episodes.sum()) > 0 and np.asarray(one.replay.data.valid).sum() < 160


def test_a_restart_keeps_the_learner_and_replay_and_begins_new_episodes():
    """What a resume of an Atari run does after restoring a checkpoint (the emulators cannot be
    saved): learner, counters and stats stay; the envs begin new episodes from a reset (a
    zero-padded stack); replay's newest rows, whose windows reach the lost observation, stop
    being transitions and the next row begins episodes."""
    config = Config(**LOOP, n_step=3)
    trainer = loop.make_trainer(config)
    state = jax.jit(trainer.init)(jax.random.key(0), config.hparams())
    state = jax.jit(trainer.run_chunk)(state, config.hparams())
    state = state._replace(episode_length=state.episode_length + 1)  # mid-episode for sure
    restarted = jax.device_get(jax.jit(trainer.restart_envs)(state))
    state = jax.device_get(state)
    for x, y in zip(jax.tree.leaves((state.learner, state.stats, state.env_steps)), jax.tree.leaves((restarted.learner, restarted.stats, restarted.env_steps))):
        np.testing.assert_array_equal(x, y)
    assert not restarted.obs[..., :-1].any() and restarted.obs[..., -1].any()
    assert not restarted.episode_length.any() and not restarted.episode_return.any()
    assert not restarted.env_state.resetting.any()
    newest = (int(state.replay.row) - 1 - np.arange(3)) % config.buffer_rows
    assert not restarted.replay.data.valid[newest].any()
    keep = np.setdiff1d(np.arange(config.buffer_rows), newest)
    np.testing.assert_array_equal(restarted.replay.data.valid[keep], state.replay.data.valid[keep])
    assert restarted.replay.next_first.all()


def test_the_cli_trains_evaluates_and_resumes_breakout(tmp_path):
    """`--env-id Breakout` from the command line: SIGINT keeps the chunk in flight, `--resume`
    continues (the learner from the checkpoint, the emulators afresh), every chunk is logged
    once and the run evaluates at its end."""
    import signal
    import subprocess
    import sys
    import time

    from purejaxdqn import cli, load_policy, render_episode

    out = tmp_path / "run"
    argv = ["--env-id", GAME, "--total-steps", "1024", "--num-envs", "2", "--num-eval-envs", "2", "--buffer-size", "256",
            "--learning-starts", "64", "--num-chunks", "16", "--eval-every", "512", "--time-limit", "60",
            "--batch-size", "4", "--widths", "16", "--no-progress", "--output-dir", str(out)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "purejaxdqn.train", *argv], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    metrics, deadline = out / "metrics.jsonl", time.time() + 240
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err[-2000:]
    chunks = lambda: [json.loads(line)["chunk"] for line in metrics.read_text().splitlines()]  # noqa: E731
    saved = len(chunks())
    assert 1 <= saved < 16
    assert cli.main(["--resume", str(out)]) == 0
    assert chunks() == list(range(16))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_chunk"] == saved and summary["env_steps_per_run"] == 1024
    assert np.isfinite(summary["final_eval_return_mean"])
    frames, _ = render_episode(load_policy(out), max_frames=12)  # what `evaluate --gif` draws: the newest frame, gray
    image = frames[-1][40:].astype(int)
    assert len(frames) == 12 and image.std() > 0 and (image == image[..., :1]).all()


def gymnasium_pipeline(game: str, seed: int):
    """gymnasium's standard Atari preprocessing on the raw game: AtariPreprocessing (4 frames a
    step, the last two max-pooled, 84x84 gray) and a 4-frame stack padded with zeros, no no-ops
    (their random counts come from different generators), no sticky actions."""
    import ale_py
    import gymnasium as gym
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    gym.register_envs(ale_py)
    env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0)
    env = FrameStackObservation(AtariPreprocessing(env, noop_max=0, frame_skip=4, screen_size=84), 4, padding_type="zero")
    obs, _ = env.reset(seed=seed)
    return env, obs


def test_observations_equal_gymnasiums_atari_preprocessing_and_frame_stack():
    """Freeway (no FIRE button) through the adapter: every observation, reward and end equals
    gymnasium's AtariPreprocessing + FrameStackObservation on the same seed and actions. The one
    difference on games with FIRE is the ALE's fire reset (it presses FIRE after a reset, as
    Baselines' FireResetEnv, which CleanRL uses): Breakout matches exactly with it switched off."""
    from ale_py.vector_env import AtariVectorEnv

    venv = atari_adapter.make("Freeway", 1, noop_max=0, role="test-gymnasium")
    key = jax.random.key(11)
    seed = int(jax.random.randint(key, (1,), 0, 2**31 - 1, dtype=jnp.int32)[0])
    actions = np.random.default_rng(1).choice(3, (300, 1), p=[0.1, 0.8, 0.1]).astype(np.int32)  # mostly UP: crossings
    obs, res = record(venv, key, actions)
    env, o = gymnasium_pipeline("Freeway", seed)
    for t in range(300):
        np.testing.assert_array_equal(obs[t, 0], np.moveaxis(o, 0, -1))
        o, reward, terminated, truncated, _ = env.step(int(actions[t, 0]))
        assert (res.reward[t, 0], res.terminated[t, 0]) == (reward, terminated)
    assert res.reward.sum() > 0  # the chicken crossed: rewards compared, not only zeros
    for fire in (False, True):
        vec = AtariVectorEnv("breakout", 1, noop_max=0, reward_clipping=False, use_fire_reset=fire)
        v, _ = vec.reset(seed=np.array([5]))
        env, o = gymnasium_pipeline("Breakout", 5)
        same = []
        for a in np.random.default_rng(2).integers(0, 4, 100):
            same.append(np.array_equal(v[0], o))
            o, *_ = env.step(int(a))
            v, *_ = vec.step(np.array([a]))
        assert all(same) if not fire else not all(same)
