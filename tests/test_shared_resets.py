"""Shared (optimistic) resets, `--reset-ratio`: a batch of envs makes ceil(n / ratio) resets per
step and the envs that end take them in turn; against a NumPy reference of a toy family."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxdqn.envs import make_vec_env, shares_resets
from purejaxdqn.envs.protocol import Parts, Timed, shared_resets_step

LIMIT = 4  # the toy's time limit, counted by the protocol (a Timed state)


def toy_reset(key):
    x = jax.random.uniform(key, (), minval=-1.0, maxval=1.0)  # every reset a distinct start
    return x[None], x


def toy_step(key, x, action):
    """x moves by the action; at +-3 the episode ends (terminated at +3, truncated at -3)."""
    nx = x + action.astype(jnp.float32) - 1.0
    return nx[None], nx, nx * 2.0, nx >= 3.0, nx <= -3.0


PARTS = Parts(toy_reset, toy_step, LIMIT)


def reference(x, t, action):
    """NumPy: the advanced step of each env (before any reset)."""
    nx = x + action.astype(np.float32) - np.float32(1.0)
    t = t + 1
    terminated = nx >= 3.0
    truncated = ((nx <= -3.0) | (t >= LIMIT)) & ~terminated
    return nx, t, nx * np.float32(2.0), terminated, truncated


@pytest.mark.parametrize("num_envs,num_resets", [(7, 3), (8, 1), (5, 5), (16, 2)])
def test_ended_envs_take_the_resets_in_turn_and_the_rest_step_on(num_envs, num_resets):
    rng = np.random.default_rng(num_envs * 10 + num_resets)
    step = jax.jit(shared_resets_step(PARTS, num_resets))
    for trial in range(20):
        x = rng.uniform(-3.5, 3.5, num_envs).astype(np.float32)
        t = rng.integers(0, LIMIT, num_envs).astype(np.int32)
        action = rng.integers(0, 3, num_envs).astype(np.int32)
        state = Timed(jnp.asarray(x), jnp.asarray(t))
        res = jax.device_get(step(jax.random.key(trial), state, jnp.asarray(action)))
        nx, nt, reward, terminated, truncated = reference(x, t, action)
        ended = terminated | truncated
        np.testing.assert_allclose(res.next_obs[:, 0], nx, rtol=1e-6)
        np.testing.assert_allclose(res.reward, reward, rtol=1e-6)
        np.testing.assert_array_equal(res.terminated, terminated)
        np.testing.assert_array_equal(res.truncated, truncated)
        # Envs that go on keep their own state and count.
        np.testing.assert_allclose(res.obs[~ended, 0], nx[~ended], rtol=1e-6)
        np.testing.assert_array_equal(res.env_state.t[~ended], nt[~ended])
        # Envs that end start a fresh episode: count 0, the observation its state's.
        np.testing.assert_array_equal(res.env_state.t[ended], 0)
        np.testing.assert_array_equal(res.obs[ended, 0], res.env_state.inner[ended])
        starts = res.obs[ended, 0]
        # The k-th env to end takes reset k mod num_resets: distinct resets while they last, then
        # the same ones again in the same order.
        for k in range(len(starts)):
            for j in range(k):
                assert (starts[k] == starts[j]) == (k % num_resets == j % num_resets), (k, j, starts)
        # Every start is a reset's (in [-1, 1)), never an advanced state carried over.
        assert np.all(np.abs(starts) <= 1.0)


def test_the_families_that_share_resets_are_those_whose_adapter_gives_parts():
    assert shares_resets("Snake-v1") and shares_resets("MiniGrid-Empty-5x5") and shares_resets("Craftax-Classic-Symbolic-v1")
    assert not shares_resets("CartPole-v1") and not shares_resets("Breakout") and not shares_resets("gymnasium:CartPole-v1")
    assert hasattr(make_vec_env("Snake-v1", 2).adapter, "parts")
    assert not hasattr(make_vec_env("CartPole-v1", 2).adapter, "parts")


def test_training_envs_share_resets_as_told_and_evaluation_makes_one_per_step():
    from purejaxdqn.config import Config
    from purejaxdqn.envs import env_from_config

    config = Config(env_id="Snake-v1", num_envs=8, reset_ratio=4)
    assert env_from_config(config, 8).reset_ratio == 4
    assert env_from_config(config, 6, role="eval").reset_ratio == 6
    assert env_from_config(Config(), 6, role="eval").reset_ratio == 1  # gymnax: its own step resets


def test_an_evaluation_with_one_reset_per_step_returns_what_a_reset_per_env_does():
    """Evaluation counts each env's first episode only, so one reset per step changes nothing."""
    from purejaxdqn.algorithm.evaluation import make_episode_returns

    own = make_vec_env("Minesweeper-v0", 8, time_limit=30)
    apply = lambda params, obs: jax.random.normal(jax.random.key(0), (obs.shape[0], own.num_actions)) + obs[:, :own.num_actions]  # noqa: E731
    returns = [jax.jit(make_episode_returns(apply, v, 8, epsilon=0.3))(None, jax.random.key(3))
               for v in (own, own._replace(reset_ratio=8))]  # fmt: skip
    np.testing.assert_array_equal(*returns)
