"""Jumanji (Bonnet et al. 2024): InstaDeep's combinatorial and grid problems in JAX
(`pip install -e ".[jumanji]"`).

The ids offered are Jumanji's single-agent envs whose action is one choice among at most
1,000: a multi-discrete action (Minesweeper's row and column, Tetris's rotation and column,
RubiksCube's face, depth and direction, Sudoku's row, column and digit) becomes one index
over the product. Left out: the multi-agent envs (Cleaner, Connector, RobotWarehouse,
LevelBasedForaging, MultiCVRP, MMST, JobShop), FlatPack and BinPack (8,100 and 800 joint
actions over placements), SearchAndRescue (continuous actions) and Sokoban (it downloads its
levels).

Jumanji's step does not reset and marks the episode's end as the LAST step type with a
discount, but not all its envs give a time limit discount 1 (RubiksCube gives it 0, a false
terminal). So the adapter counts the time limit itself (a `Timed` state) and makes each env
with a limit of its own with one it never reaches: every end Jumanji reports is then real
(terminated) and every time limit is the adapter's (truncated). The limit is the env's
registered one, or `TIME_LIMIT` steps for envs that have none (Game2048, Knapsack, TSP, CVRP,
GraphColoring, Minesweeper, Sudoku; only Game2048 ever gets that far).

Its observation (a tuple of arrays) is flattened to one float32 vector; where the env has an
action mask, the flattened mask closes it (see protocol.py).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.envs.protocol import EnvSpec, Parts, StepResult, resetting_step, timed_reset

IDS = (
    "Snake-v1", "Game2048-v1", "Maze-v0", "Minesweeper-v0", "RubiksCube-v0",
    "RubiksCube-partly-scrambled-v0", "SlidingTilePuzzle-v0", "PacMan-v1", "Tetris-v0",
    "Knapsack-v1", "TSP-v1", "CVRP-v1", "GraphColoring-v1", "Sudoku-v0", "Sudoku-very-easy-v0",
)  # fmt: skip
TIME_LIMIT = 2000  # steps, for envs without a limit of their own
FIGURE_INCHES = 4.8  # video frames 480 pixels square
NEVER = 2**30  # the limit an env with its own is made with (the adapter counts the real one)


def flatten_observation(observation) -> tuple[jax.Array, jax.Array | None]:
    """(float32 [features], bool [actions] | None): every field but `action_mask`, flattened
    and joined in field order, and the mask flattened in row-major (action index) order."""
    fields = observation._asdict()
    mask = fields.pop("action_mask", None)
    leaves = jax.tree.leaves(fields)
    features = jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in leaves])
    return features, None if mask is None else jnp.ravel(mask)


def observation_vector(observation) -> jax.Array:
    """The adapter's observation: the features, then the mask as 0/1 where there is one."""
    features, mask = flatten_observation(observation)
    return features if mask is None else jnp.concatenate([features, mask.astype(jnp.float32)])


class JumanjiAdapter(NamedTuple):
    env: Any
    spec: EnvSpec
    action_shape: tuple[int, ...]  # () for a discrete action, else the multi-discrete sizes
    time_limit: int  # steps, counted by the adapter (its state is `Timed`)

    def _reset(self, key):
        state, timestep = self.env.reset(key)
        return observation_vector(timestep.observation), state

    @property
    def parts(self) -> Parts:
        return Parts(self._reset, self._step, self.time_limit)

    def reset(self, key):
        return timed_reset(self.parts)(key)

    def _step(self, key, state, action):
        if self.action_shape:
            action = jnp.stack(jnp.unravel_index(action, self.action_shape)).astype(jnp.int32)
        state, timestep = self.env.step(state, action)
        return observation_vector(timestep.observation), state, timestep.reward, timestep.last(), jnp.bool_(False)

    def step(self, key, state, action) -> StepResult:
        return resetting_step(self.parts)(key, state, action)

    def frame(self, state) -> np.ndarray:
        """Jumanji's own picture of a state (its matplotlib viewer's figure, `FIGURE_INCHES` at
        100 dpi). Slow for some envs on a CPU core: Snake ~50 ms a frame, PacMan ~1 s,
        GraphColoring several seconds."""
        import matplotlib.pyplot as plt

        viewer = getattr(self.env, "_viewer", None) or self.env._env_viewer  # the envs name it either way
        viewer.figure_size = (FIGURE_INCHES, FIGURE_INCHES)
        self.env.render(jax.device_put(state.inner))  # its viewers index with JAX arrays
        figure = plt.figure(viewer._name)
        figure.canvas.draw()
        image = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
        plt.close(figure)  # no figure left open (a notebook would show it)
        return image


def make(env_id: str, time_limit: int = 0) -> JumanjiAdapter:
    """`time_limit` > 0 replaces the env's limit (or `TIME_LIMIT`)."""
    import jumanji

    own_limit = getattr(jumanji.make(env_id), "time_limit", None)
    env = jumanji.make(env_id, time_limit=NEVER) if own_limit else jumanji.make(env_id)
    spec = env.action_spec
    action_shape = () if np.ndim(spec.num_values) == 0 else tuple(int(n) for n in spec.num_values)
    num_actions = math.prod(action_shape) if action_shape else int(spec.num_values)
    adapter = JumanjiAdapter(env, None, action_shape, int(time_limit or own_limit or TIME_LIMIT))
    obs, _ = jax.eval_shape(adapter.reset, jax.random.key(0))
    _, mask = jax.eval_shape(lambda k: flatten_observation(env.reset(k)[1].observation), jax.random.key(0))
    env_spec = EnvSpec(
        num_actions=num_actions,
        obs_shape=tuple(obs.shape),
        obs_dtype=np.dtype(np.float32),
        max_episode_steps=adapter.time_limit,
        masked=mask is not None,
    )
    return adapter._replace(spec=env_spec)
