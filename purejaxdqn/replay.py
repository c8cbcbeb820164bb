"""Uniform replay on the device: a ring buffer of fixed-shape arrays, written and sampled in jit.

Layout is time-major, one column per env: every leaf has shape `[rows, num_envs, ...]` and
each vectorized env step writes one row. Consecutive rows of a column are consecutive steps
of one env (what n-step returns need), a row write is one `dynamic_update_slice`, and under a
data-parallel mesh the env axis shards without any change here.

Pure functions over an explicit state (`init`, `add`, `sample`), in the style of optax.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array  # the observation the step led to (the final one at an episode end)
    terminated: jax.Array  # natural episode end: no bootstrap
    truncated: jax.Array  # time-limit end: bootstrap from next_obs


class ReplayState(NamedTuple):
    data: Transition  # each leaf [rows, num_envs, ...]
    row: jax.Array  # int32: the row the next `add` writes
    filled: jax.Array  # int32: rows holding data (grows to `rows`, then stays)


def init(example: Transition, rows: int) -> ReplayState:
    """An empty buffer of `rows` rows shaped like `example` (one row: leaves `[num_envs, ...]`).

    Leaves keep the example's dtypes, so observations are stored in their own dtype.
    """
    data = jax.tree.map(lambda x: jnp.zeros((rows, *x.shape), x.dtype), example)
    return ReplayState(data=data, row=jnp.int32(0), filled=jnp.int32(0))


def add(state: ReplayState, row: Transition) -> ReplayState:
    """Write one row (one transition per env) at the write pointer, overwriting the oldest."""
    rows = state.data.obs.shape[0]
    data = jax.tree.map(
        lambda buf, x: jax.lax.dynamic_update_index_in_dim(buf, x.astype(buf.dtype), state.row, 0),
        state.data,
        row,
    )
    return ReplayState(
        data=data,
        row=(state.row + 1) % rows,
        filled=jnp.minimum(state.filled + 1, rows),
    )


def sample_indices(state: ReplayState, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Uniform (row, env) indices over the filled part of the buffer."""
    num_envs = state.data.obs.shape[1]
    flat = jax.random.randint(key, (batch_size,), 0, state.filled * num_envs)
    return flat // num_envs, flat % num_envs


def gather(state: ReplayState, rows: jax.Array, envs: jax.Array) -> Transition:
    """The transitions at (row, env) index pairs."""
    num_envs = state.data.obs.shape[1]
    flat = rows * num_envs + envs
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:])[flat], state.data)


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> Transition:
    """A uniform batch of `batch_size` transitions from the filled part. Needs `filled > 0`."""
    return gather(state, *sample_indices(state, key, batch_size))
