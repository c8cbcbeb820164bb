"""The DQN learner step: one gradient update on a replay batch, then the target-network update."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purejaxdqn import losses
from purejaxdqn.config import Config, HParams
from purejaxdqn.replay import Transition
from purejaxdqn.schedules import multiples_crossed


class LearnerState(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any
    updates: jax.Array  # int32: gradient updates done so far


class UpdateMetrics(NamedTuple):
    loss: jax.Array
    q_mean: jax.Array  # mean Q(s, a) of the batch's actions


def make_optimizer(config: Config, hp: HParams) -> optax.GradientTransformation:
    """Adam after global-norm clipping. Built from traced hparams, so vmap can sweep them."""
    lr = hp.lr
    if config.lr_decay:
        total_updates = config.gradient_steps * multiples_crossed(
            0, config.actual_total_steps, config.update_every, hp.learning_starts
        )
        lr = lambda count: hp.lr * jnp.clip(1.0 - count / jnp.maximum(total_updates, 1), 0.0, 1.0)  # noqa: E731
    return optax.chain(
        optax.clip_by_global_norm(hp.max_grad_norm),
        optax.adam(lr, eps=config.adam_eps),
    )


def init(params, config: Config, hp: HParams) -> LearnerState:
    return LearnerState(
        params=params,
        target_params=params,
        opt_state=make_optimizer(config, hp).init(params),
        updates=jnp.int32(0),
    )


def make_gradients(apply_fn: Callable, config: Config, axis_name: str | None = None) -> Callable:
    """`gradients(learner, batch, hp) -> (loss, mean Q, grads)` of the TD loss on a batch.

    With `axis_name` (data parallel inside `jax.shard_map(..., check_vma=False)`, parameters
    replicated), each device differentiates its local loss and the gradients are averaged with
    `pmean`. This is right only with `check_vma=False`: with varying-axis tracking on, autodiff
    of a replicated input already sums over the axis and the same code gives N times the mean
    gradient (see ../shared/notes/jax-facts.md; tests/check_parallel.py compares gradients).
    """

    def loss_fn(params, target_params, batch: Transition, hp: HParams):
        q = apply_fn(params, batch.obs)
        q_taken = jnp.take_along_axis(q, batch.action[:, None].astype(jnp.int32), axis=-1)[:, 0]
        next_q_target = apply_fn(target_params, batch.next_obs)
        next_q_online = apply_fn(jax.lax.stop_gradient(params), batch.next_obs) if config.double_dqn else None
        next_value = losses.bootstrap_value(next_q_target, next_q_online)
        target = jax.lax.stop_gradient(losses.td_target(batch.reward, batch.terminated, hp.gamma, next_value))
        loss = losses.td_loss(q_taken - target, config.loss, hp.huber_delta)
        return loss, q_taken.mean()

    def gradients(learner: LearnerState, batch: Transition, hp: HParams):
        (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            learner.params, learner.target_params, batch, hp
        )
        if axis_name is not None:
            grads, loss, q_mean = jax.lax.pmean((grads, loss, q_mean), axis_name)
        return loss, q_mean, grads

    return gradients


def make_update(apply_fn: Callable, config: Config, axis_name: str | None = None) -> Callable:
    """`update(learner, batch, hp) -> (learner, UpdateMetrics)`: one Adam step on the TD loss,
    then the target update. `axis_name`: see `make_gradients`."""
    gradients = make_gradients(apply_fn, config, axis_name)

    def update(learner: LearnerState, batch: Transition, hp: HParams):
        loss, q_mean, grads = gradients(learner, batch, hp)
        deltas, opt_state = make_optimizer(config, hp).update(grads, learner.opt_state, learner.params)
        params = optax.apply_updates(learner.params, deltas)
        updates = learner.updates + 1
        # Every `target_update_every` updates: target <- tau * online + (1 - tau) * target.
        # Branch-free (vmap-friendly); with step size 0 the target is kept bit for bit.
        step_size = jnp.where(updates % hp.target_update_every == 0, hp.tau, 0.0)
        target_params = optax.incremental_update(params, learner.target_params, step_size)
        return LearnerState(params, target_params, opt_state, updates), UpdateMetrics(loss, q_mean)

    return update
