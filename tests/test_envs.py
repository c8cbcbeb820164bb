"""Vectorized gymnax envs and what the loop stores: final observations at episode ends,
terminated vs truncated, and consecutive replay rows chaining obs -> next_obs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxdqn import envs as environments
from purejaxdqn.envs import gymnax_adapter
from purejaxdqn.config import Config
from purejaxdqn.algorithm.loop import make_trainer

THETA_LIMIT = 12 * 2 * np.pi / 360  # 0.2094...
X_LIMIT = 2.4


def np_cartpole_step(obs, action):
    """One Euler step of CartPole-v1 (gymnax default params), in float64 NumPy."""
    gravity, masspole, total_mass, length, force_mag, tau = 9.8, 0.1, 1.1, 0.5, 10.0, 0.02
    polemass_length = masspole * length
    out = np.empty_like(obs, dtype=np.float64)
    for i, ((x, x_dot, theta, theta_dot), a) in enumerate(zip(obs.astype(np.float64), action)):
        force = force_mag if a == 1 else -force_mag
        temp = (force + polemass_length * theta_dot**2 * np.sin(theta)) / total_mass
        thetaacc = (gravity * np.sin(theta) - np.cos(theta) * temp) / (
            length * (4.0 / 3.0 - masspole * np.cos(theta) ** 2 / total_mass)
        )
        xacc = temp - polemass_length * thetaacc * np.cos(theta) / total_mass
        out[i] = (x + tau * x_dot, x_dot + tau * xacc, theta + tau * theta_dot, theta_dot + tau * thetaacc)
    return out


def out_of_bounds(obs):
    return (np.abs(obs[..., 0]) > X_LIMIT) | (np.abs(obs[..., 2]) > THETA_LIMIT)


def rollout(venv, key, actions):
    """Jitted scan of venv.step over `actions` [T, num_envs]; returns the start obs and the steps."""

    @jax.jit
    def run(key, actions):
        reset_key, key = jax.random.split(key)
        obs, env_state = venv.reset(reset_key)

        def body(carry, action):
            env_state, key = carry
            key, step_key = jax.random.split(key)
            res = venv.step(step_key, env_state, action)
            return (res.env_state, key), (res.obs, res.next_obs, res.reward, res.terminated, res.truncated)

        return obs, jax.lax.scan(body, (env_state, key), actions)[1]

    obs0, steps = run(key, jnp.asarray(actions, jnp.int32))
    return np.asarray(obs0), [np.asarray(x) for x in steps]


def test_truncation_returns_final_observation_as_next_obs():
    """At the time limit: truncated, not terminated, next_obs is the final obs (not the reset obs)."""
    n, limit, T = 4, 5, 12
    venv = environments.make_vec_env("CartPole-v1", n)
    a = venv.adapter
    venv = venv._replace(adapter=a._replace(params=a.params.replace(max_steps_in_episode=limit), spec=a.spec._replace(max_episode_steps=limit)))
    actions = np.tile((np.arange(T) % 2)[:, None], (1, n))  # alternate: the pole stays up
    prev, (obs, next_obs, reward, terminated, truncated) = rollout(venv, jax.random.key(0), actions)
    assert not terminated.any()
    for t in range(T):
        # next_obs is the physics step from the observation acted on, ending or not.
        np.testing.assert_allclose(next_obs[t], np_cartpole_step(prev, actions[t]), rtol=1e-5, atol=1e-6)
        assert np.all(reward[t] == 1.0)
        if (t + 1) % limit == 0:
            assert truncated[t].all() and not terminated[t].any()
            assert np.all(np.any(next_obs[t] != obs[t], axis=-1))  # obs is already the reset obs
            assert np.all(np.abs(obs[t]) <= 0.05)  # reset range
        else:
            assert not truncated[t].any()
            np.testing.assert_array_equal(next_obs[t], obs[t])
        prev = obs[t]


def test_termination_is_terminated_not_truncated_with_out_of_bounds_next_obs():
    """When the pole falls: terminated, not truncated, next_obs out of bounds, obs reset."""
    n, T = 4, 120
    venv = environments.make_vec_env("CartPole-v1", n)
    actions = np.ones((T, n), np.int32)  # always push right: the pole falls within a few dozen steps
    prev, (obs, next_obs, reward, terminated, truncated) = rollout(venv, jax.random.key(1), actions)
    assert not truncated.any()
    assert terminated.any(axis=0).all()  # every env fell at least once
    for t in range(T):
        np.testing.assert_allclose(next_obs[t], np_cartpole_step(prev, actions[t]), rtol=1e-5, atol=1e-6)
        ended = terminated[t]
        np.testing.assert_array_equal(ended, out_of_bounds(next_obs[t]))
        assert np.all(np.abs(obs[t][ended]) <= 0.05)
        np.testing.assert_array_equal(next_obs[t][~ended], obs[t][~ended])
        prev = obs[t]


def test_minatar_observations_are_stored_as_uint8_exactly():
    """MinAtar storage dtype is uint8 and its 0/1 observation planes cast to it losslessly."""
    venv = environments.make_vec_env("Breakout-MinAtar", 2)
    assert venv.obs_dtype == np.uint8
    obs, _ = jax.jit(venv.reset)(jax.random.key(0))
    obs = np.asarray(obs)
    assert set(np.unique(obs)) <= {0.0, 1.0} and obs.any()
    np.testing.assert_array_equal(obs.astype(np.uint8).astype(obs.dtype), obs)
    assert environments.make_vec_env("CartPole-v1", 2).obs_dtype == np.float32


def test_unsupported_env_id_raises():
    """make_vec_env refuses ids outside SUPPORTED_ENV_IDS."""
    with pytest.raises(ValueError):
        environments.make_vec_env("NotAnEnv-v0", 2)


# buffer_size 360 -> 90 rows; 500 iterations leave the write pointer at 500 % 90 = 50, mid-buffer.
# A uniformly random policy (epsilon 1 throughout) keeps episodes short, so the buffer holds many ends.
SMALL = Config(
    total_steps=2000, num_envs=4, num_eval_envs=2, buffer_size=360, batch_size=32, learning_starts=200,
    eval_every=1000, num_chunks=1, widths=(16,), eps_start=1.0, eps_end=1.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def trained_state():
    trainer = make_trainer(SMALL)
    hp = SMALL.hparams()
    state = jax.jit(trainer.init)(jax.random.key(0), hp)
    state = jax.jit(trainer.run_chunk)(state, hp)
    return jax.device_get(state)


def test_stored_transitions_chain_obs_to_next_obs(trained_state):
    """In replay, a non-final step's next_obs is the next row's obs; a terminated one is out of bounds."""
    rb = trained_state.replay
    rows = SMALL.buffer_rows
    assert int(rb.filled) == rows and int(rb.row) == SMALL.iterations % rows == 50
    order = (int(rb.row) + np.arange(rows)) % rows  # oldest row first
    d = {f: np.asarray(v) for f, v in rb.data._asdict().items()}
    checked = ends = 0
    for a, b in zip(order[:-1], order[1:]):
        for e in range(SMALL.num_envs):
            if d["terminated"][a, e]:
                assert not d["truncated"][a, e]
                assert out_of_bounds(d["next_obs"][a, e]), (a, e)
                assert np.all(np.abs(d["obs"][b, e]) <= 0.05)  # next row starts a fresh episode
                ends += 1
            elif not d["truncated"][a, e]:
                np.testing.assert_array_equal(d["next_obs"][a, e], d["obs"][b, e])
                assert not out_of_bounds(d["next_obs"][a, e])
                checked += 1
    assert checked > 200 and ends > 5
    # The newest row chains to the observation the loop will act on next.
    last = order[-1]
    live = ~(d["terminated"][last] | d["truncated"][last])
    np.testing.assert_array_equal(d["next_obs"][last][live], np.asarray(trained_state.obs)[live])
    # Stored actions are valid, rewards are CartPole's.
    assert set(np.unique(d["action"])) <= {0, 1} and np.all(d["reward"] == 1.0)


def test_update_count_is_multiples_of_update_every_after_learning_starts(trained_state):
    """Gradient updates in the run == multiples of update_every in [learning_starts, T]."""
    T = SMALL.actual_total_steps
    expected = sum(1 for m in range(SMALL.update_every, T + 1, SMALL.update_every) if m >= SMALL.learning_starts)
    assert int(trained_state.env_steps) == T == 2000
    assert int(trained_state.learner.updates) == expected * SMALL.gradient_steps == 181
    assert int(trained_state.stats.updates) == expected


def test_asterix_free_slot_search_returns_what_gymnax_while_loop_returns():
    """Every occupancy pattern of the 8 slots, under 32 random slot orders."""
    import itertools

    environments.make_vec_env("Asterix-MinAtar", 1)  # replaces gymnax's function, keeping it
    original = gymnax_adapter.REPLACED["asterix.while_sample_slots"]
    free_slot_search = gymnax_adapter.free_slot_search
    patterns = jnp.array(list(itertools.product([0, 1], repeat=8)))
    keys = jax.random.split(jax.random.key(0), 32)
    both = [jax.jit(jax.vmap(jax.vmap(f, (None, 0)), (0, None)))(keys, patterns) for f in (original, free_slot_search)]
    for a, b in zip(*both, strict=True):
        np.testing.assert_array_equal(a, b)
