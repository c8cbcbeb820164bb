"""Environments that step on the host (gymnasium, ale-py), for an actor-learner trainer.

A host id is `gymnasium:<a registered gymnasium id>`, e.g. `gymnasium:CartPole-v1` or
`gymnasium:ALE/Breakout-v5` (extra `atari`: ale-py registers the `ALE/` ids when imported).
`HostVecEnv` runs E copies with gymnasium's vector API and returns `HostStep`s with the
semantics of protocol.StepResult whatever the vector env's autoreset mode: `obs` is what to act
on next (a new episode's first observation after an end), `next_obs` what the step led to (the
true final observation after an end), so no reset pseudo-transition reaches the caller.

The ALE v5 games are made with their `vector_entry_point`, ale-py's C++ `AtariVectorEnv`
(frame skip 4, max-pooling, 84x84 grayscale, a 4-frame stack, noop starts, the v5 sticky
actions 0.25); every other id with `SyncVectorEnv` (one process, envs stepped in turn). Rewards are the game's own:
the Atari vector env's reward clipping is turned off, so returns are real scores (a learner
that wants DQN's clipped rewards clips them itself).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
from typing import Any, NamedTuple

import numpy as np

from purejaxdqn.envs.protocol import EnvSpec

HOST_PREFIX = "gymnasium:"
DEFAULT_AUTORESET = "SameStep"  # one pass per step: the vector env resets ended envs itself
_ALE_NAMESPACE = "ALE"


class HostStep(NamedTuple):
    """One step of E host envs (numpy, leading axis E), as protocol.StepResult."""

    obs: np.ndarray  # observation to act on next (first of a new episode after an end)
    reward: np.ndarray  # float32 [E]
    next_obs: np.ndarray  # the observation this step led to (the final one after an end)
    terminated: np.ndarray  # bool [E]: natural end, no bootstrap
    truncated: np.ndarray  # bool [E]: time limit, bootstrap from next_obs; never with terminated


def is_host_id(env_id: str) -> bool:
    return env_id.startswith(HOST_PREFIX)


def gymnasium_id(env_id: str) -> str:
    """The gymnasium id inside a host id."""
    return env_id[len(HOST_PREFIX) :] if is_host_id(env_id) else env_id


def _missing_extra(gym_id: str) -> str | None:
    """The extra to install before `gym_id` can be made (read at call time: tests patch it)."""
    if importlib.util.find_spec("gymnasium") is None:
        return "gymnasium"
    if gym_id.startswith(_ALE_NAMESPACE + "/") and importlib.util.find_spec("ale_py") is None:
        return "atari"
    return None


def _registered(gym_id: str):
    """gymnasium's EnvSpec of `gym_id`, or None; ale-py is imported for the ids it registers."""
    import gymnasium

    if gym_id not in gymnasium.registry and importlib.util.find_spec("ale_py") is not None:
        importlib.import_module("ale_py")  # registers ALE/<Game>-v5 and the v0/v4 ids
    return gymnasium.registry.get(gym_id)


def _creator_param(env_spec, name: str):
    """`name`'s value for the vector entry point: the registered kwarg, else its default."""
    if name in env_spec.kwargs:
        return env_spec.kwargs[name]
    from gymnasium.envs.registration import load_env_creator

    creator = env_spec.vector_entry_point
    creator = creator if callable(creator) else load_env_creator(creator)
    param = inspect.signature(creator).parameters.get(name)
    return None if param is None else param.default


def _is_ale_vector(env_spec) -> bool:
    """Whether `env_spec` is made by ale-py's AtariVectorEnv, the one vector entry point used:
    it has SameStep and partial resets. (gymnasium's CartPoleVectorEnv has neither: NextStep
    only, and `reset` resets every env from one generator; such ids use SyncVectorEnv.)"""
    return str(env_spec.vector_entry_point).startswith("ale_py.")


def _max_episode_steps(env_spec, time_limit: int) -> int | None:
    """The time limit in agent steps: `time_limit` if > 0, else the registered one."""
    if time_limit:
        return time_limit
    if _is_ale_vector(env_spec):
        return _creator_param(env_spec, "max_num_frames_per_episode") // _creator_param(env_spec, "frameskip")
    return env_spec.max_episode_steps


def _autoreset(mode) -> Any:
    import gymnasium

    return gymnasium.vector.AutoresetMode(mode if mode is not None else DEFAULT_AUTORESET)


def _make_vector_env(env_spec, num_envs: int, time_limit: int, mode):
    """gymnasium's vector env for `env_spec`: AtariVectorEnv for the ALE v5 ids, else sync."""
    import gymnasium

    if not _is_ale_vector(env_spec):
        limit = {"max_episode_steps": time_limit} if time_limit else {}
        # No passive env checker: check_host_id has looked at the spaces, and its wrapper cost
        # 30% of a CartPole step (measured: 91 against 65 us per step of 10 envs).
        return gymnasium.make_vec(env_spec.id, num_envs, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode},
                                  disable_env_checker=True, **limit)  # fmt: skip
    if mode == gymnasium.vector.AutoresetMode.DISABLED:
        raise ValueError(f"{env_spec.id}: AtariVectorEnv has no Disabled autoreset mode (use SameStep or NextStep)")
    kwargs: dict[str, Any] = {"autoreset_mode": mode, "reward_clipping": False}  # real scores
    if time_limit:  # its limit counts emulator frames, frameskip of them per step
        kwargs["max_num_frames_per_episode"] = time_limit * _creator_param(env_spec, "frameskip")
    return gymnasium.make_vec(env_spec.id, num_envs, vectorization_mode="vector_entry_point", **kwargs)


def _spec_of(gym_id: str, vec, max_episode_steps: int | None) -> EnvSpec:
    """The EnvSpec of a vector env; ValueError (one line) for spaces DQN cannot use."""
    from gymnasium import spaces

    action_space, obs_space = vec.single_action_space, vec.single_observation_space
    if not isinstance(action_space, spaces.Discrete):
        raise ValueError(f"{gym_id} acts in {action_space}: DQN needs discrete actions")
    if not isinstance(obs_space, spaces.Box):
        raise ValueError(f"{gym_id}'s observations are {obs_space}, not a Box")
    if not max_episode_steps:
        raise ValueError(f"{gym_id} has no time limit: set one (--time-limit)")
    return EnvSpec(
        num_actions=int(action_space.n),
        obs_shape=tuple(obs_space.shape),
        obs_dtype=storage_dtype(obs_space.dtype),
        max_episode_steps=int(max_episode_steps),
    )


def storage_dtype(obs_dtype) -> np.dtype:
    """uint8 observations (frames) stay uint8; any other Box dtype is stored as float32."""
    return np.dtype(np.uint8) if np.dtype(obs_dtype) == np.uint8 else np.dtype(np.float32)


def _rows_replaced(base: np.ndarray, rows, mask: np.ndarray, dtype) -> np.ndarray:
    """A copy of `base` in `dtype` whose rows where `mask` holds are `rows`' (an array, or
    gymnasium's object array of final observations, None elsewhere)."""
    out = np.array(base, dtype=dtype)
    for i in np.flatnonzero(mask):
        out[i] = rows[i]
    return out


class HostVecEnv:
    """E copies of one gymnasium env on the host, stepped together, in same-step semantics.

    SameStep: the vector env resets ended envs in its step; their final observation is
    `infos["final_obs"]`, the step's `next_obs`. NextStep and Disabled: the ended envs are
    reset at once with `reset(options={"reset_mask": ended})` (which also clears NextStep's
    pending autoreset), so the next `step` is a real step for them too.
    """

    def __init__(self, vec, spec: EnvSpec, seed_offset: int = 0):
        import gymnasium

        self.vec = vec
        self.spec = spec
        self.num_envs = int(vec.num_envs)
        self.seed_offset = int(seed_offset)
        self.autoreset_mode = vec.metadata["autoreset_mode"]
        self._same_step = self.autoreset_mode == gymnasium.vector.AutoresetMode.SAME_STEP
        self._action_start = int(vec.single_action_space.start)  # Discrete(n, start): actions 0..n-1 here

    def reset(self, seed: int) -> np.ndarray:
        """Every env's first observation; env i is seeded `seed + seed_offset + i` (gymnasium's
        vector seeding), and its later episodes follow from its own generator."""
        obs, _ = self.vec.reset(seed=int(seed) + self.seed_offset)
        return np.asarray(obs, dtype=self.spec.obs_dtype)

    def step(self, actions: np.ndarray) -> HostStep:
        """Step every env with its action (int [E]). Where no env ended, `obs` and `next_obs`
        are one array."""
        dtype = self.spec.obs_dtype
        actions = np.asarray(actions, np.int64).reshape(self.num_envs) + self._action_start
        obs, reward, terminated, truncated, info = self.vec.step(actions)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool) & ~terminated
        reward = np.asarray(reward, dtype=np.float32)
        ended = terminated | truncated
        if not ended.any():
            obs = np.asarray(obs, dtype=dtype)
            return HostStep(obs, reward, obs, terminated, truncated)
        if self._same_step:
            next_obs = _rows_replaced(obs, info["final_obs"], ended, dtype)
            return HostStep(np.asarray(obs, dtype=dtype), reward, next_obs, terminated, truncated)
        next_obs = np.array(obs, dtype=dtype)  # a copy: the reset below must not touch it
        reset_obs, _ = self.vec.reset(options={"reset_mask": ended})
        obs = _rows_replaced(next_obs, reset_obs, ended, dtype)
        return HostStep(obs, reward, next_obs, terminated, truncated)

    def close(self) -> None:
        self.vec.close()

    def __enter__(self) -> HostVecEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _checked_spec(env_id: str):
    """gymnasium's EnvSpec of a host id; ValueError (one line) when it cannot be made."""
    gym_id = gymnasium_id(env_id)
    extra = _missing_extra(gym_id)
    if extra:
        raise ValueError(f'{env_id} needs the {extra} extra: pip install -e ".[{extra}]"')
    env_spec = _registered(gym_id)
    if env_spec is None:
        import gymnasium

        close = difflib.get_close_matches(gym_id, list(gymnasium.registry), n=3)
        hint = f" (close: {', '.join(HOST_PREFIX + c for c in close)})" if close else ""
        raise ValueError(f"gymnasium registers no env {gym_id!r}{hint}")
    return env_spec


def make_host_env(
    env_id: str, num_envs: int, time_limit: int = 0, seed_offset: int = 0, autoreset_mode=None
) -> HostVecEnv:
    """`num_envs` copies of a host id. `time_limit` > 0 truncates episodes after that many steps
    instead of the env's own limit; `autoreset_mode` (a gymnasium AutoresetMode or its value)
    picks the vector env's mode (default SameStep), the steps' semantics are the same in all.
    Raises ValueError (one line) for an id that cannot be made or used by DQN."""
    env_spec = _checked_spec(env_id)
    import gymnasium  # installed: _checked_spec says so

    try:
        vec = _make_vector_env(env_spec, num_envs, time_limit, _autoreset(autoreset_mode))
    except gymnasium.error.DependencyNotInstalled as e:
        raise ValueError(f"{env_id}: {str(e).splitlines()[0]}") from e
    try:
        spec = _spec_of(env_spec.id, vec, _max_episode_steps(env_spec, time_limit))
    except ValueError:
        vec.close()
        raise
    return HostVecEnv(vec, spec, seed_offset)


def episode_returns(env: HostVecEnv, act, seed: int, max_steps: int) -> np.ndarray:
    """The return of one episode per env of `env` (reset with `seed`), each env's rewards
    counted up to its own episode's end; `act(obs) -> actions` chooses."""
    obs = env.reset(seed)
    returns, done = np.zeros(env.num_envs), np.zeros(env.num_envs, bool)
    for _ in range(max_steps):
        step = env.step(act(obs))
        returns += np.where(done, 0.0, step.reward)
        done |= step.terminated | step.truncated
        if done.all():
            break
        obs = step.obs
    return returns


def host_spec(env_id: str, time_limit: int = 0) -> EnvSpec:
    """The `EnvSpec` of a host id (one env is made and closed); ValueError as `make_host_env`."""
    with make_host_env(env_id, 1, time_limit) as env:
        return env.spec


def check_host_id(env_id: str, time_limit: int = 0) -> None:
    """Raise ValueError (one line) unless `env_id` makes a host env DQN can use: one env is
    made, its spaces looked at, and closed (cheap: before anything is compiled)."""
    host_spec(env_id, time_limit)
