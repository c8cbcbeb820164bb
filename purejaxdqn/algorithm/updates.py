"""Stage 3 of the loop, learning from replay: gradient updates on sampled batches, with the
per-chunk statistics they add to. Shared by the compiled loop (loop.py: env steps and updates
in one scan) and the actor-learner's learner (ingest.py: rows from host actors, then the
updates they are due).

`make_updates` binds a run's static settings; its functions take any state NamedTuple with the
fields `env_steps`, `learner`, `replay` and `stats` (loop.TrainState, ingest.LearnerState).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from purejaxdqn.algorithm.replay import Replay
from purejaxdqn.config import Config, HParams


class ChunkStats(NamedTuple):
    """Statistics of the current chunk, reset at each chunk start; never fed back into training.
    The sums are scalars, or with `log_every` one entry per window of the chunk ([log_windows])."""

    updates: jax.Array
    loss_sum: jax.Array
    q_sum: jax.Array
    episodes: jax.Array
    return_sum: jax.Array
    length_sum: jax.Array
    nonfinite_step: jax.Array  # int32: env step of the first NaN/inf loss in the chunk, -1 if none
    params_finite: jax.Array  # bool: all online parameters finite at the chunk's end

    @classmethod
    def fresh(cls, windows: int = 1) -> "ChunkStats":
        zeros = partial(jnp.zeros, () if windows == 1 else (windows,))
        return cls(
            zeros(dtype=jnp.int32), zeros(dtype=jnp.float32), zeros(dtype=jnp.float32), zeros(dtype=jnp.int32),
            zeros(dtype=jnp.float32), zeros(dtype=jnp.int32), jnp.int32(-1), jnp.bool_(True),
        )  # fmt: skip


def window_add(config: Config, env_steps, total, value):
    """`total + value`, into the logging window (`log_every`) of the env step counter
    `env_steps` (after the step the value belongs to) where the chunk has several."""
    if config.log_windows == 1:
        return total + value
    window = ((env_steps - 1) % config.chunk_steps) // config.log_every
    return jnp.where(jnp.arange(config.log_windows) == window, total + value, total)  # fuses: no scatter


class Updates(NamedTuple):
    one_update: Callable  # (state, carry, key, hp, active=None) -> carry
    learn: Callable  # (state, num_updates, hp, update_key) -> state
    with_learning: Callable  # (state, carry) -> state


def make_updates(config: Config, update: Callable, replay: Replay, placed: Callable = lambda tree: tree) -> Updates:
    """The update functions of a run: `update` is learner.make_update's, `replay` the bound
    replay, `placed` lays parameter trees out on a model axis (identity without one)."""
    c = config
    # Update rounds one vectorized step can cross: with at most one, the updates of a step are
    # a `lax.cond` (taken or not) instead of a loop with a traced trip count.
    max_updates = -(-c.num_envs // c.update_every) * c.gradient_steps

    def one_update(state, carry, key, hp: HParams, active=None):
        """One gradient update on a fresh batch, then the target update. Only what an update
        changes is carried (the priority tree, not the transitions), so the replay buffer is
        never copied in and out of a loop or branch. A traced `active` False (a round before
        `learning_starts`, static loop) computes the update and keeps the carry as it was."""
        learner, tree, stats = jax.lax.optimization_barrier(carry)  # tree: the priority tree, or None
        replay_state = state.replay._replace(priorities=tree)
        batch = replay.sample(replay_state, key, hp, state.env_steps)
        new_learner, metrics = update(learner, batch, hp)
        new_learner = placed(new_learner)
        new_tree = replay.update_priorities(replay_state, batch, metrics.priority_signal, hp, active).priorities
        first_bad = (stats.nonfinite_step < 0) & ~jnp.isfinite(metrics.loss)
        add = partial(window_add, c, state.env_steps)
        new_stats = stats._replace(
            updates=add(stats.updates, 1),
            loss_sum=add(stats.loss_sum, metrics.loss),
            q_sum=add(stats.q_sum, metrics.q_mean),
            nonfinite_step=jnp.where(first_bad, state.env_steps, stats.nonfinite_step),
        )
        new = jax.lax.optimization_barrier((new_learner, new_tree, new_stats))
        if active is None:
            return new
        new_learner, new_tree, new_stats = new
        new_learner, new_stats = jax.tree.map(lambda a, b: jnp.where(active, a, b), (new_learner, new_stats), (learner, stats))
        return new_learner, new_tree, new_stats

    def with_learning(state, carry):
        learner, tree, stats = carry
        return state._replace(learner=learner, replay=state.replay._replace(priorities=tree), stats=stats)

    def learn(state, num_updates, hp: HParams, update_key):
        """`num_updates` (traced) updates: a `lax.cond` where one step can cross at most one
        round of one update, else a loop of traced length."""
        carry = (state.learner, state.replay.priorities, state.stats)

        def body(i, x):
            return one_update(state, x, jax.random.fold_in(update_key, i), hp)

        if max_updates == 1:
            carry = jax.lax.cond(num_updates > 0, lambda x: body(0, x), lambda x: x, carry)
        else:
            carry = jax.lax.fori_loop(0, num_updates, body, carry)
        return with_learning(state, carry)

    return Updates(one_update, learn, with_learning)
