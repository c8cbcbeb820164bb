"""Environment families behind one protocol (protocol.py), and the ids each one offers.

gymnax comes with the package; the others (Craftax, XLand-MiniGrid, Jumanji, the ALE's Atari
games) are optional extras, imported only when one of their ids is made. `FAMILIES` is the one list of ids: the command line's `--env-id` accepts
exactly these, and an id of a family that is not installed is refused naming its extra.
"""

from __future__ import annotations


import importlib.util
from typing import NamedTuple

from purejaxdqn.envs import atari_adapter, craftax_adapter, gymnax_adapter, jumanji_adapter, xminigrid_adapter
from purejaxdqn.envs.host import HOST_PREFIX, is_host_id
from purejaxdqn.envs.protocol import EnvSpec, StepResult, VecEnv, action_mask

__all__ = ["FAMILIES", "HOST_PREFIX", "SUPPORTED_ENV_IDS", "EnvSpec", "StepResult", "VecEnv", "action_mask",
           "describe_ids", "env_from_config", "family_of", "frame_stack_of", "image_observations", "is_atari_id", "is_host_id", "make_vec_env",
           "missing_extra", "shares_resets"]  # fmt: skip


class Family(NamedTuple):
    name: str
    package: str  # the module its adapter imports
    extra: str | None  # the pip extra that installs it (None: a core dependency)
    ids: tuple[str, ...]
    adapter: type | None  # its adapter (protocol.py), None where the family's vector env is one thing


FAMILIES = (
    Family("gymnax", "gymnax", None, gymnax_adapter.IDS, gymnax_adapter.GymnaxAdapter),
    Family("craftax", "craftax", "craftax", craftax_adapter.IDS, craftax_adapter.CraftaxAdapter),
    Family("xminigrid", "xminigrid", "xminigrid", xminigrid_adapter.IDS, xminigrid_adapter.XMiniGridAdapter),
    Family("jumanji", "jumanji", "jumanji", jumanji_adapter.IDS, jumanji_adapter.JumanjiAdapter),
    Family("atari", "ale_py", "atari", atari_adapter.IDS, None),
)
SUPPORTED_ENV_IDS = tuple(i for f in FAMILIES for i in f.ids)
_ADAPTERS = {"gymnax": gymnax_adapter, "craftax": craftax_adapter, "xminigrid": xminigrid_adapter,
             "jumanji": jumanji_adapter}  # fmt: skip


def family_of(env_id: str) -> Family:
    """The family offering `env_id`. Raises ValueError for an id none offers."""
    for family in FAMILIES:
        if env_id in family.ids:
            return family
    raise ValueError(f"unsupported environment {env_id!r}")


def image_observations(env_id: str) -> bool:
    """Whether `env_id`'s observations are [H, W, C] planes (what the conv torso takes): the
    MinAtar games and MiniGrid (tests/test_env_families.py checks every id's shape)."""
    if is_host_id(env_id):
        return False
    return env_id.endswith("-MinAtar") or family_of(env_id).name in ("xminigrid", "atari")


def shares_resets(env_id: str) -> bool:
    """Whether `--reset-ratio` applies to `env_id`: its adapter gives its `parts` (a family
    whose own step does not reset, so VecEnv can make fewer resets than envs)."""
    return not is_host_id(env_id) and hasattr(family_of(env_id).adapter, "parts")


def is_atari_id(env_id: str) -> bool:
    """Whether `env_id` is an Atari game stepped in the compiled loop (envs/atari_adapter.py)."""
    return env_id in atari_adapter.IDS


def frame_stack_of(env_id: str) -> int:
    """Frames stacked on `env_id`'s observations (its spec's `frame_stack`, known without making it)."""
    return atari_adapter.FRAME_STACK if is_atari_id(env_id) else 1


def describe_ids() -> str:
    """Every id offered, by family, each optional family with its extra (for --help and errors)."""
    return "; ".join(
        f"{f.name}{f' (extra {f.extra})' if f.extra else ''}: {', '.join(f.ids)}" for f in FAMILIES
    ) + f"; host envs (the actor-learner; extra gymnasium, atari for ALE/): {HOST_PREFIX}ID for a registered gymnasium id with discrete actions"


def missing_extra(env_id: str) -> str | None:
    """The extra to install before `env_id` can be made, or None when its family is there."""
    family = family_of(env_id)
    if family.extra is None or importlib.util.find_spec(family.package) is not None:
        return None
    return family.extra


def make_vec_env(
    env_id: str, num_envs: int, full_action_set: bool = False, sticky_actions: float = 0.0, time_limit: int = 0,
    noop_max: int = 30, role: str = "train", reset_ratio: int = 1,
) -> VecEnv:
    """`num_envs` copies of `env_id`, stepped together. Raises ValueError for an unknown id.

    `full_action_set` (MinAtar, Atari): all actions (6, 18) instead of the game's minimal set.
    `sticky_actions`: probability of repeating the last action (MinAtar's original uses 0.1;
    Atari: the emulator's per frame, Machado et al.'s 0.25).
    `noop_max`, `role` (Atari only): up to that many no-ops at a reset; the emulators' role
    ('train', 'eval'): envs of different roles never share an emulator.
    `time_limit`: episodes truncated after this many steps instead of the env's own limit (0),
    set in each family's own terms (gymnax's and Craftax's params, xminigrid's max_steps, the
    Jumanji adapter's count), so it costs nothing per step.
    `reset_ratio` (families that `shares_resets`): envs per reset made each step (VecEnv).
    """
    family = family_of(env_id)
    if family.name == "atari":
        return atari_adapter.make(env_id, num_envs, sticky_actions, full_action_set, noop_max, time_limit, role)
    module = _ADAPTERS[family.name]
    if family.name == "gymnax":
        adapter = module.make(env_id, full_action_set, time_limit)
    else:
        adapter = module.make(env_id, time_limit)
    return VecEnv(adapter, num_envs, float(sticky_actions), reset_ratio)


def env_from_config(config, num_envs: int, role: str = "train") -> VecEnv:
    """The vectorized env a config describes, with `num_envs` copies. Training envs share resets
    as `reset_ratio` says; the others (evaluation, video) play each env's first episode only, so
    they make one reset per step where the family `shares_resets`: the first env to end gets its
    own, bit for bit, and what the others would start is never played."""
    reset_ratio = config.reset_ratio if role == "train" else (num_envs if shares_resets(config.env_id) else 1)
    return make_vec_env(config.env_id, num_envs, config.full_action_set, config.sticky_actions, config.time_limit,
                        config.noop_max, role, reset_ratio)  # fmt: skip
