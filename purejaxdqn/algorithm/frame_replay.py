"""Replay that stores each observation once: the 'frames' layout (`--replay-layout frames`).

The 'pairs' layout (replay.py) stores every transition's `obs` and `next_obs`. Consecutive
steps of one env share observations, so here row t of a column stores only the observation
acted on at step t (with a frame-stacked env only its newest frame: the stack's older frames
are the rows before), and a sampled transition's next observation is rebuilt from row t + 1.
The same time-major `[rows, num_envs, ...]` ring as replay.py, so n-step windows, prioritized
replay and data-parallel shards work unchanged. Three flags per row say what the rows are:

- `first`: the row's observation begins an episode. A rebuilt stack takes no frame from
  before it (those are zeros, as the ALE's own stack at a reset).
- `valid`: the row is a transition of the game. An env that resets on the step after an end
  (the ALE's NEXT_STEP mode) returns, on that *reset step*, the next episode's first
  observation for an ignored action: its row holds the ended episode's final observation (the
  next observation of the row before) and is never sampled, never part of an n-step window
  (a window stops at the end before it) and never in the priority tree.
- an env that resets within the step (gymnax and the other JAX families) loses the final
  observation from the next row: after a truncation the TD target bootstraps from it, so it
  goes to a small per-column ring of final observations (`final`), one slot per truncation.
  An episode truncates after `time_limit` steps, so a column's `rows` rows hold at most
  rows // time_limit + 1 truncations: the ring has rows // time_limit + 2 slots. After a
  termination the next observation is never used (discount 0).

Sampleable start rows: every filled row but the newest n (row t + n holds the bootstrap
frame), and once the ring has wrapped not the oldest S - 1 either (their stacks would reach
overwritten rows), for a stack of S frames.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from purejaxdqn.algorithm import prioritized
from purejaxdqn.algorithm.nstep import nstep_return
from purejaxdqn.algorithm.transitions import Batch, Transition

# Uniform sampling draws this many candidates per item and keeps the first valid one: exactly
# uniform over the valid rows unless all are reset steps (probability p^4 for a fraction p of
# reset steps, about one per episode), when a neighbour of the first is taken instead.
CANDIDATES = 4


class FrameData(NamedTuple):
    frame: jax.Array  # [rows, E, *frame_shape] the observation acted on (a stack's newest frame)
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    first: jax.Array  # bool: the observation begins an episode
    valid: jax.Array  # bool: a transition of the game (False: a reset step)
    final_slot: jax.Array  # int32: after a truncation, the ring slot of the final observation


class FrameReplayState(NamedTuple):
    data: FrameData
    final: jax.Array  # [slots, E, *obs_shape] final observations of truncated episodes
    final_next: jax.Array  # [E] int32: the slot the next truncation writes
    next_first: jax.Array  # [E] bool: the next row's observation begins an episode
    row: jax.Array
    filled: jax.Array
    priorities: prioritized.SumTree | None = None


class Layout(NamedTuple):
    """The static facts of a frames buffer."""

    rows: int
    stack: int  # S: frames on the observation's last axis (1: no stack)
    n_step: int
    resets_within_step: bool  # the env's obs after an end is already the next episode's
    slots: int  # ring slots for final observations (0 without resets within the step)


def layout_for(config, spec) -> Layout | None:
    """The frames layout of a run of `config` on an env of `spec`, or None (the pairs layout)."""
    if not config.stores_frames(spec.frame_stack):
        return None
    return make_layout(config.buffer_rows, spec.frame_stack, config.n_step, not spec.next_step_reset, spec.max_episode_steps)


def make_layout(rows: int, stack: int, n_step: int, resets_within_step: bool, time_limit: int) -> Layout:
    slots = rows // max(time_limit, 1) + 2 if resets_within_step else 0
    return Layout(rows, stack, n_step, resets_within_step, slots)


def frame_of(layout: Layout, obs: jax.Array) -> jax.Array:
    """What a row stores of `obs` [E, ...]: the newest frame of a stack, else all of it."""
    return obs[..., -1] if layout.stack > 1 else obs


def init(layout: Layout, example: Transition, prioritized_replay: bool = False) -> FrameReplayState:
    """An empty buffer for rows like `example` (leaves `[E, ...]`); the first row begins episodes."""
    rows, envs = layout.rows, example.obs.shape[0]
    zeros = lambda x: jnp.zeros((rows, *x.shape), x.dtype)  # noqa: E731
    flags = jnp.zeros((rows, envs), bool)
    data = FrameData(
        frame=zeros(frame_of(layout, example.obs)), action=zeros(example.action), reward=zeros(example.reward),
        terminated=flags, truncated=flags, first=flags, valid=flags, final_slot=jnp.zeros((rows, envs), jnp.int32),
    )  # fmt: skip
    final = jnp.zeros((max(layout.slots, 1), *example.obs.shape), example.obs.dtype)  # 1: orbax saves no empty array
    tree = prioritized.init(rows * envs) if prioritized_replay else None
    return FrameReplayState(data, final, jnp.zeros(envs, jnp.int32), jnp.ones(envs, bool), jnp.int32(0), jnp.int32(0), tree)


def add(layout: Layout, state: FrameReplayState, step: Transition, valid: jax.Array | None = None) -> FrameReplayState:
    """Write one row. `valid` False (None: all True) marks the reset steps of a NEXT_STEP env."""
    rows, envs = layout.rows, state.next_first.shape[0]
    valid = jnp.ones(envs, bool) if valid is None else valid
    ended = step.terminated | step.truncated
    final, final_next, slot = state.final, state.final_next, state.final_next
    if layout.resets_within_step:  # keep a truncated episode's final observation
        cols = jnp.arange(envs)
        final = final.at[slot, cols].set(step.next_obs.astype(final.dtype))
        final_next = jnp.where(step.truncated, (slot + 1) % layout.slots, slot)
    new = FrameData(
        frame_of(layout, step.obs), step.action, step.reward, step.terminated, step.truncated,
        state.next_first, valid, slot,
    )  # fmt: skip
    data = jax.tree.map(
        lambda buf, x: jax.lax.dynamic_update_index_in_dim(buf, x.astype(buf.dtype), state.row, 0), state.data, new
    )
    next_first = ~valid | (ended if layout.resets_within_step else False)
    full_before = state.filled == rows
    filled = jnp.minimum(state.filled + 1, rows)
    tree = state.priorities
    if tree is not None:
        tree = _add_priorities(layout, tree, data.valid, state.row, filled, full_before, envs)
    return FrameReplayState(data, final, final_next, next_first, (state.row + 1) % rows, filled, tree)


def _add_priorities(layout: Layout, tree, valid, row, filled, full_before, envs: int):
    """The tree after writing `row`: it waits at 0; the row n back has its bootstrap frame now
    and enters at the max priority (0 for a reset step); the S - 1 rows after it lose their
    stacks' history once the ring wraps (0)."""
    rows, n, s = layout.rows, layout.n_step, layout.stack
    cols = jnp.arange(envs, dtype=jnp.int32)
    complete = (row - n) % rows
    p = jnp.where((filled > n) & valid[complete], tree.max_priority, 0.0)
    index = [row * envs + cols, complete * envs + cols]
    value = [jnp.zeros(envs), p]
    for j in range(1, s):
        lost = (row + j) % rows
        index.append(lost * envs + cols)
        value.append(jnp.where(full_before, 0.0, prioritized.get(tree, lost * envs + cols)))
    return prioritized.set(tree, jnp.concatenate(index), jnp.concatenate(value))


def num_sampleable(layout: Layout, state: FrameReplayState) -> jax.Array:
    """Start rows with their window, bootstrap frame and stack history in the buffer."""
    lost = jnp.where(state.filled == layout.rows, layout.stack - 1, 0)
    return jnp.maximum(state.filled - layout.n_step - lost, 0)


def oldest_sampleable(layout: Layout, state: FrameReplayState) -> jax.Array:
    lost = jnp.where(state.filled == layout.rows, layout.stack - 1, 0)
    return (state.row - state.filled + lost) % layout.rows


def sample_indices(layout: Layout, state: FrameReplayState, key: jax.Array, batch_size: int):
    """Uniform (row, env) pairs over the sampleable valid rows (see CANDIDATES)."""
    envs = state.next_first.shape[0]
    count = num_sampleable(layout, state)
    flat = jax.random.randint(key, (batch_size, CANDIDATES), 0, count * envs)
    offset = flat // envs
    cols = flat % envs
    start = oldest_sampleable(layout, state)
    ok = state.data.valid[(start + offset) % layout.rows, cols]
    pick = jnp.argmax(ok, axis=1)
    chosen = jnp.take_along_axis(offset, pick[:, None], axis=1)[:, 0]
    col = jnp.take_along_axis(cols, pick[:, None], axis=1)[:, 0]
    # None valid: a reset step's neighbours are transitions (the end before it, the first step after).
    none = ~ok.any(axis=1)
    chosen = jnp.where(none, jnp.where(offset[:, 0] + 1 < count, offset[:, 0] + 1, offset[:, 0] - 1), chosen)
    col = jnp.where(none, cols[:, 0], col)
    return (start + chosen) % layout.rows, col


def stack_at(layout: Layout, data: FrameData, rows: jax.Array, envs: jax.Array) -> jax.Array:
    """The observations acted on at (row, env): frames rows - S + 1 .. rows, zeros before an
    episode's first row; [B, *obs_shape]."""
    s = layout.stack
    if s == 1:
        return data.frame[rows, envs]
    window = (rows[:, None] + jnp.arange(1 - s, 1)) % layout.rows  # [B, S], oldest first
    cols = envs[:, None]
    first = data.first[window, cols]
    # Frame j belongs to the episode iff no later frame of the window begins one.
    later_first = jnp.flip(jnp.cumsum(jnp.flip(first, 1), 1), 1) - first
    frames = data.frame[window, cols]  # [B, S, *frame_shape]
    keep = (later_first == 0).reshape(*later_first.shape, *([1] * (frames.ndim - 2)))
    return jnp.moveaxis(jnp.where(keep, frames, 0), 1, -1)


def next_obs_at(layout: Layout, state: FrameReplayState, rows: jax.Array, envs: jax.Array) -> jax.Array:
    """The observation step (row, env) led to: row + 1's, or a truncation's kept final one."""
    after = stack_at(layout, state.data, (rows + 1) % layout.rows, envs)
    if not layout.resets_within_step:
        return after
    kept = state.final[state.data.final_slot[rows, envs], envs]
    truncated = state.data.truncated[rows, envs].reshape(-1, *([1] * (after.ndim - 1)))
    return jnp.where(truncated, kept, after)


def batch_at(layout: Layout, state: FrameReplayState, rows: jax.Array, envs: jax.Array, gamma) -> Batch:
    """Training items starting at (row, env), n-step as replay.nstep_batch."""
    d, n = state.data, layout.n_step
    window = (rows[:, None] + jnp.arange(n)) % layout.rows
    cols = envs[:, None]
    reward, discount, last = nstep_return(d.reward[window, cols], d.terminated[window, cols], d.truncated[window, cols], gamma, n)
    bootstrap_row = jnp.take_along_axis(window, last[:, None], axis=1)[:, 0]
    num_envs = state.next_first.shape[0]
    return Batch(
        obs=stack_at(layout, d, rows, envs), action=d.action[rows, envs], reward=reward,
        next_obs=next_obs_at(layout, state, bootstrap_row, envs), discount=discount, weight=None,
        index=rows * num_envs + envs,
    )  # fmt: skip


def sample_batch(layout: Layout, state: FrameReplayState, key, batch_size: int, gamma, beta=None, axis_name=None) -> Batch:
    """A training batch, uniform or prioritized, as replay.sample_batch."""
    envs = state.next_first.shape[0]
    if state.priorities is None:
        return batch_at(layout, state, *sample_indices(layout, state, key, batch_size), gamma)
    flat = prioritized.sample(state.priorities, key, batch_size, layout.rows * envs)
    batch = batch_at(layout, state, flat // envs, flat % envs, gamma)
    log_w = prioritized.log_importance_weights(state.priorities, flat, num_sampleable(layout, state) * envs, beta)
    log_max = jnp.max(log_w)
    if axis_name is not None:
        log_max = jax.lax.pmax(log_max, axis_name)
    return batch._replace(weight=jnp.exp(log_w - log_max))


def cut_episodes(layout: Layout, state: FrameReplayState) -> FrameReplayState:
    """After the envs restart (a resume of an env whose state is not saved): the newest row's
    next observation is lost, so the newest n rows (whose windows reach it) are no transitions
    any more, and the next row begins episodes. Rows not yet complete hold priority 0 and enter
    the tree at 0 (invalid) when completed."""
    recent = (state.row - 1 - jnp.arange(layout.n_step)) % layout.rows
    written = jnp.arange(layout.n_step) < state.filled
    valid = state.data.valid.at[recent].set(state.data.valid[recent] & ~written[:, None])
    envs = state.next_first.shape[0]
    return state._replace(data=state.data._replace(valid=valid), next_first=jnp.ones(envs, bool))
