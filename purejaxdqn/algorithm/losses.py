"""TD targets and losses: the RL math, as small pure functions over arrays.

Bootstrapping is cut only on `terminated`. A time-limit truncation is not a terminal: its
target bootstraps from the stored next observation (the episode's final observation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from purejaxdqn.algorithm import acting


def next_action(next_q_target: jax.Array, next_q_online: jax.Array | None, mask: jax.Array | None = None) -> jax.Array:
    """The bootstrap action: argmax_a Q_target, or with Double DQN argmax_a Q_online, over the
    actions `mask` allows in the next state (all without one; see acting.py)."""
    return acting.greedy(next_q_target if next_q_online is None else next_q_online, mask)


def bootstrap_value(next_q_target: jax.Array, next_q_online: jax.Array | None, mask: jax.Array | None = None) -> jax.Array:
    """Value of the next state: max_a Q_target, or with Double DQN Q_target at argmax_a
    Q_online, a ranging over the actions `mask` allows."""
    if next_q_online is None:
        return acting.masked(next_q_target, mask).max(axis=-1)
    best = next_action(next_q_target, next_q_online, mask)
    return jnp.take_along_axis(next_q_target, best[:, None], axis=-1)[:, 0]


def td_target(reward, terminated, gamma, next_value) -> jax.Array:
    """r + gamma * (1 - terminated) * V(s'). Truncated steps bootstrap (terminated is False)."""
    return bootstrapped_target(reward, gamma * (1.0 - terminated.astype(jnp.float32)), next_value)


def bootstrapped_target(reward, discount, next_value) -> jax.Array:
    """reward + discount * V(s'): the target of a replay item (replay.Batch), where `reward`
    is the (n-step) reward sum and `discount` is gamma^k, or 0 after a terminal."""
    return reward + discount * next_value


def huber(x: jax.Array, delta) -> jax.Array:
    """0.5 x^2 inside |x| <= delta, delta (|x| - delta/2) outside."""
    abs_x = jnp.abs(x)
    quadratic = jnp.minimum(abs_x, delta)
    return 0.5 * quadratic**2 + delta * (abs_x - quadratic)


def td_loss(td_error: jax.Array, kind: str, huber_delta, weight: jax.Array | None = None) -> jax.Array:
    """Mean TD loss over the batch: 'huber' or 'mse' (0.5 x^2); with `weight` (importance
    weights of prioritized replay) the mean of the weighted per-item losses."""
    if weight is not None:
        items = huber(td_error, huber_delta) if kind == "huber" else 0.5 * td_error**2
        return jnp.mean(weight * items)
    if kind == "huber":
        return huber(td_error, huber_delta).mean()
    return 0.5 * jnp.mean(td_error**2)
