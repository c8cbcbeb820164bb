"""Evaluation: whole episodes of the (nearly) greedy policy on separate eval envs, inside the
jitted loop.

With `epsilon` > 0 an eval env takes a random action with that probability (Dopamine's
evaluation protocol uses 0.001): in a deterministic env a greedy policy plays the same episode
on every eval env, so N episodes would be one sample counted N times."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from purejaxdqn.algorithm import acting
from purejaxdqn.envs import VecEnv


def make_episode_returns(apply_fn: Callable, venv: VecEnv, num_episodes: int, epsilon: float = 0.0) -> Callable:
    """`episode_returns(params, key) -> returns[num_episodes]`: one episode per eval env,
    epsilon-greedy with the (static) `epsilon`.

    Steps all eval envs until every one has finished its first episode (the env's time limit
    bounds this), counting rewards only up to each env's own episode end.
    """

    def episode_returns(params, key: jax.Array) -> jax.Array:
        reset_key, key = jax.random.split(key)
        obs, env_state = venv.reset(reset_key, num_episodes)
        carry = (obs, env_state, key, jnp.zeros(num_episodes), jnp.zeros(num_episodes, bool), jnp.int32(0))

        def not_finished(carry):
            *_, done, t = carry
            return jnp.logical_and(~done.all(), t < venv.max_episode_steps)

        def step(carry):
            obs, env_state, key, returns, done, t = carry
            key, step_key = jax.random.split(key)
            q_values = apply_fn(params, obs)
            if epsilon > 0:  # static: with 0 no random numbers are drawn at all
                explore_key, action_key = jax.random.split(jax.random.fold_in(step_key, 1))
                action = acting.epsilon_greedy(explore_key, action_key, q_values, epsilon, venv.action_mask(obs))
            else:
                action = acting.greedy(q_values, venv.action_mask(obs))
            res = venv.step(step_key, env_state, action)
            returns = returns + jnp.where(done, 0.0, res.reward)
            done = done | res.terminated | res.truncated
            return res.obs, res.env_state, key, returns, done, t + 1

        return jax.lax.while_loop(not_finished, step, carry)[3]

    return episode_returns


def make_evaluate(
    apply_fn: Callable, venv: VecEnv, num_episodes: int, epsilon: float = 0.0, axis_name: str | None = None
) -> Callable:
    """`evaluate(params, key) -> (mean return, min return)` over `num_episodes` episodes.

    With `axis_name`, each data-parallel device plays its own `num_episodes` and the statistics
    are over all devices' episodes.
    """
    episode_returns = make_episode_returns(apply_fn, venv, num_episodes, epsilon)

    def evaluate(params, key: jax.Array):
        returns = episode_returns(params, key)
        if axis_name is None:
            return returns.mean(), returns.min()
        return jax.lax.pmean(returns.mean(), axis_name), jax.lax.pmin(returns.min(), axis_name)

    return evaluate
