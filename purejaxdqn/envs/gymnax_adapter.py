"""gymnax (classic control, MinAtar, bsuite, misc): the adapter, and the one step of gymnax
this project replaces.

gymnax 1.x `step` returns `obs, state, reward, terminated, truncated, info` and resets by itself:
after an episode ends, `obs` is already the first observation of the next episode and the
observation the episode ended on is `info["final_observation"]`, which is the adapter's
`next_obs`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.envs.protocol import EnvSpec, StepResult

# Discrete-action gymnax ids that make offline (MNISTBandit downloads data at make time).
IDS = (
    "CartPole-v1", "Acrobot-v1", "MountainCar-v0",
    "Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar",
    "SpaceInvaders-MinAtar",
    "Catch-bsuite", "DeepSea-bsuite", "MemoryChain-bsuite", "UmbrellaChain-bsuite",
    "DiscountingChain-bsuite", "SimpleBandit-bsuite",
    "FourRooms-misc", "MetaMaze-misc", "BernoulliBandit-misc", "GaussianBandit-misc",
    "Pong-misc", "FrozenLake-misc",
)  # fmt: skip


class GymnaxAdapter(NamedTuple):
    env: Any
    params: Any
    spec: EnvSpec

    def reset(self, key):
        return self.env.reset(key, self.params)

    def step(self, key, state, action) -> StepResult:
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, self.params)
        return StepResult(
            obs=obs,
            env_state=state,
            reward=reward.astype(jnp.float32),
            next_obs=info["final_observation"],
            terminated=terminated.astype(jnp.bool_),
            truncated=jnp.logical_and(truncated, jnp.logical_not(terminated)),
        )

    def frame(self, state):
        return None  # video.py draws gymnax observations (its renderers need pygame/seaborn)


def make(env_id: str, full_action_set: bool = False, time_limit: int = 0) -> GymnaxAdapter:
    """`full_action_set` (MinAtar only): all 6 actions instead of the game's minimal set;
    `time_limit` > 0 replaces the env's `max_steps_in_episode`."""
    import gymnax

    if env_id == "Asterix-MinAtar":
        _asterix_without_while_loop()
    kwargs = {"use_minimal_action_set": False} if full_action_set else {}
    env, params = gymnax.make(env_id, **kwargs)
    if time_limit:
        params = params.replace(max_steps_in_episode=time_limit)
    obs, _ = jax.eval_shape(env.reset, jax.random.key(0), params)
    spec = EnvSpec(
        num_actions=int(env.action_space(params).n),
        obs_shape=tuple(obs.shape),
        obs_dtype=storage_dtype(env_id, obs.dtype),
        max_episode_steps=int(params.max_steps_in_episode),
    )
    return GymnaxAdapter(env, params, spec)


def storage_dtype(env_id: str, obs_dtype) -> np.dtype:
    """The dtype replay stores observations in.

    MinAtar observations are 0/1 planes that gymnax hands out as float32; they are stored as
    uint8 (a quarter of the memory) and cast back exactly. Others keep their own dtype.
    """
    if env_id.endswith("-MinAtar"):
        return np.dtype(np.uint8)
    return np.dtype(obs_dtype)


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
