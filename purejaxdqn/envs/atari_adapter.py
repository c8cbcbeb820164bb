"""Atari 2600 games (ale-py), stepped inside the compiled loop through the ALE's XLA calls.

An id is a game's name in CamelCase, gymnasium's `ALE/<Name>-v5` without prefix and version:
`Breakout`, `Pong`, `SpaceInvaders`, `MontezumaRevenge` (`IDS`: the 57 games of the DQN
benchmark; `--env-id gymnasium:ALE/Breakout-v5` is the same game stepped on the host instead).
ale-py's C++ vector env does the standard preprocessing itself: each action repeated for 4
frames with the last two max-pooled, 84x84 grayscale, a stack of the last 4 (zeros before an
episode's first frame), up to `noop_max` no-ops and then FIRE at a reset, sticky actions at
the emulator's frame level (`--sticky-actions`, Machado et al. 2018), the minimal or full action
set, and the ALE's cap of 108,000 frames (27,000 steps) per episode, a truncation.

What this adapter adds, and why:
- observations are the stack on the last axis, newest last (`[84, 84, 4]` uint8), as the conv
  torso and the frames replay read them;
- rewards are the game's (`--clip-rewards` clips what replay stores; returns stay real);
- the ALE resets an env on the step *after* its episode ended (its NEXT_STEP mode): that step
  ignores its action and returns reward 0 and the new episode's first observation.
  `StepResult.reset_step` marks it; the loop never stores it as a transition;
- a lost life is reported (`StepResult.life_lost`, from the lives counter) for
  `--episodic-life` to end the TD target there while the game plays on (the ALE's own
  episodic_life restarts the whole game at a lost life);
- the emulators live outside the program (`EnvSpec.external_state`): a checkpoint cannot hold
  them, so a resumed run restarts its envs (loop.Trainer.restart_envs);
- vmapped runs each step their own envs: one C++ vector env holds every run's envs, and a
  vmapped call merges the run axis into the env axis (`jax.custom_batching.custom_vmap`).
"""

from __future__ import annotations

import atexit
import re
from functools import lru_cache
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.envs.protocol import EnvSpec, StepResult, action_mask

# The 57 games of the DQN benchmark (Mnih et al. 2015, Badia et al. 2020), ale-py's ROMs.
IDS = (
    "Alien", "Amidar", "Assault", "Asterix", "Asteroids", "Atlantis", "BankHeist", "BattleZone",
    "BeamRider", "Berzerk", "Bowling", "Boxing", "Breakout", "Centipede", "ChopperCommand",
    "CrazyClimber", "Defender", "DemonAttack", "DoubleDunk", "Enduro", "FishingDerby", "Freeway",
    "Frostbite", "Gopher", "Gravitar", "Hero", "IceHockey", "Jamesbond", "Kangaroo", "Krull",
    "KungFuMaster", "MontezumaRevenge", "MsPacman", "NameThisGame", "Phoenix", "Pitfall", "Pong",
    "PrivateEye", "Qbert", "Riverraid", "RoadRunner", "Robotank", "Seaquest", "Skiing", "Solaris",
    "SpaceInvaders", "StarGunner", "Surround", "Tennis", "TimePilot", "Tutankham", "UpNDown",
    "Venture", "VideoPinball", "WizardOfWor", "YarsRevenge", "Zaxxon",
)  # fmt: skip
FRAME_STACK = 4  # frames per observation, on its last axis
FRAME_SKIP = 4  # emulator frames per agent step
MAX_FRAMES = 108_000  # the ALE's cap on an episode's frames (27,000 agent steps): a truncation
OBS_SHAPE = (84, 84, FRAME_STACK)


def rom_name(env_id: str) -> str:
    """ale-py's ROM name of a game id: 'SpaceInvaders' -> 'space_invaders', 'UpNDown' -> 'up_n_down'."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", env_id).lower()


class Options(NamedTuple):
    """The settings an emulator is made with (hashable: the key of its vector envs)."""

    game: str  # the ROM name
    sticky_actions: float
    full_action_set: bool
    noop_max: int
    max_frames: int

    def vector_env(self, num_envs: int):
        from ale_py.vector_env import AtariVectorEnv

        _quiet()
        return AtariVectorEnv(
            self.game, num_envs, max_num_frames_per_episode=self.max_frames,
            repeat_action_probability=self.sticky_actions, full_action_space=self.full_action_set,
            noop_max=self.noop_max, stack_num=FRAME_STACK, frameskip=FRAME_SKIP, reward_clipping=False,
            episodic_life=False, autoreset_mode="NextStep",
        )  # fmt: skip


# Vector envs by (options, role, num_envs), alive for the process: a compiled program holds
# their handles (pointers into the emulators), so they may never be freed under it. Training
# and evaluation have roles of their own, so their emulators never step each other's games. Two
# programs of the same settings and role in one process share emulators: interleaving their
# chunks would mix their games (the CLI builds one; every reset reseeds them all).
_ENVS: dict[tuple, Any] = {}
_REGISTERED: list[bool] = []
atexit.register(_ENVS.clear)  # freed before the interpreter's teardown, which nanobind warns about


def _vector_env(options: Options, role: str, num_envs: int):
    key = (options, role, num_envs)
    if key not in _ENVS:
        env = options.vector_env(num_envs)
        if not _REGISTERED:  # registers the FFI targets (once per process)
            env.xla()
            _REGISTERED.append(True)
        _ENVS[key] = env
    return _ENVS[key]


def _quiet() -> None:
    """The ALE's banner and info lines off (set before an emulator exists, else it prints them)."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)


@lru_cache(maxsize=None)
def num_actions(game: str, full_action_set: bool) -> int:
    """Actions of a game: its minimal set, or all 18."""
    import ale_py

    if full_action_set:
        return 18
    _quiet()
    ale = ale_py.ALEInterface()
    ale.loadROM(ale_py.roms.get_rom_path(game))
    return len(ale.getMinimalActionSet())


def _merged(f, shared: int):
    """`f(*shared_args, *env_args)` whose env arguments and outputs (after its first, the handle)
    lead with the env axis; under vmap the batch axis is merged into the env axis, one call for
    every run's envs (nested vmaps merge again). The shared arguments are the same in every
    run (the handle), taken from the first."""
    fn = jax.custom_batching.custom_vmap(f)

    @fn.def_vmap
    def rule(axis_size, in_batched, *args):
        flat = []
        for i, (x, batched) in enumerate(zip(args, in_batched)):
            if i < shared:
                flat.append(x[0] if batched else x)
            else:
                x = x if batched else jnp.broadcast_to(x, (axis_size, *x.shape))
                flat.append(x.reshape(axis_size * x.shape[1], *x.shape[2:]))
        handle, *outs = fn(*flat)
        outs = [y.reshape(axis_size, y.shape[0] // axis_size, *y.shape[1:]) for y in outs]
        return (handle, *outs), (False, *[True] * len(outs))

    return fn


def _results(n: int, *dtypes) -> tuple:
    handle = jax.ShapeDtypeStruct((8,), jnp.uint8)
    obs = jax.ShapeDtypeStruct((n, FRAME_STACK, 84, 84), jnp.uint8)
    return (handle, obs, *[jax.ShapeDtypeStruct((n,), d) for d in dtypes])


class AtariState(NamedTuple):
    handle: jax.Array  # uint8 [8]: the vector env's pointer, threaded so calls stay in order
    lives: jax.Array  # int32 [E]
    resetting: jax.Array  # bool [E]: the last step ended an episode, so this one resets


class AtariVecEnv:
    """`num_envs` envs of one game, stepped together; the interface of protocol.VecEnv."""

    def __init__(self, options: Options, num_envs: int, role: str = "train"):
        self.options, self.num_envs, self.role = options, num_envs, role
        self.spec = EnvSpec(
            num_actions(options.game, options.full_action_set), OBS_SHAPE, jnp.uint8, options.max_frames // FRAME_SKIP,
            frame_stack=FRAME_STACK, next_step_reset=True, external_state=True,
        )  # fmt: skip
        self._reset = _merged(self._reset_call, 0)
        self._step = _merged(self._step_call, 1)

    num_actions = property(lambda self: self.spec.num_actions)
    obs_shape = property(lambda self: self.spec.obs_shape)
    obs_dtype = property(lambda self: self.spec.obs_dtype)
    max_episode_steps = property(lambda self: self.spec.max_episode_steps)
    sticky_actions = 0.0  # the emulator's own (Options.sticky_actions), never VecEnv's
    adapter = property(lambda self: self)

    def action_mask(self, obs):
        return action_mask(self.spec, obs)

    def frame(self, state) -> None:
        return None  # video.py draws the observation's newest frame

    def _reset_call(self, seeds):
        n = seeds.shape[0]
        env = _vector_env(self.options, self.role, n)
        call = jax.ffi.ffi_call("atari_vector_xla_reset", _results(n, jnp.int32, jnp.int32, jnp.int32, jnp.int32),
                                has_side_effect=True)  # fmt: skip
        handle = jnp.frombuffer(env.ale.handle(), dtype=jnp.uint8)
        handle, obs, _, lives, _, _ = call(handle, jnp.arange(n, dtype=jnp.int32), seeds)
        return handle, obs, lives

    def _step_call(self, handle, action):
        n = action.shape[0]
        call = jax.ffi.ffi_call(
            "atari_vector_xla_step", _results(n, jnp.int32, jnp.bool_, jnp.bool_, jnp.int32, jnp.int32, jnp.int32, jnp.int32),
            has_side_effect=True,
        )  # fmt: skip
        handle, obs, reward, terminated, truncated, _, lives, _, _ = call(handle, action, jnp.ones(n, jnp.float32))
        return handle, obs, reward, terminated, truncated, lives

    def reset(self, key: jax.Array, num_envs: int | None = None):
        n = num_envs or self.num_envs
        seeds = jax.random.randint(key, (n,), 0, 2**31 - 1, dtype=jnp.int32)
        handle, obs, lives = self._reset(seeds)
        return _channels_last(obs), AtariState(handle, lives, jnp.zeros(n, bool))

    def step(self, key: jax.Array, state: AtariState, action: jax.Array) -> StepResult:
        """One step of every env (the key is unused: the emulators draw their own randomness,
        seeded at the reset)."""
        handle, obs, reward, terminated, truncated, lives = self._step(state.handle, action.astype(jnp.int32))
        obs = _channels_last(obs)
        truncated = truncated & ~terminated
        life_lost = (lives < state.lives) & ~state.resetting
        return StepResult(
            obs=obs, env_state=AtariState(handle, lives, terminated | truncated), reward=reward.astype(jnp.float32),
            next_obs=obs, terminated=terminated, truncated=truncated, reset_step=state.resetting, life_lost=life_lost,
        )  # fmt: skip


def _channels_last(obs: jax.Array) -> jax.Array:
    return jnp.moveaxis(obs, -3, -1)


def check_id(env_id: str) -> None:
    """Raises ValueError if ale-py lacks the game's ROM."""
    from ale_py import roms

    if roms.get_rom_path(rom_name(env_id)) is None:
        raise ValueError(f"ale-py has no ROM for {env_id} ({rom_name(env_id)!r})")


def make(env_id: str, num_envs: int, sticky_actions: float = 0.0, full_action_set: bool = False, noop_max: int = 30,
         time_limit: int = 0, role: str = "train") -> AtariVecEnv:  # fmt: skip
    """`num_envs` envs of the game `env_id`; `time_limit` > 0: episodes truncated after that many
    agent steps instead of the ALE's 27,000."""
    max_frames = time_limit * FRAME_SKIP if time_limit else MAX_FRAMES
    return AtariVecEnv(Options(rom_name(env_id), float(sticky_actions), bool(full_action_set), int(noop_max), max_frames),
                       num_envs, role)  # fmt: skip
