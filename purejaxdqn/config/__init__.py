"""Run configuration: every setting in one frozen dataclass, plus presets and validation.

Settings fall in two kinds:
- *static* settings fix array shapes or program structure (env id, widths, batch size, buffer
  size, number of envs, ...). Changing one means a new compile.
- *hyperparameters* are plain numbers the compiled program reads at run time (learning rate,
  gamma, epsilon schedule, target period, ...). They travel in `HParams`, a pytree of scalars,
  so `jax.vmap` can sweep them inside one compiled program.

`Config.hparams()` builds the `HParams` pytree; everything else in `Config` is static.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax.numpy as jnp


class ConfigError(ValueError):
    """A setting is invalid. `option` names the setting (as the CLI spells it)."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


class HParams(NamedTuple):
    """Traced hyperparameters: scalars that `jax.vmap` can sweep in one compiled program.

    Every field is a float32 or int32 scalar (or, when vmapped, an array with a leading axis).
    """

    lr: Any  # Learning rate of the optimizer.
    gamma: Any  # Discount factor in (0, 1].
    eps_start: Any  # Exploration epsilon at step 0.
    eps_end: Any  # Exploration epsilon after `eps_decay_steps` env steps.
    eps_decay_steps: Any  # Env steps of the linear epsilon decay.
    learning_starts: Any  # Env steps collected before the first gradient update.
    target_update_every: Any  # Gradient updates between target-network updates.
    tau: Any  # Target update step size: 1.0 = hard copy, < 1 = Polyak averaging.
    huber_delta: Any  # Huber loss threshold (unused with the MSE loss).
    max_grad_norm: Any  # Global gradient-norm clip.
    priority_alpha: Any  # Prioritized replay: priority = (|TD error| + eps) ** alpha.
    priority_beta: Any  # Prioritized replay: importance-weight exponent at step 0, annealed to 1.


# Fields of HParams and their dtypes; also the set of settings `--sweep` accepts.
HPARAM_DTYPES = {
    "lr": jnp.float32,
    "gamma": jnp.float32,
    "eps_start": jnp.float32,
    "eps_end": jnp.float32,
    "eps_decay_steps": jnp.int32,
    "learning_starts": jnp.int32,
    "target_update_every": jnp.int32,
    "tau": jnp.float32,
    "huber_delta": jnp.float32,
    "max_grad_norm": jnp.float32,
    "priority_alpha": jnp.float32,
    "priority_beta": jnp.float32,
}


# Settings added after runs were first saved, with the value that reproduces what a run saved
# before them did (its config.json lacks them); any other missing setting is refused.
ADDED_SINCE = {"eval_epsilon": 0.0, "keep_best": False, "optimizer": "adam"}


def _field(default, help: str, group: str, **kw):
    return dataclasses.field(default=default, metadata={"help": help, "group": group, **kw})


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a run. Defaults are CleanRL's DQN settings for CartPole."""

    # -- environment --
    env_id: str = _field("CartPole-v1", "gymnax environment id (discrete actions)", "environment")
    num_envs: int = _field(10, "parallel training environments, stepped together", "environment")
    num_eval_envs: int = _field(10, "episodes per evaluation, each on its own eval env", "environment")
    full_action_set: bool = _field(
        False, "MinAtar: all 6 actions instead of the game's minimal set (the original protocol)", "environment"
    )
    sticky_actions: float = _field(
        0.0, "probability that an env repeats its last action (MinAtar's original protocol: 0.1)", "environment"
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

    # -- network --
    widths: tuple[int, ...] = _field((120, 84), "hidden layer widths of the MLP Q-network", "network")
    dueling: bool = _field(False, "use a dueling head (value + advantage streams)", "network")
    torso: str = _field(
        "mlp", "'mlp' (flatten, then --widths) or 'conv' (MinAtar: conv 16 3x3 stride 1, then --widths)",
        "network", choices=("mlp", "conv"),
    )  # fmt: skip
    distributional: bool = _field(False, "C51: learn a categorical return distribution per action", "network")
    num_atoms: int = _field(51, "C51: atoms of the return distribution", "network")
    v_min: float = _field(-10.0, "C51: smallest return on the support", "network")
    v_max: float = _field(10.0, "C51: largest return on the support", "network")

    # -- replay --
    buffer_size: int = _field(
        10_000, "replay capacity in transitions (rounded up to a multiple of num_envs)", "replay"
    )
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
    def actual_total_steps(self) -> int:
        return self.iterations * self.num_envs

    @property
    def buffer_rows(self) -> int:
        """Replay rows; each row holds one transition per env."""
        return math.ceil(self.buffer_size / self.num_envs)

    def hparams(self) -> HParams:
        """The traced hyperparameters of this config, as scalars of fixed dtype."""
        return HParams(**{k: jnp.asarray(getattr(self, k), HPARAM_DTYPES[k]) for k in HPARAM_DTYPES})

    def replace(self, **changes) -> "Config":
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


# Settings shared by the MinAtar game presets: the MinAtar paper's DQN (Young & Tian 2019:
# conv 16 3x3 -> dense 128, batch 32, replay 100k, one update per env step, target copy every
# 1000 updates, epsilon 1 -> 0.1 over 100k steps, Huber loss), with Adam instead of RMSProp
# and 8 envs stepped together (still one update per env step). 1M env steps.
_MINATAR = {
    "torso": "conv",
    "widths": (128,),
    "num_envs": 8,
    "num_eval_envs": 16,
    "total_steps": 1_000_000,
    "num_chunks": 20,
    "eval_every": 50_000,
    "buffer_size": 100_000,
    "batch_size": 32,
    "update_every": 1,
    "loss": "huber",
    "lr": 1e-4,
    "target_update_every": 1_000,
    "learning_starts": 5_000,
    "eps_end": 0.1,
    "eps_decay_steps": 100_000,
}

# Named sets of overrides on top of `Config` defaults. A preset with an `env_id` is a *base*
# preset for that env; one without is a *modifier* that stacks on a base (`--preset
# breakout,rainbow`). Listed left to right, later ones win; explicit options win over all.
PRESETS: dict[str, dict] = {
    # The reference workload of ../shared/notes/references.md: CleanRL's and PureJaxRL's
    # CartPole DQN, exactly: vanilla DQN targets, MSE, Adam without clipping, the Config
    # defaults for everything else.
    "reference": {"env_id": "CartPole-v1", "double_dqn": False, "max_grad_norm": 0.0},
    # The default on CartPole-v1: the reference algorithm (CleanRL's settings, vanilla DQN
    # targets, no clipping) on a compressed schedule, 300k steps with epsilon decayed over the
    # first 100k. Faster-learning settings (lr 1e-3 and up, several updates per step, Double
    # DQN, larger batches) solved sooner but collapsed again after solving; this one keeps
    # improving slowly. Tuning seeds 0-9: 9/10 >= 475 at each of the last 3 evals.
    "cartpole": {
        "env_id": "CartPole-v1",
        "double_dqn": False,
        "max_grad_norm": 0.0,
        "total_steps": 300_000,
        "num_chunks": 15,
        "eval_every": 20_000,
        "eps_decay_steps": 100_000,
    },
    # RL Baselines3 Zoo's tuned DQN for Acrobot-v1 (one update per env step, short
    # exploration), 100k steps; its target period of 250 env steps is 250 updates here. Tuning
    # seeds 0-9: mean -75.6, 9/10 at or above CleanRL's -88.9 (CleanRL's own settings, the
    # Config defaults, at 500k steps: mean -84.4, 8/10).
    "acrobot": {
        "env_id": "Acrobot-v1",
        "total_steps": 100_000,
        "num_chunks": 10,
        "eval_every": 10_000,
        "widths": (256, 256),
        "lr": 6.3e-4,
        "buffer_size": 50_000,
        "batch_size": 128,
        "learning_starts": 1_000,
        "update_every": 4,
        "gradient_steps": 4,
        "target_update_every": 250,
        "eps_end": 0.1,
        "eps_decay_steps": 12_000,
    },
    # RL Baselines3 Zoo's tuned DQN for MountainCar-v0 (few big update rounds, short
    # exploration, gamma 0.98), 120k steps; its target period of 600 env steps is 300 updates
    # here. Tuning seeds 0-9: mean -134.3, worst -189.0 (CleanRL's settings at 500k steps:
    # mean -183.4, 6 of 10 seeds end at -200).
    "mountaincar": {
        "env_id": "MountainCar-v0",
        "total_steps": 120_000,
        "num_chunks": 12,
        "eval_every": 10_000,
        "widths": (256, 256),
        "lr": 4e-3,
        "gamma": 0.98,
        "buffer_size": 10_000,
        "batch_size": 128,
        "learning_starts": 1_000,
        "update_every": 16,
        "gradient_steps": 8,
        "target_update_every": 300,
        "eps_end": 0.07,
        "eps_decay_steps": 24_000,
    },
    "breakout": {**_MINATAR, "env_id": "Breakout-MinAtar"},
    "freeway": {**_MINATAR, "env_id": "Freeway-MinAtar"},
    "asterix": {**_MINATAR, "env_id": "Asterix-MinAtar"},
    "space-invaders": {**_MINATAR, "env_id": "SpaceInvaders-MinAtar"},
    # Rainbow without noisy nets (epsilon-greedy exploration stays): Double, dueling, 3-step
    # returns, prioritized replay and C51, with the Adam settings of Dopamine's Rainbow.
    "rainbow": {
        "double_dqn": True,
        "dueling": True,
        "n_step": 3,
        "prioritized": True,
        "distributional": True,
        "lr": 1e-4,
        "adam_eps": 3.125e-4,
    },
    # MinAtar's original protocol: the full 6-action set and sticky actions (p = 0.1).
    "original": {"full_action_set": True, "sticky_actions": 0.1},
    # The MinAtar paper's learner exactly: centered RMSProp lr 2.5e-4, one env, vanilla DQN
    # targets, no gradient clipping (`freeway,original,minatar-paper` is the paper's whole
    # setup). On Freeway it keeps improving where the Adam presets level off, but it starts
    # slowly and 1 of 4 unseen seeds never learned (BENCHMARKS.md, "Freeway: where the gap
    # comes from").
    "minatar-paper": {"optimizer": "rmsprop", "lr": 2.5e-4, "num_envs": 1, "double_dqn": False, "max_grad_norm": 0.0},
}

# The base preset used when none is named, per env.
DEFAULT_PRESETS = {
    "CartPole-v1": "cartpole",
    **{p["env_id"]: name for name, p in PRESETS.items() if name != "reference" and "env_id" in p},
}


def preset_names(spec: str | None, env_id: str | None = None) -> list[str]:
    """The presets `spec` ('a,b,...'; None = the env's default) applies, in order.

    Without a base preset in `spec`, the env's default base preset (if any) goes first; 'none'
    means plain defaults plus the modifiers listed.
    """
    names = [n.strip() for n in spec.split(",")] if spec else []
    for name in names:
        if name not in PRESETS and name != "none":
            raise ConfigError("--preset", f"unknown preset {name!r}; choose from {', '.join([*PRESETS, 'none'])}")
    if "none" in names:
        return [n for n in names if n != "none"]
    if not any("env_id" in PRESETS[n] for n in names):
        default = DEFAULT_PRESETS.get(env_id or Config.env_id)
        names = [default, *names] if default else names
    return names


def from_preset(spec: str | None, **overrides) -> Config:
    """A config from presets (see `preset_names`) plus explicit overrides."""
    settings: dict = {}
    for name in preset_names(spec, overrides.get("env_id")):
        preset_env = PRESETS[name].get("env_id")
        if preset_env and overrides.get("env_id", preset_env) != preset_env:
            raise ConfigError("--preset", f"{name!r} is made for {preset_env} and contradicts --env-id {overrides['env_id']}")
        settings.update(PRESETS[name])
    settings.update(overrides)
    return Config(**settings)


def validate(config: Config) -> None:
    """Raise `ConfigError` naming the first bad setting. Cheap: compiles nothing."""
    from purejaxdqn.environments import SUPPORTED_ENV_IDS

    c = config
    _check_types(c)
    if c.env_id not in SUPPORTED_ENV_IDS:
        raise ConfigError(
            "--env-id",
            f"unknown or unsupported environment {c.env_id!r}; valid ids: {', '.join(SUPPORTED_ENV_IDS)}",
        )
    positive_ints = [
        "num_envs", "num_eval_envs", "total_steps", "num_chunks", "eval_every",
        "buffer_size", "batch_size", "update_every", "gradient_steps", "target_update_every",
        "eps_decay_steps", "n_step", "num_atoms",
    ]  # fmt: skip
    for name in positive_ints:
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(_opt(name), f"must be a positive integer, got {value!r}")
    if not isinstance(c.learning_starts, int) or c.learning_starts < 0:
        raise ConfigError("--learning-starts", f"must be a non-negative integer, got {c.learning_starts!r}")
    _check_counters(c)
    if not (_finite(c.lr) and c.lr > 0):
        raise ConfigError("--lr", f"learning rate must be positive, got {c.lr!r}")
    if not (_finite(c.gamma) and 0 < c.gamma <= 1):
        raise ConfigError("--gamma", f"must be in (0, 1], got {c.gamma!r}")
    if not (_finite(c.tau) and 0 < c.tau <= 1):
        raise ConfigError("--tau", f"must be in (0, 1], got {c.tau!r}")
    for name in ("eps_start", "eps_end", "eval_epsilon"):
        value = getattr(c, name)
        if not (_finite(value) and 0 <= value <= 1):
            raise ConfigError(_opt(name), f"must be in [0, 1], got {value!r}")
    for name in ("huber_delta", "adam_eps"):
        value = getattr(c, name)
        if not (_finite(value) and value > 0):
            raise ConfigError(_opt(name), f"must be positive, got {value!r}")
    if not (_finite(c.max_grad_norm) and c.max_grad_norm >= 0):
        raise ConfigError("--max-grad-norm", f"must be positive, or 0 for no clipping, got {c.max_grad_norm!r}")
    if c.distributional and c.num_atoms < 2:
        raise ConfigError("--num-atoms", f"C51 needs at least 2 atoms, got {c.num_atoms}")
    if c.distributional and not (_finite(c.v_min) and _finite(c.v_max) and c.v_min < c.v_max):
        raise ConfigError("--v-min/--v-max", f"need v_min < v_max, got {c.v_min!r} and {c.v_max!r}")
    if c.n_step >= c.buffer_rows:
        option = "--n-step" if c.buffer_size >= 2 * c.num_envs else "--buffer-size"
        raise ConfigError(option, f"--buffer-size {c.buffer_size} over --num-envs {c.num_envs} envs gives {c.buffer_rows} "
                          f"replay rows per env, which --n-step {c.n_step} needs more than: raise --buffer-size or lower --num-envs")
    if not (_finite(c.priority_alpha) and c.priority_alpha >= 0):
        raise ConfigError("--priority-alpha", f"must be 0 or more, got {c.priority_alpha!r}")
    if not (_finite(c.priority_beta) and 0 <= c.priority_beta <= 1):
        raise ConfigError("--priority-beta", f"must be in [0, 1], got {c.priority_beta!r}")
    if not (_finite(c.priority_eps) and c.priority_eps > 0):
        raise ConfigError("--priority-eps", f"must be positive, got {c.priority_eps!r}")
    if not (_finite(c.sticky_actions) and 0 <= c.sticky_actions < 1):
        raise ConfigError("--sticky-actions", f"must be in [0, 1), got {c.sticky_actions!r}")
    minatar = c.env_id.endswith("-MinAtar")
    if c.full_action_set and not minatar:
        raise ConfigError("--full-action-set", f"applies to MinAtar games only, not {c.env_id}")
    if c.torso == "conv" and not minatar:
        raise ConfigError("--torso", f"'conv' needs image observations (the MinAtar games), not {c.env_id}")
    if c.torso not in ("mlp", "conv"):
        raise ConfigError("--torso", f"must be 'mlp' or 'conv', got {c.torso!r}")
    if not c.widths:
        raise ConfigError("--widths", "needs at least one hidden layer width")
    if any(isinstance(w, bool) or not isinstance(w, int) or w <= 0 for w in c.widths):
        raise ConfigError("--widths", f"widths must be positive integers, got {list(c.widths)}")
    if c.loss not in ("huber", "mse"):
        raise ConfigError("--loss", f"must be 'huber' or 'mse', got {c.loss!r}")
    if c.batch_size > c.buffer_size:
        raise ConfigError(
            "--batch-size", f"{c.batch_size} is larger than the replay buffer (--buffer-size {c.buffer_size})"
        )
    if c.learning_starts < c.batch_size:
        raise ConfigError(
            "--learning-starts",
            f"{c.learning_starts} is below the batch size {c.batch_size}: the first update would "
            "sample transitions that were never collected",
        )
    if c.n_step > 1 and c.learning_starts <= (c.n_step - 1) * c.num_envs:
        raise ConfigError(
            "--learning-starts",
            f"{c.learning_starts} is too small for {c.n_step}-step returns with {c.num_envs} envs: the first "
            f"update would come before any {c.n_step}-step window is complete; use more than "
            f"{(c.n_step - 1) * c.num_envs}",
        )
    if c.learning_starts >= c.actual_total_steps:
        raise ConfigError(
            "--learning-starts",
            f"{c.learning_starts} is not below --total-steps {c.total_steps}: no update would ever run",
        )
    if c.eval_every < c.num_envs:
        raise ConfigError(
            "--eval-every", f"{c.eval_every} is below --num-envs {c.num_envs}: one step would cross several eval points"
        )
    if c.num_chunks > math.ceil(c.total_steps / c.num_envs):
        raise ConfigError(
            "--num-chunks", f"{c.num_chunks} chunks is more than the run's {math.ceil(c.total_steps / c.num_envs)} iterations"
        )


def _check_types(c: Config) -> None:
    """Each setting has its default's type, and one of its choices where it has them (a saved
    or hand-made config may not)."""
    for f in dataclasses.fields(c):
        value, kind = getattr(c, f.name), type(f.default)
        ok = {
            bool: lambda v: isinstance(v, bool),
            int: lambda v: isinstance(v, int) and not isinstance(v, bool),
            float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        }.get(kind, lambda v: isinstance(v, kind))(value)
        if not ok:
            raise ConfigError(_opt(f.name), f"must be of type {kind.__name__}, got {value!r}")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(_opt(f.name), f"must be one of {', '.join(choices)}, got {value!r}")


INT32_LIMIT = 2**31  # step, update and interval counters are int32 on the device
SEED_LIMIT = 2**32  # seeds are uint32


def _check_counters(c: Config) -> None:
    """Every integer the device counts in must fit its dtype, or the run would silently wrap."""
    if isinstance(c.seed, bool) or not isinstance(c.seed, int) or not 0 <= c.seed < SEED_LIMIT:
        raise ConfigError("--seed", f"must be an integer in [0, 2**32), got {c.seed!r}")
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if f.name != "seed" and isinstance(value, int) and not isinstance(value, bool) and value >= INT32_LIMIT:
            raise ConfigError(_opt(f.name), f"{value} does not fit the device's int32 counters (must be below 2**31)")
    derived = (
        ("--total-steps", "env steps after rounding up to whole chunks", c.actual_total_steps + c.num_envs),
        ("--buffer-size", "replay items (twice that in the priority tree)", 2 * c.buffer_rows * c.num_envs),
        ("--gradient-steps", "gradient updates of the run",
         (c.actual_total_steps // c.update_every + 1) * c.gradient_steps),
    )  # fmt: skip
    for option, what, value in derived:
        if value >= INT32_LIMIT:
            raise ConfigError(option, f"the run would count {value:,} {what}, more than the device's int32 counters hold (2**31)")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")
