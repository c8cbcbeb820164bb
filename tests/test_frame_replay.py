"""The frames replay layout (algorithm/frame_replay.py) against a NumPy reference of the
transitions an env produced, and against the pairs layout (replay.py) on MinAtar rows.

The reference env makes a fresh random frame every step and keeps the last S of its episode as
the observation (zeros before the episode's first, as the ALE's stack). Episodes end by a
random termination or a time limit (truncation); with `next_step` the env resets on the step
after an end (a reset step: action ignored, reward 0, no transition), else within the step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxdqn.algorithm import frame_replay, replay
from purejaxdqn.algorithm.transitions import Transition

GAMMA = 0.9


def rollout(steps: int, envs: int, stack: int, time_limit: int, next_step: bool, seed: int):
    """Rows as the loop writes them, each (Transition of leaves [envs, ...], valid or None),
    holding the true transition of every (step, env)."""
    rng = np.random.default_rng(seed)
    shape = (2, 3)
    frames = [[rng.integers(1, 255, shape, dtype=np.uint8)] for _ in range(envs)]  # this episode's frames
    t_in = np.zeros(envs, int)
    pending_reset = np.zeros(envs, bool)

    def stack_of(fs):
        last = fs[-stack:]
        pad = [np.zeros(shape, np.uint8)] * (stack - len(last))
        return np.stack(pad + last, axis=-1)

    rows = []
    obs = np.stack([stack_of(f) for f in frames])
    for _ in range(steps):
        action = rng.integers(0, 4, envs)
        reward = rng.normal(size=envs).astype(np.float32)
        term = np.zeros(envs, bool)
        trunc = np.zeros(envs, bool)
        valid = ~pending_reset
        next_obs = np.zeros_like(obs)
        new_obs = np.zeros_like(obs)
        for e in range(envs):
            if pending_reset[e]:  # a reset step
                reward[e] = 0.0
                frames[e] = [rng.integers(1, 255, shape, dtype=np.uint8)]
                t_in[e] = 0
                pending_reset[e] = False
                next_obs[e] = new_obs[e] = stack_of(frames[e])
                continue
            frames[e].append(rng.integers(1, 255, shape, dtype=np.uint8))
            t_in[e] += 1
            term[e] = rng.random() < 0.08
            trunc[e] = not term[e] and t_in[e] >= time_limit
            next_obs[e] = stack_of(frames[e])
            if (term[e] or trunc[e]) and not next_step:
                frames[e] = [rng.integers(1, 255, shape, dtype=np.uint8)]
                t_in[e] = 0
            elif term[e] or trunc[e]:
                pending_reset[e] = True
            new_obs[e] = stack_of(frames[e])
        rows.append((Transition(obs, action.astype(np.int32), reward, next_obs, term, trunc), valid if next_step else None))
        obs = new_obs
    return rows


def reference_item(rows, t: int, e: int, n: int):
    """The n-step item of step t, env e: (obs, reward sum, bootstrap obs, discount)."""
    total, k = 0.0, 0
    for j in range(n):
        r = rows[t + j][0]
        total += GAMMA**j * float(r.reward[e])
        k = j + 1
        if r.terminated[e] or r.truncated[e]:
            break
    last = rows[t + k - 1][0]
    discount = 0.0 if last.terminated[e] else GAMMA**k
    return rows[t][0].obs[e], total, last.next_obs[e], discount


def filled_buffer(rows, layout, prioritized=False):
    to_jnp = lambda row: jax.tree.map(jnp.asarray, row)  # noqa: E731
    state = frame_replay.init(layout, to_jnp(rows[0][0]), prioritized)
    add = jax.jit(lambda s, r, v: frame_replay.add(layout, s, r, v))
    for row, valid in rows:
        state = add(state, to_jnp(row), valid)
    return state


@pytest.mark.parametrize("next_step", [False, True])
@pytest.mark.parametrize("n", [1, 3])
def test_every_sampleable_item_matches_the_reference(next_step, n):
    """Wrapped buffer, stacks of 4 across episode starts, truncations and terminations, reset
    steps: each sampleable valid (row, env) gives the reference item; rows that are not
    sampleable are exactly the newest n and the oldest S - 1."""
    steps, envs, rows_cap, stack, limit = 90, 3, 40, 4, 7
    rows = rollout(steps, envs, stack, limit, next_step, seed=n + 10 * next_step)
    layout = frame_replay.make_layout(rows_cap, stack, n, not next_step, limit)
    state = filled_buffer(rows, layout)
    count = int(frame_replay.num_sampleable(layout, state))
    assert count == rows_cap - n - (stack - 1)
    first_step = steps - rows_cap + (stack - 1)  # the oldest sampleable step
    ts = np.arange(first_step, first_step + count)
    r_idx = jnp.asarray(np.repeat(ts % rows_cap, envs))
    e_idx = jnp.asarray(np.tile(np.arange(envs), count))
    batch = frame_replay.batch_at(layout, state, r_idx, e_idx, GAMMA)
    checked = 0
    for i, (t, e) in enumerate(zip(np.repeat(ts, envs), np.tile(np.arange(envs), count))):
        if next_step and not rows[t][1][e]:
            assert not bool(state.data.valid[t % rows_cap, e])
            continue
        obs, reward, next_obs, discount = reference_item(rows, t, e, n)
        np.testing.assert_array_equal(np.asarray(batch.obs[i]), obs)
        assert float(batch.reward[i]) == pytest.approx(reward, rel=1e-5)
        assert float(batch.discount[i]) == pytest.approx(discount, rel=1e-6)
        if discount > 0:  # after a terminal the bootstrap observation is never used
            np.testing.assert_array_equal(np.asarray(batch.next_obs[i]), next_obs)
        checked += 1
    assert checked > count * envs * 0.8


@pytest.mark.parametrize("next_step", [False, True])
def test_uniform_sampling_covers_the_valid_rows_only(next_step):
    steps, envs, rows_cap, stack, n = 70, 2, 30, 4, 2
    rows = rollout(steps, envs, stack, 6, next_step, seed=3)
    layout = frame_replay.make_layout(rows_cap, stack, n, not next_step, 6)
    state = filled_buffer(rows, layout)
    r, e = jax.jit(lambda k: frame_replay.sample_indices(layout, state, k, 20_000))(jax.random.key(0))
    r, e = np.asarray(r), np.asarray(e)
    start = int(frame_replay.oldest_sampleable(layout, state))
    offset = (r - start) % rows_cap
    assert offset.max() < int(frame_replay.num_sampleable(layout, state))
    valid = np.asarray(state.data.valid)
    assert valid[r, e].all()
    expected = {(int(a), int(b)) for a in range(rows_cap) for b in range(envs)
                if (a - start) % rows_cap < int(frame_replay.num_sampleable(layout, state)) and valid[a, b]}  # fmt: skip
    counts = {}
    for pair in zip(r.tolist(), e.tolist()):
        counts[pair] = counts.get(pair, 0) + 1
    assert set(counts) == expected
    mean = 20_000 / len(expected)
    assert max(counts.values()) < 1.5 * mean and min(counts.values()) > 0.5 * mean


@pytest.mark.parametrize("next_step", [False, True])
def test_priority_tree_holds_exactly_the_sampleable_valid_rows(next_step):
    from purejaxdqn.algorithm import prioritized

    steps, envs, rows_cap, stack, n = 75, 3, 30, 4, 3
    rows = rollout(steps, envs, stack, 5, next_step, seed=4)
    layout = frame_replay.make_layout(rows_cap, stack, n, not next_step, 5)
    state = filled_buffer(rows, layout, prioritized=True)
    p = np.asarray(prioritized.get(state.priorities, jnp.arange(rows_cap * envs))).reshape(rows_cap, envs)
    start = int(frame_replay.oldest_sampleable(layout, state))
    count = int(frame_replay.num_sampleable(layout, state))
    in_region = ((np.arange(rows_cap) - start) % rows_cap < count)[:, None]
    np.testing.assert_array_equal(p > 0, in_region & np.asarray(state.data.valid))


def test_cut_episodes_drops_the_windows_that_reach_the_lost_observation():
    steps, envs, rows_cap, n = 20, 2, 30, 3
    rows = rollout(steps, envs, 1, 50, False, seed=5)
    layout = frame_replay.make_layout(rows_cap, 1, n, True, 50)
    state = frame_replay.cut_episodes(layout, filled_buffer(rows, layout))
    valid = np.asarray(state.data.valid)
    assert not valid[steps - n : steps].any() and valid[: steps - n].all()
    assert np.asarray(state.next_first).all()


def test_frames_match_pairs_on_minatar_rows():
    """The same rows written to both layouts give the same training items at every index both
    can sample. The layouts differ in what they can sample: frames needs row t + n stored (the
    bootstrap frame), pairs only row t + n - 1, so frames waits one row longer for the newest."""
    from purejaxdqn.envs import make_vec_env

    envs, steps, n, cap = 4, 160, 3, 50
    venv = make_vec_env("Breakout-MinAtar", envs, time_limit=12)
    obs, env_state = venv.reset(jax.random.key(1))
    step = jax.jit(venv.step)
    rows, key = [], jax.random.key(2)
    for _ in range(steps):
        key, a_key, s_key = jax.random.split(key, 3)
        action = jax.random.randint(a_key, (envs,), 0, venv.num_actions)
        res = step(s_key, env_state, action)
        rows.append(Transition(obs, action, res.reward, res.next_obs, res.terminated, res.truncated))
        obs, env_state = res.obs, res.env_state
    assert any(bool(r.truncated.any()) for r in rows) and any(bool(r.terminated.any()) for r in rows)  # both ends
    rows = [(row, None) for row in rows]
    layout = frame_replay.make_layout(cap, 1, n, True, venv.max_episode_steps)
    frames = filled_buffer(rows, layout)
    pairs = replay.init(rows[0][0], cap)
    for row, _ in rows:
        pairs = replay.add(pairs, row, n)
    count = int(frame_replay.num_sampleable(layout, frames))
    assert count == int(replay.num_sampleable(pairs, n)) - 1  # the newest row: no bootstrap frame yet
    start = int(frame_replay.oldest_sampleable(layout, frames))
    r_idx = jnp.asarray(np.repeat((start + np.arange(count)) % cap, envs))
    e_idx = jnp.asarray(np.tile(np.arange(envs), count))
    a = frame_replay.batch_at(layout, frames, r_idx, e_idx, GAMMA)
    b = replay.nstep_batch(pairs, r_idx, e_idx, GAMMA, n)
    for name in ("obs", "action", "reward", "discount", "index"):
        np.testing.assert_allclose(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), err_msg=name)
    used = np.asarray(a.discount) > 0
    np.testing.assert_array_equal(np.asarray(a.next_obs)[used], np.asarray(b.next_obs)[used])
    # half, plus the ring of final observations: 50 // 12 + 2 slots for 50 rows at time limit 12
    assert frames.data.frame.nbytes + frames.final.nbytes == pytest.approx(0.5 * (1 + 6 / 50) * pairs.data.obs.nbytes * 2)


LOOP = dict(env_id="Breakout-MinAtar", torso="conv", widths=(32,), num_envs=4, num_eval_envs=2, total_steps=4 * 200,
            buffer_size=400, batch_size=16, learning_starts=100, update_every=1, eval_every=400, n_step=3,
            prioritized=True, time_limit=30)  # fmt: skip


def test_the_loop_on_frames_stores_what_pairs_stores_and_stays_chunk_invariant():
    """Before learning starts both layouts act alike, so the frames buffer holds the pairs
    buffer's observations; a frames run (prioritized, 3-step) is the same in 1 chunk or 4, and a
    seed in a batch of 2 is the seed alone."""
    from purejaxdqn import Config
    from purejaxdqn.host import runner

    config = Config(**LOOP, replay_layout="frames")
    late = config.replace(learning_starts=800 - 4)
    pairs = late.replace(replay_layout="pairs")
    a = jax.device_get(runner.train_runs(pairs, *runner.make_runs(pairs)).state.replay)
    b = jax.device_get(runner.train_runs(late, *runner.make_runs(late)).state.replay)
    np.testing.assert_array_equal(a.data.obs, b.data.frame)
    for name in ("action", "reward", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(a.data, name), getattr(b.data, name))
    one = jax.device_get(runner.train_runs(config.replace(num_chunks=1), *runner.make_runs(config)).state)
    four = jax.device_get(runner.train_runs(config.replace(num_chunks=4), *runner.make_runs(config)).state)
    for x, y in zip(jax.tree.leaves((one.learner, one.replay)), jax.tree.leaves((four.learner, four.replay))):
        np.testing.assert_array_equal(x, y)
    # Uniform here: with priorities, float differences of vmapped arithmetic (1e-5 in the tree
    # after 400 steps) flip a sampled index sooner or later, and the runs part ways.
    config = config.replace(prioritized=False)
    both = runner.train_runs(config, *runner.make_runs(config.replace(seed=0), num_seeds=2))
    alone = runner.train_runs(config.replace(seed=1), *runner.make_runs(config.replace(seed=1)))
    for x, y in zip(jax.tree.leaves(jax.device_get(both.state.learner.params)), jax.tree.leaves(jax.device_get(alone.state.learner.params))):
        np.testing.assert_allclose(x[1], y[0], rtol=2e-4, atol=2e-5)


def test_clip_rewards_stores_signs_and_logs_the_real_returns():
    """With clip_rewards replay holds each reward's sign; the logged returns stay the env's. The
    two runs act alike until learning starts (the end of this run), so they see the same rewards."""
    from purejaxdqn import Config
    from purejaxdqn.host import runner

    config = Config(env_id="GaussianBandit-misc", num_envs=4, num_eval_envs=2, total_steps=400, num_chunks=1,
                    buffer_size=400, batch_size=16, learning_starts=396, eval_every=400, widths=(8,))  # fmt: skip
    raw = runner.train_runs(config, *runner.make_runs(config)).state
    clipped = runner.train_runs(config.replace(clip_rewards=True), *runner.make_runs(config)).state
    r = np.asarray(jax.device_get(raw.replay.data.reward))
    assert not np.isin(r, [-1.0, 0.0, 1.0]).all()
    np.testing.assert_array_equal(np.asarray(jax.device_get(clipped.replay.data.reward)), np.sign(r))
    np.testing.assert_allclose(np.asarray(jax.device_get(clipped.stats.return_sum)), np.asarray(jax.device_get(raw.stats.return_sum)))
