"""gymnax environments, vectorized with vmap, with the bookkeeping DQN needs.

gymnax 1.x `step` returns `obs, state, reward, terminated, truncated, info` and resets by itself:
after an episode ends, `obs` is already the first observation of the next episode and the
observation the episode ended on is `info["final_observation"]`. `VecEnv.step` returns that
final observation as `next_obs`, which is what a stored transition must hold, and keeps
`terminated` (no bootstrap) apart from `truncated` (time limit: bootstrap from `next_obs`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Discrete-action gymnax ids that make offline (MNISTBandit downloads data at make time).
SUPPORTED_ENV_IDS = (
    "CartPole-v1", "Acrobot-v1", "MountainCar-v0",
    "Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar",
    "SpaceInvaders-MinAtar",
    "Catch-bsuite", "DeepSea-bsuite", "MemoryChain-bsuite", "UmbrellaChain-bsuite",
    "DiscountingChain-bsuite", "SimpleBandit-bsuite",
    "FourRooms-misc", "MetaMaze-misc", "BernoulliBandit-misc", "GaussianBandit-misc",
    "Pong-misc", "FrozenLake-misc",
)  # fmt: skip


class StepResult(NamedTuple):
    """One vectorized env step. Leading axis: envs."""

    obs: jax.Array  # observation to act on next (first of a new episode after a reset)
    env_state: Any
    reward: jax.Array
    next_obs: jax.Array  # the observation this step led to (the final one if the episode ended)
    terminated: jax.Array  # natural end: the TD target must not bootstrap
    truncated: jax.Array  # time limit: the TD target bootstraps from next_obs


class StickyState(NamedTuple):
    """Env state with sticky actions: the wrapped gymnax state and each env's last action."""

    inner: Any
    last_action: jax.Array  # [num_envs] int32; 0 (no-op) at an episode start, as in MinAtar


class VecEnv(NamedTuple):
    """`num_envs` copies of one gymnax environment, stepped together."""

    env: Any
    params: Any
    num_envs: int
    num_actions: int
    obs_shape: tuple[int, ...]
    obs_dtype: Any  # dtype observations are stored in (replay)
    max_episode_steps: int
    sticky_actions: float = 0.0  # probability that an env repeats its last action instead

    def reset(self, key: jax.Array, num_envs: int | None = None) -> tuple[jax.Array, Any]:
        n = num_envs or self.num_envs
        keys = jax.random.split(key, n)
        obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(keys, self.params)
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
        keys = jax.random.split(key, action.shape[0])
        obs, env_state, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None)
        )(keys, env_state, action, self.params)
        if self.sticky_actions > 0:
            ended = jnp.logical_or(terminated, truncated)
            env_state = sticky._replace(inner=env_state, last_action=jnp.where(ended, 0, action).astype(jnp.int32))
        return StepResult(
            obs=obs,
            env_state=env_state,
            reward=reward.astype(jnp.float32),
            next_obs=info["final_observation"],
            terminated=terminated.astype(jnp.bool_),
            truncated=jnp.logical_and(truncated, jnp.logical_not(terminated)),
        )


def make_vec_env(env_id: str, num_envs: int, full_action_set: bool = False, sticky_actions: float = 0.0) -> VecEnv:
    """A vectorized gymnax environment. Raises ValueError for ids outside SUPPORTED_ENV_IDS.

    `full_action_set` (MinAtar only): all 6 actions instead of the game's minimal set.
    `sticky_actions`: probability of repeating the last action (MinAtar's original uses 0.1).
    """
    if env_id not in SUPPORTED_ENV_IDS:
        raise ValueError(f"unsupported environment {env_id!r}")
    import gymnax

    if env_id == "Asterix-MinAtar":
        _asterix_without_while_loop()
    kwargs = {"use_minimal_action_set": False} if full_action_set else {}
    env, params = gymnax.make(env_id, **kwargs)
    obs_shape, obs_dtype = _observation_spec(env, params)
    return VecEnv(
        env=env,
        params=params,
        num_envs=num_envs,
        num_actions=int(env.action_space(params).n),
        obs_shape=obs_shape,
        obs_dtype=storage_dtype(env_id, obs_dtype),
        max_episode_steps=int(params.max_steps_in_episode),
        sticky_actions=float(sticky_actions),
    )


def free_slot_search(key: jax.Array, state_entities: jax.Array) -> tuple[jax.Array, jax.Array]:
    """gymnax Asterix's `while_sample_slots` without its `lax.while_loop` (a loop of traced
    length: a host round trip per env step on a GPU), returning the same values.

    gymnax walks a random order of the 8 slots from its *second* entry and stops at the first
    free one, else at the last with `free` False (slot order[7], taken): the first free slot
    among order[1:], found here with an argmax. Tested equal on every occupancy pattern."""
    order = jax.random.permutation(key, jnp.arange(8))
    free = state_entities[order][1:] == 0
    found = free.any()
    index = jnp.where(found, 1 + jnp.argmax(free), 7)
    return order[index], found.astype(jnp.int32)


# gymnax's own functions that this module replaced (kept for the tests that compare them).
REPLACED: dict[str, Any] = {}


def _asterix_without_while_loop() -> None:
    """Point gymnax's Asterix at `free_slot_search` (its module function, looked up per call)."""
    from gymnax.environments.minatar import asterix

    if asterix.while_sample_slots is not free_slot_search:
        REPLACED["asterix.while_sample_slots"] = asterix.while_sample_slots
        asterix.while_sample_slots = free_slot_search


def env_from_config(config, num_envs: int) -> VecEnv:
    """The vectorized env a config describes, with `num_envs` copies."""
    return make_vec_env(config.env_id, num_envs, config.full_action_set, config.sticky_actions)


def _observation_spec(env, params) -> tuple[tuple[int, ...], Any]:
    obs, _ = jax.eval_shape(env.reset, jax.random.key(0), params)
    return tuple(obs.shape), np.dtype(obs.dtype)


def storage_dtype(env_id: str, obs_dtype) -> np.dtype:
    """The dtype replay stores observations in.

    MinAtar observations are 0/1 planes that gymnax hands out as float32; they are stored as
    uint8 (a quarter of the memory) and cast back exactly. Others keep their own dtype.
    """
    if env_id.endswith("-MinAtar"):
        return np.dtype(np.uint8)
    return np.dtype(obs_dtype)
