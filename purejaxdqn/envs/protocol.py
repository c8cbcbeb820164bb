"""The environment protocol: what the training loop needs from an env family.

An adapter is one environment, unbatched, that resets itself:

- `spec`: an `EnvSpec` (actions, observation shape and storage dtype, time limit, mask);
- `reset(key) -> (obs, state)`;
- `step(key, state, action) -> StepResult` whose `obs` is already the next episode's first
  observation after an end, `next_obs` the observation the step led to (the episode's true
  final one after an end), and the end split into `terminated` (no bootstrap) and
  `truncated` (time limit: bootstrap from `next_obs`), never both;
- `frame(state) -> uint8 [H, W, 3] | None`: the family's own picture of a state, for
  `evaluate --gif/--video` and the trackers' video (None: video.py draws the observation instead).

A family with action masks puts the mask in the observation, as its last `num_actions`
entries (1 = allowed), so replay stores it with the observation and every bootstrap sees the
mask of the state it bootstraps from; `action_mask(spec, obs)` reads it back. `VecEnv` runs
`num_envs` copies of an adapter with vmap, and adds sticky actions for any family. An adapter
whose family's step does not reset gives its pieces as `parts` (a `Parts`), which lets VecEnv
share a few resets among its envs (`reset_ratio`). A family
whose vector env is one thing (the ALE's C++ one, envs/atari_adapter.py) gives an object with
VecEnv's interface instead, and the reset step and lost lives in `StepResult`'s last fields.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np


class EnvSpec(NamedTuple):
    num_actions: int
    obs_shape: tuple[int, ...]
    obs_dtype: Any  # the dtype replay stores observations in
    max_episode_steps: int  # the time limit (it also bounds an evaluation episode)
    masked: bool = False  # the observation's last num_actions entries are the action mask
    frame_stack: int = 1  # frames stacked on the observation's last axis (the frames replay stores the newest)
    next_step_reset: bool = False  # an env resets on the step after an end (StepResult.reset_step), not within it
    external_state: bool = False  # the env's state lives outside the program: a checkpoint cannot hold it


class StepResult(NamedTuple):
    """One env step (leading axis: envs, once vectorized)."""

    obs: jax.Array  # observation to act on next (first of a new episode after a reset)
    env_state: Any
    reward: jax.Array
    next_obs: jax.Array  # the observation this step led to (the final one if the episode ended)
    terminated: jax.Array  # natural end: the TD target must not bootstrap
    truncated: jax.Array  # time limit: the TD target bootstraps from next_obs
    # Families that need them (the ALE), else None:
    reset_step: Any = None  # bool: this step only reset an ended env (action ignored): no transition
    life_lost: Any = None  # bool: the game goes on with a life fewer (--episodic-life ends the TD target)


class Adapter(Protocol):
    spec: EnvSpec

    def reset(self, key: jax.Array) -> tuple[jax.Array, Any]: ...

    def step(self, key: jax.Array, state: Any, action: jax.Array) -> StepResult: ...

    def frame(self, state: Any) -> np.ndarray | None: ...


def action_mask(spec: EnvSpec, obs: jax.Array) -> jax.Array | None:
    """bool [..., A]: the actions allowed in `obs` (a batch of flat observations), or None for
    a family without masks (every action allowed, and no mask computed at all)."""
    if not spec.masked:
        return None
    return obs[..., -spec.num_actions :] > 0


class Timed(NamedTuple):
    """The state of a family that has no time limit of its own: its state and the step count."""

    inner: Any
    t: jax.Array


class Parts(NamedTuple):
    """A family whose own step does not reset, in the pieces `resetting_step` joins."""

    reset: Callable  # key -> (obs, state)
    step: Callable  # (key, state, action) -> (next_obs, state, reward, terminated, truncated)
    time_limit: int | None = None  # steps, counted here (a `Timed` state) for families without a limit


def timed_reset(parts: Parts) -> Callable:
    """`parts.reset`, its state `Timed` where `resetting_step` counts the time limit."""
    if not parts.time_limit:
        return parts.reset

    def timed(key):
        obs, state = parts.reset(key)
        return obs, Timed(state, jnp.int32(0))

    return timed


def _advance(parts: Parts, key, state, action):
    """One step of the family, with no reset: (next_obs, state, reward, terminated, truncated),
    the time limit counted where `parts` has one; truncation never overrides a real end."""
    inner = state.inner if parts.time_limit else state
    next_obs, inner, reward, terminated, truncated = parts.step(key, inner, action)
    if parts.time_limit:
        t = state.t + 1
        truncated = truncated | (t >= parts.time_limit)
        inner = Timed(inner, t)
    return next_obs, inner, reward, terminated, truncated & ~terminated


def _restart_ended(reset_obs, reset_state, advanced) -> StepResult:
    """One env's StepResult: after an end, the state and observation become the reset's."""
    next_obs, state, reward, terminated, truncated = advanced
    ended = terminated | truncated
    new_state = jax.tree.map(lambda r, s: jnp.where(ended, r, s), reset_state, state)
    obs = jnp.where(ended, reset_obs, next_obs)
    return StepResult(obs, new_state, reward.astype(jnp.float32), next_obs, terminated, truncated)


def resetting_step(parts: Parts) -> Callable[[jax.Array, Any, jax.Array], StepResult]:
    """`step(key, state, action) -> StepResult` of one env of a family whose step does not
    reset: after an end the state and observation are replaced by a reset's (a key of its own)."""

    def resetting(key, state, action):
        step_key, reset_key = jax.random.split(key)
        advanced = _advance(parts, step_key, state, action)
        return _restart_ended(*timed_reset(parts)(reset_key), advanced)

    return resetting


def shared_resets_step(parts: Parts, num_resets: int) -> Callable[[jax.Array, Any, jax.Array], StepResult]:
    """A batch's `step(key, states, actions) -> StepResult` that makes at most `num_resets`
    resets per step (optimistic resets, as Craftax's own wrapper), worth it where a reset costs
    many steps (Craftax generates a world). Each env steps with the key `resetting_step` gives
    it, and the first `num_resets` envs to end reset with their own keys: while no more than
    `num_resets` end together, the result is bit for bit that of a reset per env. Beyond that,
    the k-th env to end takes reset k mod `num_resets` (an episode starting where another does;
    their keys differ from then on)."""

    def step(key, state, action):
        step_keys, reset_keys = jnp.moveaxis(jax.vmap(jax.random.split)(jax.random.split(key, action.shape[0])), 1, 0)
        advanced = jax.vmap(lambda k, s, a: _advance(parts, k, s, a))(step_keys, state, action)
        ended = advanced[3] | advanced[4]
        first = jnp.nonzero(ended, size=num_resets, fill_value=0)[0]  # the first envs to end (env 0 where fewer do)
        fresh = jax.vmap(timed_reset(parts))(reset_keys[first])
        turn = (jnp.cumsum(ended) - 1) % num_resets
        reset_obs, reset_state = jax.tree.map(lambda x: x[turn], fresh)
        return jax.vmap(_restart_ended)(reset_obs, reset_state, advanced)

    return step


class StickyState(NamedTuple):
    """Env state with sticky actions: the adapter's state and each env's last action."""

    inner: Any
    last_action: jax.Array  # [num_envs] int32; 0 (no-op) at an episode start, as in MinAtar


class VecEnv(NamedTuple):
    """`num_envs` copies of one adapter, stepped together."""

    adapter: Any
    num_envs: int
    sticky_actions: float = 0.0  # probability that an env repeats its last action instead
    reset_ratio: int = 1  # envs per reset made each step (> 1: optimistic resets, an adapter with `parts`)

    @property
    def spec(self) -> EnvSpec:
        return self.adapter.spec

    @property
    def num_actions(self) -> int:
        return self.spec.num_actions

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.spec.obs_shape

    @property
    def obs_dtype(self):
        return self.spec.obs_dtype

    @property
    def max_episode_steps(self) -> int:
        return self.spec.max_episode_steps

    def action_mask(self, obs: jax.Array) -> jax.Array | None:
        return action_mask(self.spec, obs)

    def reset(self, key: jax.Array, num_envs: int | None = None) -> tuple[jax.Array, Any]:
        n = num_envs or self.num_envs
        obs, env_state = jax.vmap(self.adapter.reset)(jax.random.split(key, n))
        if self.sticky_actions > 0:
            env_state = StickyState(env_state, jnp.zeros(n, jnp.int32))
        return obs, env_state

    def step(self, key: jax.Array, env_state: Any, action: jax.Array) -> StepResult:
        if self.sticky_actions > 0:
            # MinAtar's protocol: with probability p the env ignores the agent and repeats the
            # action it executed last (the no-op after a reset).
            key, sticky_key = jax.random.split(key)
            repeat = jax.random.uniform(sticky_key, action.shape) < self.sticky_actions
            action = jnp.where(repeat, env_state.last_action, action)
            sticky, env_state = env_state, env_state.inner
        if self.reset_ratio > 1:
            res = shared_resets_step(self.adapter.parts, -(-action.shape[0] // self.reset_ratio))(key, env_state, action)
        else:
            res = jax.vmap(self.adapter.step)(jax.random.split(key, action.shape[0]), env_state, action)
        if self.sticky_actions > 0:
            ended = jnp.logical_or(res.terminated, res.truncated)
            last = jnp.where(ended, 0, action).astype(jnp.int32)
            res = res._replace(env_state=sticky._replace(inner=res.env_state, last_action=last))
        return res
