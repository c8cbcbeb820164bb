"""What a run's settings are: the frozen `Config` dataclass, its traced part `HParams`, and
`ConfigError`.

Settings fall in two kinds:
- *static* settings fix array shapes or program structure (env id, widths, batch size, buffer
  size, number of envs, ...). Changing one means a new compile.
- *hyperparameters* are plain numbers the compiled program reads at run time (learning rate,
  gamma, epsilon schedule, target period, ...). They are the `Config` fields marked
  `sweep=True`, the one place that says which settings are traced: `HParams` (a pytree of
  scalars that `jax.vmap` can sweep inside one compiled program), its dtypes and the set of
  settings `--sweep` accepts (`SWEEPABLE`) are all derived from those markers.

`Config.hparams()` builds the `HParams` pytree; everything else in `Config` is static.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax.numpy as jnp


def option(name: str) -> str:
    """A setting's command-line option: lr_decay -> --lr-decay (what a ConfigError names)."""
    return "--" + name.replace("_", "-")


class ConfigError(ValueError):
    """A setting is invalid. `option` names the setting (as the CLI spells it)."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


INT32_LIMIT = 2**31  # step, update and interval counters are int32 on the device
SEED_LIMIT = 2**32  # seeds are uint32

# Settings added after runs were first saved, with the value that reproduces what a run saved
# before them did (its config.json lacks them); any other missing setting is refused.
ADDED_SINCE = {"eval_epsilon": 0.0, "keep_best": False, "optimizer": "adam", "loop": "branching", "unroll": 0, "time_limit": 0,
               "log_every": 0, "actors": 1, "host_loop": "async", "rate_limit": "held", "block_steps": 8, "queue_size": 2,
               "publish_every": 1, "apex_epsilons": False, "actor_priorities": False, "clip_rewards": False,
               "replay_layout": "pairs", "noop_max": 30, "episodic_life": False, "reset_ratio": 1}  # fmt: skip


def _field(default, help: str, group: str, **kw):
    return dataclasses.field(default=default, metadata={"help": help, "group": group, **kw})


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a run.

    The defaults are CleanRL's (and PureJaxRL's) DQN settings for CartPole-v1, with 10 envs
    stepped together, except two: Double DQN targets are on (`double_dqn=True`; CleanRL's are
    vanilla DQN targets) and gradients are clipped to global norm 10 (`max_grad_norm=10`;
    CleanRL does not clip). The 'reference' preset is CleanRL's settings exactly. `Config()`
    and `--preset none` give these defaults; the command line and `from_preset(None)` start
    from the env's default preset instead ('cartpole' on CartPole-v1; see `presets`).

    A field's metadata holds its `help` and `group` (the command line's), its `choices` where it
    has them, and `sweep=True` on the traced hyperparameters: those fields, and only those, are
    `HParams` and can be swept with `--sweep`.
    """

    # -- environment --
    env_id: str = _field("CartPole-v1", "environment id: gymnax, Craftax, XLand-MiniGrid or Jumanji (the extras)", "environment")
    num_envs: int = _field(10, "parallel training environments, stepped together", "environment")
    num_eval_envs: int = _field(10, "episodes per evaluation, each on its own eval env", "environment")
    full_action_set: bool = _field(
        False, "MinAtar, Atari: all actions (6, 18) instead of the game's minimal set (MinAtar's original protocol, "
        "Machado et al.'s)", "environment",
    )  # fmt: skip
    sticky_actions: float = _field(
        0.0, "probability that an env repeats its last action (MinAtar's original protocol: 0.1; Atari: per "
        "emulator frame, Machado et al.: 0.25)", "environment",
    )  # fmt: skip
    noop_max: int = _field(30, "Atari: up to this many no-op steps at each reset (random starts)", "environment")
    episodic_life: bool = _field(
        False, "Atari: a lost life ends the TD target (no bootstrap) while the game plays on; returns stay whole "
        "games'", "environment",
    )  # fmt: skip
    time_limit: int = _field(
        0, "episode time limit in env steps, a truncation (bootstrapped); 0: the env's own", "environment"
    )
    reset_ratio: int = _field(
        1, "training envs per reset made each step: > 1 makes ceil(num_envs / ratio) resets per step "
        "(optimistic resets, as Craftax's baselines), exact while no more envs end at once, beyond that ended "
        "envs share a start; Craftax, XLand-MiniGrid, Jumanji", "environment",
    )  # fmt: skip
    clip_rewards: bool = _field(
        False, "replay stores each reward's sign (Nature DQN's clipping); returns are logged unclipped", "environment"
    )

    # -- run length and logging --
    total_steps: int = _field(
        500_000,
        "total env steps (summed over envs); rounded up to a whole number of chunks",
        "run",
    )
    seed: int = _field(0, "random seed for network init, envs and exploration", "run")
    num_chunks: int = _field(
        20, "the run is cut into this many jitted chunks for progress and logging", "run"
    )
    eval_every: int = _field(
        25_000, "env steps between evaluations (and one at the end)", "run"
    )
    log_every: int = _field(
        0, "env steps between metrics.jsonl rows (and tracker points) within a chunk: loss, Q, episodes and "
        "returns per window; 0 = one row per chunk", "run",
    )  # fmt: skip
    eval_epsilon: float = _field(
        0.01,
        "evaluation plays epsilon-greedy with this epsilon, so the episodes of a deterministic env differ "
        "(greedy, every eval env would replay one episode); 0 = purely greedy",
        "run",
    )
    keep_best: bool = _field(
        False,
        "also keep the parameters of the best evaluation so far (load_policy(best=True), evaluate --best); "
        "the final parameters stay the default",
        "run",
    )

    # -- the compiled program (never changes results) --
    loop: str = _field(
        "auto",
        "the compiled chunk: 'static' lays out its env steps, update rounds and evaluations as straight scans "
        "fixed at compile time (no branch or traced-length loop per env step: no host round trip on a GPU); "
        "'branching' decides them per env step with lax.cond; 'auto' = static wherever a chunk's env steps are a "
        "whole number of update rounds and a whole number or a whole fraction of an eval interval",
        "run", choices=("auto", "static", "branching"),
    )  # fmt: skip
    unroll: int = _field(
        0, "iterations of the static chunk's inner scans (a pattern of env steps and their updates) unrolled "
        "together (lax.scan unroll); 0 = the backend's default (for one run per device; several get 1)",
        "run",
    )

    # -- the actor-learner (host envs, gymnasium:ID: they step on the host, not in the compiled loop) --
    actors: int = _field(
        1, "host envs: actor threads, each stepping --num-envs / N of the envs with its own copy of the policy", "actor-learner"
    )
    host_loop: str = _field(
        "async", "host envs: 'async' runs the actors and the learner at once (threads); 'sync' alternates them in "
        "one thread, the same code (the baseline)", "actor-learner", choices=("async", "sync"),
    )  # fmt: skip
    rate_limit: str = _field(
        "held", "host envs: 'held' gives each block of env steps exactly the updates the compiled loop would "
        "(--update-every, --gradient-steps); 'free' lets the learner update whenever no block is waiting",
        "actor-learner", choices=("held", "free"),
    )  # fmt: skip
    block_steps: int = _field(
        8, "host envs: vectorized env steps per block an actor sends the learner (the largest divisor of a chunk's "
        "steps up to this)", "actor-learner",
    )  # fmt: skip
    queue_size: int = _field(
        2, "host envs: blocks an actor may have waiting for the learner before it waits too (bounds the policy lag)",
        "actor-learner",
    )  # fmt: skip
    publish_every: int = _field(
        1, "host envs: gradient updates between the parameters the learner publishes to the actors", "actor-learner"
    )
    apex_epsilons: bool = _field(
        False, "host envs: actor i explores with the fixed epsilon 0.4^(1 + 7 i / (N - 1)) (Ape-X) instead of the "
        "--eps-* schedule", "actor-learner",
    )  # fmt: skip

    actor_priorities: bool = _field(
        False, "host envs, with --prioritized and 1-step returns: new transitions enter replay at the priority their "
        "actor computed, |TD error| under its copy of the network (Ape-X), instead of the largest priority so far",
        "actor-learner",
    )  # fmt: skip

    # -- network --
    widths: tuple[int, ...] = _field((120, 84), "hidden layer widths of the MLP Q-network", "network")
    dueling: bool = _field(False, "use a dueling head (value + advantage streams)", "network")
    torso: str = _field(
        "mlp", "'mlp' (flatten, then --widths), 'conv' (MinAtar: conv 16 3x3 stride 1, then --widths) or 'nature' "
        "(Atari: the Nature DQN's convs 32 8x8/4, 64 4x4/2, 64 3x3/1 on pixels / 255, then --widths)",
        "network", choices=("mlp", "conv", "nature"),
    )  # fmt: skip
    distributional: bool = _field(False, "C51: learn a categorical return distribution per action", "network")
    num_atoms: int = _field(51, "C51: atoms of the return distribution", "network")
    v_min: float = _field(-10.0, "C51: smallest return on the support", "network")
    v_max: float = _field(10.0, "C51: largest return on the support", "network")

    # -- replay --
    buffer_size: int = _field(
        10_000, "replay capacity in transitions (rounded up to a multiple of num_envs)", "replay"
    )
    replay_layout: str = _field(
        "auto", "'pairs' stores each transition's observation and next observation; 'frames' stores each "
        "observation once (a stack's newest frame), rebuilding stacks and next observations when a batch is sampled "
        "(half the memory or less); 'auto' = frames for frame-stacked envs (Atari), else pairs", "replay",
        choices=("auto", "pairs", "frames"),
    )  # fmt: skip
    batch_size: int = _field(128, "transitions per gradient update", "replay")
    n_step: int = _field(1, "n-step returns: rewards summed over up to n steps before bootstrapping", "replay")
    prioritized: bool = _field(False, "proportional prioritized replay (sum tree on the device)", "replay")
    priority_alpha: float = _field(0.5, "prioritized replay: priority exponent alpha", "replay", sweep=True)
    priority_beta: float = _field(
        0.4, "prioritized replay: importance-weight exponent at the start, annealed linearly to 1", "replay", sweep=True
    )
    priority_eps: float = _field(1e-6, "prioritized replay: added to |TD error| so no priority is 0", "replay")

    # -- learner (static structure) --
    double_dqn: bool = _field(True, "Double DQN targets (online net picks, target net rates)", "learner")
    loss: str = _field("mse", "TD loss: 'huber' or 'mse'", "learner", choices=("huber", "mse"))
    update_every: int = _field(10, "env steps between gradient-update rounds", "learner")
    gradient_steps: int = _field(1, "gradient updates per round", "learner")
    optimizer: str = _field(
        "adam", "'adam', or 'rmsprop': the MinAtar paper's centered RMSProp (decay 0.95, eps 0.01 "
        "added to the root, as PyTorch does)", "learner", choices=("adam", "rmsprop"),
    )  # fmt: skip
    adam_eps: float = _field(1e-8, "Adam epsilon", "learner")
    lr_decay: bool = _field(False, "anneal the learning rate linearly to 0 over the run's updates", "learner")

    # -- learner (traced hyperparameters: sweepable) --
    lr: float = _field(2.5e-4, "learning rate (of --optimizer)", "learner", sweep=True)
    gamma: float = _field(0.99, "discount factor, in (0, 1]", "learner", sweep=True)
    target_update_every: int = _field(
        50, "gradient updates between target-network updates", "learner", sweep=True
    )
    tau: float = _field(
        1.0, "target update step size: 1 = hard copy, <1 = Polyak averaging", "learner", sweep=True
    )
    huber_delta: float = _field(1.0, "Huber loss threshold", "learner", sweep=True)
    max_grad_norm: float = _field(
        10.0, "clip gradients to this global norm; 0 = no clipping (then not sweepable)", "learner", sweep=True
    )
    learning_starts: int = _field(
        10_000, "env steps collected before the first gradient update", "learner", sweep=True
    )

    # -- exploration (traced) --
    eps_start: float = _field(1.0, "initial exploration epsilon", "exploration", sweep=True)
    eps_end: float = _field(0.05, "final exploration epsilon", "exploration", sweep=True)
    eps_decay_steps: int = _field(
        250_000, "env steps over which epsilon decays linearly", "exploration", sweep=True
    )

    # ---------------------------------------------------------------- derived static shapes
    @property
    def iterations(self) -> int:
        """Vectorized env steps in the whole run (a multiple of `num_chunks`)."""
        return self.iterations_per_chunk * self.num_chunks

    @property
    def iterations_per_chunk(self) -> int:
        return math.ceil(math.ceil(self.total_steps / self.num_envs) / self.num_chunks)

    @property
    def chunk_steps(self) -> int:
        """Env steps of one chunk."""
        return self.iterations_per_chunk * self.num_envs

    @property
    def log_windows(self) -> int:
        """metrics.jsonl rows per chunk and run: windows of `log_every` env steps (the last one
        may be shorter), or 1 (the whole chunk)."""
        return math.ceil(self.chunk_steps / self.log_every) if self.log_every else 1

    @property
    def block_rows(self) -> int:
        """The actor-learner's rows per block: the largest divisor of a chunk's vectorized steps
        up to `block_steps`, so every chunk is whole blocks."""
        n = self.iterations_per_chunk
        return max(d for d in range(1, min(self.block_steps, n) + 1) if n % d == 0)

    @property
    def actual_total_steps(self) -> int:
        return self.iterations * self.num_envs

    @property
    def buffer_rows(self) -> int:
        """Replay rows; each row holds one transition per env."""
        return math.ceil(self.buffer_size / self.num_envs)

    def stores_frames(self, frame_stack: int) -> bool:
        """Whether replay stores single frames on an env stacking `frame_stack` of them:
        `--replay-layout frames`, or 'auto' on a frame-stacked env (algorithm/frame_replay.py)."""
        return self.replay_layout == "frames" or (self.replay_layout == "auto" and frame_stack > 1)

    def hparams(self) -> HParams:
        """The traced hyperparameters of this config, as scalars of fixed dtype."""
        return HParams(**{k: jnp.asarray(getattr(self, k), HPARAM_DTYPES[k]) for k in SWEEPABLE})

    def replace(self, **changes) -> "Config":
        unknown = sorted(set(changes) - set(self.__dataclass_fields__))
        if unknown:
            raise ConfigError(unknown[0], "unknown setting")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        d = dict(d)
        if isinstance(d.get("widths"), list):
            d["widths"] = tuple(d["widths"])
        d = {**{k: v for k, v in ADDED_SINCE.items() if k not in d}, **d}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(unknown[0], "unknown setting")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in d]
        if missing:  # a default here could silently make a different run
            raise ConfigError(missing[0], "missing from the saved config (no default is assumed)")
        if "widths" in d and not isinstance(d["widths"], (list, tuple)):
            raise ConfigError("--widths", f"must be a list of integers, got {d['widths']!r}")
        return cls(**d)


# ------------------------------------------------------------------ the traced hyperparameters
_SWEPT_FIELDS = [f for f in dataclasses.fields(Config) if f.metadata.get("sweep")]
# The settings `--sweep` accepts, which are the fields of `HParams`, in `Config`'s field order.
SWEEPABLE: tuple[str, ...] = tuple(f.name for f in _SWEPT_FIELDS)


def _device_dtype(field: dataclasses.Field):
    """A traced setting's dtype on the device: int32 for an int default, float32 for a float one."""
    kind = {int: jnp.int32, float: jnp.float32}.get(type(field.default))
    if kind is None:
        raise TypeError(f"Config.{field.name} is marked sweep=True, but its default {field.default!r} is not an int or a float")
    return kind


# Each traced setting's device dtype (what `Config.hparams()` casts to).
HPARAM_DTYPES = {f.name: _device_dtype(f) for f in _SWEPT_FIELDS}

# A NamedTuple (a pytree, flattened in field order) built from the markers; its docstring lists
# the fields with their help.
HParams = NamedTuple("HParams", [(name, Any) for name in SWEEPABLE])
HParams.__doc__ = (
    "Traced hyperparameters: scalars that `jax.vmap` can sweep in one compiled program.\n\n"
    "One field per `Config` setting marked `sweep=True`, in `Config`'s order; each is a float32 or "
    "int32 scalar (the setting's default's type), or, when vmapped, an array with a leading axis:\n\n"
    + "\n".join(f"- {f.name} ({HPARAM_DTYPES[f.name].__name__}): {f.metadata['help']}" for f in _SWEPT_FIELDS)
)
