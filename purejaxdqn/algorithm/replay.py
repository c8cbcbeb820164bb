"""Uniform replay on the device: a ring buffer of fixed-shape arrays, written and sampled in jit.

Layout is time-major, one column per env: every leaf has shape `[rows, num_envs, ...]` and
each vectorized env step writes one row. Consecutive rows of a column are consecutive steps
of one env (what n-step returns need), a row write is one `dynamic_update_slice`, and under a
data-parallel mesh the env axis shards without any change here.

With n-step returns a sampled start row needs the n - 1 rows after it, so the newest n - 1
rows are not sampled until later rows complete their windows. With prioritized replay a sum
tree (prioritized.py) holds one priority per (row, env), flat index `row * num_envs + env`;
a row enters the tree at the max priority once its window is complete, and holds priority 0
until then (and from the moment it is overwritten).

Pure functions over an explicit state (`init`, `add`, `sample`), in the style of optax;
`make_replay` binds a run's static settings once and adds the prioritized bookkeeping
(priority write-back, the global max priority, the beta schedule).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from purejaxdqn.algorithm import frame_replay, prioritized
from purejaxdqn.algorithm.nstep import nstep_return
from purejaxdqn.algorithm.transitions import Batch, Transition

__all__ = ["Batch", "Replay", "ReplayState", "Transition", "make_replay"]


class ReplayState(NamedTuple):
    data: Transition  # each leaf [rows, num_envs, ...]
    row: jax.Array  # int32: the row the next `add` writes
    filled: jax.Array  # int32: rows holding data (grows to `rows`, then stays)
    priorities: prioritized.SumTree | None = None  # prioritized replay only


def init(example: Transition, rows: int, prioritized_replay: bool = False) -> ReplayState:
    """An empty buffer of `rows` rows shaped like `example` (one row: leaves `[num_envs, ...]`).

    Leaves keep the example's dtypes, so observations are stored in their own dtype.
    """
    data = jax.tree.map(lambda x: jnp.zeros((rows, *x.shape), x.dtype), example)
    tree = prioritized.init(rows * example.obs.shape[0]) if prioritized_replay else None
    return ReplayState(data=data, row=jnp.int32(0), filled=jnp.int32(0), priorities=tree)


def add(state: ReplayState, row: Transition, n_step: int = 1) -> ReplayState:
    """Write one row (one transition per env) at the write pointer, overwriting the oldest."""
    rows, num_envs = state.data.obs.shape[:2]
    data = jax.tree.map(
        lambda buf, x: jax.lax.dynamic_update_index_in_dim(buf, x.astype(buf.dtype), state.row, 0),
        state.data,
        row,
    )
    filled = jnp.minimum(state.filled + 1, rows)
    tree = state.priorities
    if tree is not None:
        envs = jnp.arange(num_envs, dtype=jnp.int32)
        if n_step == 1:  # the new row is sampleable at once
            tree = prioritized.set(tree, state.row * num_envs + envs, jnp.full(num_envs, tree.max_priority))
        else:  # the new row waits; the row n - 1 back has just completed its window
            complete = (state.row - (n_step - 1)) % rows
            p = jnp.where(filled >= n_step, tree.max_priority, 0.0)
            tree = prioritized.set(
                tree,
                jnp.concatenate([state.row * num_envs + envs, complete * num_envs + envs]),
                jnp.concatenate([jnp.zeros(num_envs), jnp.full(num_envs, p)]),
            )
    return ReplayState(data=data, row=(state.row + 1) % rows, filled=filled, priorities=tree)


def num_sampleable(state: ReplayState, n_step: int = 1) -> jax.Array:
    """Rows whose n-step window is complete: all filled rows but the newest n - 1."""
    return jnp.maximum(state.filled - (n_step - 1), 0)


def sample_indices(
    state: ReplayState, key: jax.Array, batch_size: int, n_step: int = 1
) -> tuple[jax.Array, jax.Array]:
    """Uniform (row, env) indices over the sampleable part of the buffer."""
    rows, num_envs = state.data.obs.shape[:2]
    flat = jax.random.randint(key, (batch_size,), 0, num_sampleable(state, n_step) * num_envs)
    if n_step == 1:  # rows 0..filled-1 are exactly the filled ones, wrapped or not
        return flat // num_envs, flat % num_envs
    oldest = (state.row - state.filled) % rows
    return (oldest + flat // num_envs) % rows, flat % num_envs


def gather(state: ReplayState, rows: jax.Array, envs: jax.Array) -> Transition:
    """The transitions at (row, env) index pairs."""
    num_envs = state.data.obs.shape[1]
    flat = rows * num_envs + envs
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:])[flat], state.data)


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> Transition:
    """A uniform batch of `batch_size` transitions from the filled part. Needs `filled > 0`."""
    return gather(state, *sample_indices(state, key, batch_size))


def one_step_batch(step: Transition, gamma, index: jax.Array | None = None) -> Batch:
    """1-step training items from transitions: discount gamma, 0 after a terminal (the same
    arithmetic as `losses.td_target`)."""
    discount = gamma * (1.0 - step.terminated.astype(jnp.float32))
    return Batch(step.obs, step.action, step.reward, step.next_obs, discount, None, index)


def nstep_batch(state: ReplayState, rows: jax.Array, envs: jax.Array, gamma, n_step: int) -> Batch:
    """Training items starting at (row, env): n-step reward sums, cut at an episode end.

    A window stops at the first terminated or truncated step: a terminal bootstraps nothing
    (discount 0), a truncation bootstraps from that step's final observation with gamma^k.
    """
    d = state.data
    num_rows, num_envs = d.obs.shape[:2]
    if n_step == 1:
        return one_step_batch(gather(state, rows, envs), gamma, rows * num_envs + envs)
    window = (rows[:, None] + jnp.arange(n_step)) % num_rows  # [B, n]
    cols = envs[:, None]
    reward, discount, last = nstep_return(
        d.reward[window, cols], d.terminated[window, cols], d.truncated[window, cols], gamma, n_step
    )
    bootstrap_row = jnp.take_along_axis(window, last[:, None], axis=1)[:, 0]
    return Batch(
        obs=d.obs[rows, envs],
        action=d.action[rows, envs],
        reward=reward,
        next_obs=d.next_obs[bootstrap_row, envs],
        discount=discount,
        weight=None,
        index=rows * num_envs + envs,
    )


def sample_batch(
    state: ReplayState, key: jax.Array, batch_size: int, gamma, n_step: int = 1, beta=None, axis_name: str | None = None
) -> Batch:
    """A training batch: uniform, or proportional to priority (with importance weights at
    exponent `beta`) when the buffer has a priority tree. Needs a sampleable row.

    Importance weights are divided by the batch's max weight; with `axis_name` (a data axis)
    by the max over all shards' batches, so the global batch is weighted as one batch."""
    num_envs = state.data.obs.shape[1]
    if state.priorities is None:
        return nstep_batch(state, *sample_indices(state, key, batch_size, n_step), gamma, n_step)
    flat = prioritized.sample(state.priorities, key, batch_size, state.data.obs.shape[0] * num_envs)
    batch = nstep_batch(state, flat // num_envs, flat % num_envs, gamma, n_step)
    log_w = prioritized.log_importance_weights(state.priorities, flat, num_sampleable(state, n_step) * num_envs, beta)
    log_max = jnp.max(log_w)
    if axis_name is not None:
        log_max = jax.lax.pmax(log_max, axis_name)
    return batch._replace(weight=jnp.exp(log_w - log_max))


class Replay(NamedTuple):
    """The replay functions of one run, with the static settings bound (see `make_replay`)."""

    init: Callable[[Transition], ReplayState]
    add: Callable[..., ReplayState]  # (state, row, valid=None) -> state
    sample: Callable[..., Batch]  # (state, key, hp, env_steps) -> Batch
    update_priorities: Callable[..., ReplayState]  # (state, batch, td_signal, hp, active=None) -> state
    cut: Callable[[ReplayState], ReplayState]  # after the envs restart: no window crosses the cut


def make_replay(
    rows: int,
    batch_size: int,
    n_step: int = 1,
    prioritized_replay: bool = False,
    priority_eps: float = 1e-6,
    total_steps: int = 1,
    axis_name: str | None = None,
    frames: frame_replay.Layout | None = None,
) -> Replay:
    """Bind the static replay settings once: `init/add/sample/update_priorities`.

    `rows` and `batch_size` are this device's (a data-parallel shard's) own. Traced settings
    come from `hp` at call time: gamma, and for prioritized replay alpha and the start of the
    beta schedule (annealed to 1 over `total_steps` env steps). With `axis_name` (a data axis
    inside `jax.shard_map`) the prioritized bookkeeping that must be global is made global: new
    items enter every shard at the max priority over all shards, and importance weights are
    normalized by the max weight of the global batch. With `frames` (its layout) the buffer stores
    each observation once (frame_replay.py).
    """

    def init_fn(example: Transition) -> ReplayState:
        if frames is not None:
            return frame_replay.init(frames, example, prioritized_replay)
        return init(example, rows, prioritized_replay)

    def add_fn(state: ReplayState, row: Transition, valid: jax.Array | None = None) -> ReplayState:
        """Write `row`; `valid` False marks an env's reset step (only a frames buffer has them)."""
        if frames is not None:
            return frame_replay.add(frames, state, row, valid)
        assert valid is None, "an env with reset steps needs the frames layout"
        return add(state, row, n_step)

    def sample_fn(state: ReplayState, key: jax.Array, hp, env_steps) -> Batch:
        beta = prioritized.beta_at(env_steps, hp.priority_beta, total_steps) if prioritized_replay else None
        if frames is not None:
            return frame_replay.sample_batch(frames, state, key, batch_size, hp.gamma, beta, axis_name)
        return sample_batch(state, key, batch_size, hp.gamma, n_step, beta, axis_name)

    def update_priorities_fn(state: ReplayState, batch: Batch, td_signal: jax.Array, hp, active=None) -> ReplayState:
        """The sampled items' new priorities. With a traced `active` False the tree is left as it
        was: leaf 0 is rewritten with its own value (its ancestors are recomputed to the same
        sums, and no leaf exceeds the max priority), so no branch is needed."""
        if not prioritized_replay:
            return state
        new = prioritized.priorities_from_td(td_signal, hp.priority_alpha, priority_eps)
        index = batch.index
        if active is not None:
            index = jnp.where(active, index, 0)
            new = jnp.where(active, new, prioritized.get(state.priorities, jnp.zeros_like(index)))
        tree = prioritized.set(state.priorities, index, new)
        if axis_name is not None:
            tree = tree._replace(max_priority=jax.lax.pmax(tree.max_priority, axis_name))
        return state._replace(priorities=tree)

    def cut_fn(state: ReplayState) -> ReplayState:
        """After the envs restart (an env whose state a checkpoint cannot hold, resumed): the
        newest rows lose their next observations (frame_replay.cut_episodes)."""
        assert frames is not None, "only a frames buffer serves envs that restart"
        return frame_replay.cut_episodes(frames, state)

    return Replay(init_fn, add_fn, sample_fn, update_priorities_fn, cut_fn)
