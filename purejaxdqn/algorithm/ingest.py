"""The learner of the actor-learner (host/actor_learner.py): blocks of transitions that host
actors collected go into replay, each row followed by the updates it is due, in one jitted call.

A block holds `T` rows; row t has one transition of every env of every actor (actor i's envs
are columns i*E .. i*E + E - 1), so replay, n-step windows and priorities are laid out exactly
as in the compiled loop with `num_envs` = all actors' envs, and env steps are counted the same
way. With `rate_limit` 'held' each row is followed by the updates the compiled loop runs after
that env step (`learning_starts`, `update_every`, `gradient_steps`), so up to the actors' policy
lag this is the synchronous algorithm; 'free' ingests rows only, and `train` runs updates while
the learner waits for data.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.algorithm import acting, losses, prioritized
from purejaxdqn.algorithm import learner as learner_lib
from purejaxdqn.algorithm import replay as replay_lib
from purejaxdqn.algorithm.loop import EvalLog, num_evals
from purejaxdqn.algorithm.networks import make_network
from purejaxdqn.algorithm.schedules import multiples_crossed
from purejaxdqn.algorithm.updates import ChunkStats, make_updates, window_add
from purejaxdqn.config import Config, HParams
from purejaxdqn.envs import EnvSpec


class LearnerState(NamedTuple):
    """Everything the learner owns (what a checkpoint holds); the envs live with the actors."""

    env_steps: jax.Array  # int32: env steps ingested (summed over all envs)
    learner: learner_lib.LearnerState
    replay: replay_lib.ReplayState
    key: jax.Array
    episode_return: jax.Array  # [num_envs] return of each env's running episode
    episode_length: jax.Array  # [num_envs] int32
    stats: ChunkStats
    evals: EvalLog
    best: None = None  # (checkpointing reads it: the actor-learner keeps no best parameters)


class Program(NamedTuple):
    """The learner's pure functions for one config (jit them; `ingest` donates its state)."""

    init: Callable[[jax.Array, HParams], LearnerState]
    ingest: Callable[..., LearnerState]  # (state, block, hp, td=None): td [T, E], the actors' priorities
    train: Callable[[LearnerState, HParams], LearnerState]  # 'free': `updates_per_train` updates, none before learning_starts
    greedy: Callable[..., jax.Array]  # (params, obs) -> greedy actions: the actors' network (they explore on the host)
    actor_td: Callable[..., jax.Array]  # (params, block, gamma) -> |TD error| [T, E] under one network (Ape-X's priorities)
    start_chunk: Callable[[LearnerState], LearnerState]
    end_chunk: Callable[[LearnerState], LearnerState]
    record_eval: Callable[..., LearnerState]  # (state, index, mean, min) -> state


def updates_per_train(config: Config) -> int:
    """Updates of one 'free' `train` call: those of one update round."""
    return config.gradient_steps


def make_program(config: Config, spec: EnvSpec) -> Program:
    """The learner's functions for `config`, whose env (`spec`) steps on the host."""
    c = config
    network = make_network(c, spec.num_actions)
    apply_fn = network.apply
    update = learner_lib.make_update(apply_fn, c)
    replay = replay_lib.make_replay(c.buffer_rows, c.batch_size, c.n_step, c.prioritized, c.priority_eps, c.actual_total_steps)
    one_update, learn, with_learning = make_updates(c, update, replay)
    n_evals = num_evals(c)

    def init(key: jax.Array, hp: HParams) -> LearnerState:
        net_key, _, run_key = jax.random.split(key, 3)  # as loop.make_trainer's init: the same network
        obs = jnp.zeros((c.num_envs, *spec.obs_shape), spec.obs_dtype)
        example = replay_lib.Transition(
            obs=obs, action=jnp.zeros(c.num_envs, jnp.int32), reward=jnp.zeros(c.num_envs, jnp.float32), next_obs=obs,
            terminated=jnp.zeros(c.num_envs, bool), truncated=jnp.zeros(c.num_envs, bool),
        )  # fmt: skip
        return LearnerState(
            env_steps=jnp.int32(0),
            learner=learner_lib.init(network.init(net_key, obs), c, hp),
            replay=replay.init(example),
            key=run_key,
            episode_return=jnp.zeros(c.num_envs, jnp.float32),
            episode_length=jnp.zeros(c.num_envs, jnp.int32),
            stats=ChunkStats.fresh(c.log_windows),
            evals=EvalLog(jnp.zeros(n_evals, jnp.int32), jnp.full(n_evals, jnp.nan), jnp.full(n_evals, jnp.nan)),
        )

    def store(state: LearnerState, row: replay_lib.Transition) -> LearnerState:
        """One row into replay, and the episodes it ends into the chunk's statistics."""
        after = state.env_steps + c.num_envs
        episode_return = state.episode_return + row.reward
        episode_length = state.episode_length + 1
        done = row.terminated | row.truncated
        stats = state.stats._replace(
            episodes=window_add(c, after, state.stats.episodes, done.sum(dtype=jnp.int32)),
            return_sum=window_add(c, after, state.stats.return_sum, jnp.where(done, episode_return, 0.0).sum()),
            length_sum=window_add(c, after, state.stats.length_sum, jnp.where(done, episode_length, 0).sum(dtype=jnp.int32)),
        )
        return state._replace(
            env_steps=after, replay=replay.add(state.replay, row), stats=stats,
            episode_return=jnp.where(done, 0.0, episode_return), episode_length=jnp.where(done, 0, episode_length),
        )  # fmt: skip

    def ingest(state: LearnerState, block: replay_lib.Transition, hp: HParams, td=None) -> LearnerState:
        """A block's rows in order ('held': each followed by the updates due after it); with
        `td` ([T, E], `actor_priorities`) each row enters replay at the priority of its |TD error|."""

        def row_step(state, xs):
            row, row_td = xs
            before, written = state.env_steps, state.replay.row
            # The keys of loop.make_trainer's env step (its 5th is its updates'): the rows of a
            # compiled run give the same updates here (tests/test_actor_learner.py).
            key, _, _, _, update_key, _ = jax.random.split(state.key, 6)
            state = store(state._replace(key=key), row)
            if row_td is not None:
                tree = state.replay.priorities
                index = written * c.num_envs + jnp.arange(c.num_envs, dtype=jnp.int32)
                tree = prioritized.set(tree, index, prioritized.priorities_from_td(row_td, hp.priority_alpha, c.priority_eps))
                state = state._replace(replay=state.replay._replace(priorities=tree))
            if c.rate_limit == "held":
                due = multiples_crossed(before, state.env_steps, c.update_every, hp.learning_starts) * c.gradient_steps
                state = learn(state, due, hp, update_key)
            return state, None

        return jax.lax.scan(row_step, state, (block, td))[0]

    def train(state: LearnerState, hp: HParams) -> LearnerState:
        """('free') One round of updates on the replay as it is, once `learning_starts` env
        steps are in (masked before)."""
        key, update_key = jax.random.split(state.key)
        active = state.env_steps >= hp.learning_starts
        carry = (state.learner, state.replay.priorities, state.stats)
        for i in range(updates_per_train(c)):
            carry = one_update(state, carry, jax.random.fold_in(update_key, i), hp, active=active)
        return with_learning(state._replace(key=key), carry)

    def greedy(params, obs) -> jax.Array:
        return acting.greedy(apply_fn(params, obs)).astype(jnp.int32)

    def actor_td(params, block: replay_lib.Transition, gamma) -> jax.Array:
        """|r + gamma (1 - terminated) max_a Q(s', a) - Q(s, a)| with one network picking and
        rating the bootstrap (an actor has no target network): Ape-X's initial priorities."""
        flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), block)
        q_taken = jnp.take_along_axis(apply_fn(params, flat.obs), flat.action[:, None].astype(jnp.int32), axis=1)[:, 0]
        next_value = losses.bootstrap_value(apply_fn(params, flat.next_obs), None)
        return jnp.abs(q_taken - losses.td_target(flat.reward, flat.terminated, gamma, next_value)).reshape(block.reward.shape)

    def start_chunk(state: LearnerState) -> LearnerState:
        return state._replace(stats=ChunkStats.fresh(c.log_windows))

    def end_chunk(state: LearnerState) -> LearnerState:
        finite = jnp.all(jnp.array([jnp.isfinite(x).all() for x in jax.tree.leaves(state.learner.params)]))
        return state._replace(stats=state.stats._replace(params_finite=finite))

    def record_eval(state: LearnerState, index, mean, minimum) -> LearnerState:
        e = state.evals
        return state._replace(evals=EvalLog(e.step.at[index].set(state.env_steps), e.mean.at[index].set(mean),
                                            e.min.at[index].set(minimum)))  # fmt: skip

    return Program(init, ingest, train, greedy, actor_td, start_chunk, end_chunk, record_eval)


def apex_epsilon(actor: int, num_actors: int, base: float = 0.4, alpha: float = 7.0) -> float:
    """Ape-X's fixed epsilon of actor i of N: base^(1 + alpha i / (N - 1)) (base for one actor)."""
    return base ** (1 + alpha * actor / (num_actors - 1)) if num_actors > 1 else base


def updates_due(config: Config, before, after, learning_starts: int):
    """('held') Updates the compiled loop runs for env steps (before, after]: what a block
    of them gets here (the host's count, for publishing and the policy lag; integers or numpy
    arrays)."""
    return multiples_crossed(before, after, config.update_every, learning_starts, xp=np) * config.gradient_steps

