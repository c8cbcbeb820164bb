"""The DQN learner step: one gradient update on a replay batch, then the target-network update."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purejaxdqn.algorithm import distributional, losses
from purejaxdqn.config import Config, HParams
from purejaxdqn.algorithm.replay import Batch
from purejaxdqn.algorithm.schedules import multiples_crossed


class LearnerState(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any
    updates: jax.Array  # int32: gradient updates done so far


class UpdateMetrics(NamedTuple):
    loss: jax.Array
    q_mean: jax.Array  # mean Q(s, a) of the batch's actions
    priority_signal: jax.Array  # [local batch] |TD error|, or the C51 cross-entropy, per item


# The MinAtar paper's RMSProp (PyTorch's `RMSprop(alpha=0.95, eps=0.01, centered=True)`):
# update = lr * g / (sqrt(E[g^2] - E[g]^2) + eps), the averages starting from 0.
RMSPROP_DECAY, RMSPROP_EPS = 0.95, 0.01


def make_optimizer(config: Config, hp: HParams) -> optax.GradientTransformation:
    """Adam (or the MinAtar paper's RMSProp), after global-norm clipping unless
    `config.max_grad_norm` is 0 (off, decided at trace time: the norm costs a third of a small
    network's update on a CPU). Built from traced hparams, so vmap can sweep them."""
    lr = hp.lr
    if config.lr_decay:
        total_updates = config.gradient_steps * multiples_crossed(
            0, config.actual_total_steps, config.update_every, hp.learning_starts
        )
        lr = lambda count: hp.lr * jnp.clip(1.0 - count / jnp.maximum(total_updates, 1), 0.0, 1.0)  # noqa: E731
    if config.optimizer == "rmsprop":
        step = optax.rmsprop(lr, decay=RMSPROP_DECAY, eps=RMSPROP_EPS, eps_in_sqrt=False, centered=True)
    else:
        step = optax.adam(lr, eps=config.adam_eps)
    if config.max_grad_norm == 0:
        return step
    return optax.chain(optax.clip_by_global_norm(hp.max_grad_norm), step)


def init(params, config: Config, hp: HParams) -> LearnerState:
    return LearnerState(
        params=params,
        target_params=params,
        opt_state=make_optimizer(config, hp).init(params),
        updates=jnp.int32(0),
    )


def no_mask(obs):
    """The action mask of a family without masks: none."""
    return None


def make_gradients(apply_fn: Callable, config: Config, axis_name: str | None = None, mask_fn: Callable = no_mask) -> Callable:
    """`gradients(learner, batch, hp) -> (loss, mean Q, priority signal, grads)` of the TD
    loss on a `replay.Batch` (weighted by its importance weights under prioritized replay).

    With `axis_name` (data parallel inside `jax.shard_map(..., check_vma=False)`, parameters
    replicated), each device differentiates its local loss and the gradients are averaged with
    `pmean`. This is right only with `check_vma=False`: with varying-axis tracking on, autodiff
    of a replicated input already sums over the axis and the same code gives N times the mean
    gradient (see ../shared/notes/jax-facts.md; tests/check_parallel.py compares gradients).
    `mask_fn(next_obs)`: the actions allowed in the next states (`envs.action_mask`), the only
    ones the bootstrap maximizes over, Double DQN's online argmax included.
    """
    z = distributional.support(config.num_atoms, config.v_min, config.v_max) if config.distributional else None

    def online_next_q(params, next_obs):
        """Double DQN: the online net's Q-values of the next observations (it picks the action)."""
        return apply_fn(jax.lax.stop_gradient(params), next_obs) if config.double_dqn else None

    def scalar_loss(params, target_params, batch: Batch, hp: HParams):
        q = apply_fn(params, batch.obs)
        q_taken = _take(q, batch.action)
        next_q_target = apply_fn(target_params, batch.next_obs)
        next_q_online = online_next_q(params, batch.next_obs)
        next_value = losses.bootstrap_value(next_q_target, next_q_online, mask_fn(batch.next_obs))
        target = jax.lax.stop_gradient(losses.bootstrapped_target(batch.reward, batch.discount, next_value))
        td_error = q_taken - target
        loss = losses.td_loss(td_error, config.loss, hp.huber_delta, batch.weight)
        return loss, (q_taken.mean(), jnp.abs(jax.lax.stop_gradient(td_error)))

    def categorical_loss(params, target_params, batch: Batch, hp: HParams):
        logits = _take(apply_fn(params, batch.obs, method="logits"), batch.action)  # [B, atoms]
        next_logits = apply_fn(target_params, batch.next_obs, method="logits")  # [B, actions, atoms]
        next_q_target = distributional.mean_q(next_logits, z)
        best = losses.next_action(next_q_target, online_next_q(params, batch.next_obs), mask_fn(batch.next_obs))
        next_probs = jax.nn.softmax(_take(next_logits, best), axis=-1)
        target = jax.lax.stop_gradient(distributional.project(next_probs, batch.reward, batch.discount, z))
        items = distributional.cross_entropy(target, logits)
        loss = items.mean() if batch.weight is None else jnp.mean(batch.weight * items)
        q_taken = (jax.nn.softmax(logits, axis=-1) * z).sum(axis=-1)
        return loss, (q_taken.mean(), jax.lax.stop_gradient(items))

    loss_fn = categorical_loss if config.distributional else scalar_loss

    def gradients(learner: LearnerState, batch: Batch, hp: HParams):
        (loss, (q_mean, signal)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            learner.params, learner.target_params, batch, hp
        )
        if axis_name is not None:
            grads, loss, q_mean = jax.lax.pmean((grads, loss, q_mean), axis_name)
        return loss, q_mean, signal, grads

    return gradients


def _take(values: jax.Array, action: jax.Array) -> jax.Array:
    """values[i, action[i]] along the action axis (axis 1), for Q-values or logits."""
    index = action.astype(jnp.int32).reshape(-1, *([1] * (values.ndim - 1)))
    return jnp.take_along_axis(values, index, axis=1)[:, 0]


def make_update(apply_fn: Callable, config: Config, axis_name: str | None = None, mask_fn: Callable = no_mask) -> Callable:
    """`update(learner, batch, hp) -> (learner, UpdateMetrics)`: one optimizer step (Adam or
    RMSProp, `config.optimizer`) on the TD loss, then the target update. `axis_name`,
    `mask_fn`: see `make_gradients`."""
    gradients = make_gradients(apply_fn, config, axis_name, mask_fn)

    def update(learner: LearnerState, batch: Batch, hp: HParams):
        loss, q_mean, signal, grads = gradients(learner, batch, hp)
        deltas, opt_state = make_optimizer(config, hp).update(grads, learner.opt_state, learner.params)
        params = optax.apply_updates(learner.params, deltas)
        updates = learner.updates + 1
        # Every `target_update_every` updates: target <- tau * online + (1 - tau) * target.
        # Branch-free (vmap-friendly); with step size 0 the target is kept bit for bit.
        step_size = jnp.where(updates % hp.target_update_every == 0, hp.tau, 0.0)
        target_params = optax.incremental_update(params, learner.target_params, step_size)
        return LearnerState(params, target_params, opt_state, updates), UpdateMetrics(loss, q_mean, signal)

    return update
