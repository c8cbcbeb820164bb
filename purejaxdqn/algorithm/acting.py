"""Action selection from Q-values, the one definition shared by training, evaluation, the GIF
renderer and `load_policy` (for C51 the network already returns the expected Q-values).

`mask` (bool [..., A], from `envs.action_mask`; None for a family without masks) marks the
allowed actions: a masked action is never chosen, greedily or at random. A row with no
allowed action at all (a family's final state) counts every action as allowed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def allowed(mask: jax.Array) -> jax.Array:
    """The mask, with a row that allows nothing read as allowing everything."""
    return mask | ~mask.any(axis=-1, keepdims=True)


def masked(q_values: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Q-values with the disallowed actions at -inf (unchanged without a mask)."""
    return q_values if mask is None else jnp.where(allowed(mask), q_values, -jnp.inf)


def greedy(q_values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """argmax over the last (action) axis among the allowed actions, the first action of ties:
    [..., A] -> [...] int."""
    return jnp.argmax(masked(q_values, mask), axis=-1)


def random_action(action_key: jax.Array, shape: tuple[int, ...], num_actions: int, mask: jax.Array | None):
    """A uniformly random action per row: `randint(0, A)`, or uniform over the allowed ones."""
    if mask is None:
        return jax.random.randint(action_key, shape, 0, num_actions)
    return jax.random.categorical(action_key, jnp.where(allowed(mask), 0.0, -jnp.inf), axis=-1)


def epsilon_greedy(explore_key: jax.Array, action_key: jax.Array, q_values: jax.Array, epsilon, mask=None) -> jax.Array:
    """Per row, a uniformly random (allowed) action with probability `epsilon`, else the
    greedy one.

    Two keys, split by the caller (training and evaluation derive them differently): the coin
    is `uniform(explore_key) < epsilon`, the random action drawn with `action_key`.
    """
    action = greedy(q_values, mask)
    random = random_action(action_key, action.shape, q_values.shape[-1], mask)
    explore = jax.random.uniform(explore_key, action.shape) < epsilon
    return jnp.where(explore, random, action)


def epsilon_greedy_host(rng: np.random.Generator, greedy_actions: np.ndarray, epsilon: float, num_actions: int) -> np.ndarray:
    """`epsilon_greedy` on the host, for the actors of host envs (which have no masks): per row a
    uniformly random action with probability `epsilon`, else the greedy one, drawn with numpy's
    `rng` (on a CPU JAX's random bits cost the actor's policy three times its network)."""
    explore = rng.random(greedy_actions.shape) < epsilon
    return np.where(explore, rng.integers(0, num_actions, greedy_actions.shape), greedy_actions).astype(np.int32)
