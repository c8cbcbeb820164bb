"""Action selection from Q-values, the one definition shared by training, evaluation, the GIF
renderer and `load_policy` (for C51 the network already returns the expected Q-values)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def greedy(q_values: jax.Array) -> jax.Array:
    """argmax over the last (action) axis, the first action of ties: [..., A] -> [...] int."""
    return jnp.argmax(q_values, axis=-1)


def epsilon_greedy(explore_key: jax.Array, action_key: jax.Array, q_values: jax.Array, epsilon) -> jax.Array:
    """Per row, a uniformly random action with probability `epsilon`, else the greedy one.

    Two keys, split by the caller (training and evaluation derive them differently): the coin
    is `uniform(explore_key) < epsilon`, the random action `randint(action_key, 0, A)`.
    """
    action = greedy(q_values)
    random_action = jax.random.randint(action_key, action.shape, 0, q_values.shape[-1])
    explore = jax.random.uniform(explore_key, action.shape) < epsilon
    return jnp.where(explore, random_action, action)
