"""XLand-MiniGrid (Nikulin et al. 2024): MiniGrid's grid worlds in JAX
(`pip install -e ".[xminigrid]"`).

xminigrid's step does not reset, and marks a real end with discount 0 and the time limit
(`max_steps`) with discount 1, both as the LAST step type. Its observation is the agent's
7x7 view of (tile, color) ids; the adapter hands it out as one-hot planes (13 tiles + 12
colors, uint8 0/1), the layout MinAtar's networks and replay already take.

The XLand-MiniGrid-R* ids are meta-RL tasks: each episode's rules come from a benchmark of
rulesets, which xminigrid downloads. They are not offered (no download here); the MiniGrid
ids, whose rules are built in, are.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.envs.protocol import EnvSpec, Parts, StepResult, resetting_step

IDS = (
    "MiniGrid-BlockedUnlockPickUp", "MiniGrid-DoorKey-5x5", "MiniGrid-DoorKey-6x6",
    "MiniGrid-DoorKey-8x8", "MiniGrid-DoorKey-16x16", "MiniGrid-Empty-5x5", "MiniGrid-Empty-6x6",
    "MiniGrid-Empty-8x8", "MiniGrid-Empty-16x16", "MiniGrid-EmptyRandom-5x5",
    "MiniGrid-EmptyRandom-6x6", "MiniGrid-EmptyRandom-8x8", "MiniGrid-EmptyRandom-16x16",
    "MiniGrid-FourRooms", "MiniGrid-LockedRoom", "MiniGrid-MemoryS8", "MiniGrid-MemoryS16",
    "MiniGrid-MemoryS32", "MiniGrid-MemoryS64", "MiniGrid-MemoryS128", "MiniGrid-Playground",
    "MiniGrid-Unlock", "MiniGrid-UnlockPickUp",
)  # fmt: skip


def one_hot_view(view: jax.Array, num_tiles: int, num_colors: int) -> jax.Array:
    """[V, V, 2] (tile id, color id) -> [V, V, tiles + colors] uint8 one-hot planes."""
    tiles = jax.nn.one_hot(view[..., 0], num_tiles, dtype=jnp.uint8)
    colors = jax.nn.one_hot(view[..., 1], num_colors, dtype=jnp.uint8)
    return jnp.concatenate([tiles, colors], axis=-1)


class XMiniGridAdapter(NamedTuple):
    env: Any
    params: Any
    spec: EnvSpec

    def _obs(self, timestep):
        from xminigrid.core.constants import NUM_COLORS, NUM_TILES

        return one_hot_view(timestep.observation, NUM_TILES, NUM_COLORS)

    def reset(self, key):
        timestep = self.env.reset(self.params, key)
        return self._obs(timestep), timestep

    def _step(self, key, timestep, action):
        timestep = self.env.step(self.params, timestep, action)
        last = timestep.last()
        terminated = last & (timestep.discount == 0)
        return self._obs(timestep), timestep, timestep.reward, terminated, last & ~terminated

    @property
    def parts(self) -> Parts:
        return Parts(self.reset, self._step)

    def step(self, key, state, action) -> StepResult:
        return resetting_step(self.parts)(key, state, action)

    def frame(self, state) -> np.ndarray | None:
        image = self.env.render(self.params, jax.device_get(state))
        return np.asarray(image, np.uint8) if isinstance(image, np.ndarray) else None


def make(env_id: str, time_limit: int = 0) -> XMiniGridAdapter:
    """`time_limit` > 0 replaces the task's `max_steps` (its reward, 1 - 0.9 t / max_steps,
    scales with it)."""
    import xminigrid

    env, params = xminigrid.make(env_id)
    if time_limit:
        params = params.replace(max_steps=time_limit)
    adapter = XMiniGridAdapter(env, params, None)
    obs, _ = jax.eval_shape(adapter.reset, jax.random.key(0))
    spec = EnvSpec(
        num_actions=int(env.num_actions(params)),
        obs_shape=tuple(obs.shape),
        obs_dtype=np.dtype(np.uint8),
        max_episode_steps=int(params.max_steps),
    )
    return adapter._replace(spec=spec)
