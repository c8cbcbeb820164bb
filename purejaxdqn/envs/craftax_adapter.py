"""Craftax (Matthews et al. 2024): Crafter's open world in JAX, classic and full, symbolic
observations (`pip install -e ".[craftax]"`).

Craftax's own step resets after `done`, which joins the time limit (`timestep >=
max_timesteps`, 10,000 steps) with real ends (death, lava, the full game's final boss). The
adapter steps the no-reset env and splits them: a step is *terminated* when the game would be
over with the step counter set back to 0, and *truncated* when only the time limit ended it.
The pixel versions (130x110x3 and 63x63x3 float32 images, 171 and 48 kB per observation) are
left out: a replay of them does not fit a CPU's memory at DQN's buffer sizes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.envs.protocol import EnvSpec, Parts, StepResult, resetting_step

IDS = ("Craftax-Classic-Symbolic-v1", "Craftax-Symbolic-v1")


class CraftaxAdapter(NamedTuple):
    env: Any  # craftax's no-auto-reset env
    params: Any
    spec: EnvSpec
    classic: bool

    def reset(self, key):
        return self.env.reset_env(key, self.params)

    def _step(self, key, state, action):
        obs, state, reward, done, _ = self.env.step_env(key, state, action, self.params)
        terminated = done & self.env.is_terminal(state.replace(timestep=jnp.zeros_like(state.timestep)), self.params)
        return obs, state, reward, terminated, done & ~terminated

    @property
    def parts(self) -> Parts:
        return Parts(self.reset, self._step)

    def step(self, key, state, action) -> StepResult:
        return resetting_step(self.parts)(key, state, action)

    def frame(self, state) -> np.ndarray:
        return np.asarray(_renderer(self.classic)(state), np.uint8)


def make(env_id: str, time_limit: int = 0) -> CraftaxAdapter:
    """`time_limit` > 0 replaces Craftax's `max_timesteps` (10,000)."""
    from craftax.craftax_env import make_craftax_env_from_name

    env = make_craftax_env_from_name(env_id, auto_reset=False)
    params = env.default_params
    if time_limit:
        params = params.replace(max_timesteps=time_limit)
    obs, _ = jax.eval_shape(env.reset_env, jax.random.key(0), params)
    spec = EnvSpec(
        num_actions=int(env.action_space(params).n),
        obs_shape=tuple(obs.shape),
        obs_dtype=np.dtype(obs.dtype),
        max_episode_steps=int(params.max_timesteps),
    )
    return CraftaxAdapter(env, params, spec, classic="Classic" in env_id)


_RENDERERS: dict[bool, Any] = {}


def _renderer(classic: bool):
    """Craftax's own pixel renderer of a state (its agent-view textures, 0-255 RGB), jitted
    once per version."""
    if classic not in _RENDERERS:
        if classic:
            from craftax.craftax_classic.constants import BLOCK_PIXEL_SIZE_IMG as size
            from craftax.craftax_classic.renderer import make_craftax_pixel_renderer
        else:
            from craftax.craftax.constants import BLOCK_PIXEL_SIZE_IMG as size
            from craftax.craftax.renderer import make_craftax_pixel_renderer
        _RENDERERS[classic] = jax.jit(make_craftax_pixel_renderer(size))
    return _RENDERERS[classic]
