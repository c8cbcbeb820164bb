"""Validation: `validate(config)`, `check_sweep(config, sweep)`, `check_used(config, names)` and
`check_hparams(config, hp)`.

`validate` runs short named checks in a fixed order and raises `ConfigError` for the first bad
setting; the order is part of the behaviour (it decides which of several problems is reported).
Nothing here compiles anything.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping, Sequence

from purejaxdqn.config import schedule
from purejaxdqn.config.schema import INT32_LIMIT, SEED_LIMIT, Config, ConfigError, option


def validate(config: Config) -> None:
    """Raise `ConfigError` naming the first bad setting. Cheap: compiles nothing."""
    for check in _CHECKS:
        check(config)


def check_sweep(config: Config, sweep: Mapping[str, Sequence], *, compile_in: bool = True) -> Config:
    """Check the values of a sweep ({setting: values}, settings already known to be sweepable)
    against `config`; return the config to compile. Raises `ConfigError`.

    `max_grad_norm` 0 means no clipping, which is program structure, not a traced number, so
    every swept max_grad_norm must be positive and the compiled config must clip:
    - `compile_in=True` (the command line): a preset may have clipping off, so the config
      returned has max_grad_norm = its first swept value;
    - `compile_in=False` (a config that is compiled as it is, e.g. the runner's): a config with
      clipping off cannot sweep max_grad_norm.
    Then each value must make a valid config: `validate(config.replace(name=value))`, its error
    named `--sweep NAME=VALUE`; and no swept setting may be one the config never reads
    (`check_used`).
    """
    check_used(config, sweep, "--sweep ")
    if "max_grad_norm" in sweep:
        if not compile_in and config.max_grad_norm == 0:
            raise ConfigError("max_grad_norm", "clipping is off in this config (0), so it cannot be swept; set a positive value")
        if 0 in sweep["max_grad_norm"]:
            raise ConfigError("--sweep max_grad_norm", "0 (no clipping) changes the program; sweep positive values only")
        if compile_in:
            config = config.replace(max_grad_norm=sweep["max_grad_norm"][0])
    for name, values in sweep.items():
        for value in values:
            try:
                validate(config.replace(**{name: value}))
            except ConfigError as err:
                raise ConfigError(f"--sweep {name}={value}", err.message) from None
    return config


def check_hparams(config: Config, hp) -> None:
    """Check an `HParams` given to `train(key, hp)` as `--sweep` values are checked: each
    concrete value (every element of a vmapped one) must make a valid config with `config`,
    integer settings take integers. Traced values (a `train` the caller jits or vmaps with `hp`
    as an argument) cannot be looked at here and pass unchecked. Raises ConfigError naming
    `hp.NAME`."""
    import jax
    import numpy as np

    for name, value in zip(type(hp)._fields, hp):
        if isinstance(value, jax.core.Tracer):
            continue
        values = np.asarray(value)
        integral = isinstance(Config.__dataclass_fields__[name].default, int)
        if values.dtype == bool or not np.issubdtype(values.dtype, np.integer if integral else np.number):
            raise ConfigError(f"hp.{name}", f"must be {'integers' if integral else 'numbers'}, got dtype {values.dtype}")
        for v in np.unique(values):
            try:
                validate(config.replace(**{name: v.item()}))
            except ConfigError as err:
                raise ConfigError(f"hp.{name}={v.item()!r}", err.message) from None


# A setting read only when another says so: (setting, whether the config reads it, what it needs).
_READ_ONLY_WITH: tuple[tuple[str, Callable[[Config], bool], str], ...] = (
    ("huber_delta", lambda c: c.loss == "huber", "--loss huber (with --loss mse the Huber threshold is unused)"),
    ("priority_alpha", lambda c: c.prioritized, "--prioritized (uniform replay has no priorities)"),
    ("priority_beta", lambda c: c.prioritized, "--prioritized (uniform replay has no importance weights)"),
    ("priority_eps", lambda c: c.prioritized, "--prioritized (uniform replay has no priorities)"),
    *((f.name, lambda c: _host(c), "a host env (--env-id gymnasium:ID): the actor-learner")
      for f in dataclasses.fields(Config) if f.metadata["group"] == "actor-learner"),
    *((name, lambda c: not c.apex_epsilons, "the epsilon schedule, not --apex-epsilons (fixed per actor)")
      for name in ("eps_start", "eps_end", "eps_decay_steps")),
    *((name, lambda c: _atari(c), "an Atari game in the compiled loop (--env-id Breakout, ...)")
      for name in ("noop_max", "episodic_life")),
)


def _host(c: Config) -> bool:
    from purejaxdqn.envs import is_host_id

    return is_host_id(c.env_id)


def _atari(c: Config) -> bool:
    from purejaxdqn.envs import is_atari_id

    return is_atari_id(c.env_id)


def _frames(c: Config) -> bool:
    """Whether `c` stores frames (its env's frame stack known from the id alone)."""
    from purejaxdqn.envs import frame_stack_of

    return c.stores_frames(frame_stack_of(c.env_id))


def check_used(config: Config, names, prefix: str = "") -> None:
    """Refuse a setting given (or swept) that `config` never reads: a run that would ignore it
    (a sweep of identical settings) is a mistake, not a choice."""
    for name, reads, needs in _READ_ONLY_WITH:
        if name in names and not reads(config):
            raise ConfigError(f"{prefix}{option(name) if not prefix else name}", f"only applies with {needs}")


# ------------------------------------------------------------------ the checks, in order
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
            raise ConfigError(option(f.name), f"must be of type {kind.__name__}, got {value!r}")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(option(f.name), f"must be one of {', '.join(choices)}, got {value!r}")


def _check_env(c: Config) -> None:
    from purejaxdqn.envs import SUPPORTED_ENV_IDS, describe_ids, is_host_id, missing_extra

    if is_host_id(c.env_id):
        from purejaxdqn.envs.host import check_host_id

        try:
            check_host_id(c.env_id, c.time_limit)
        except ValueError as err:
            raise ConfigError("--env-id", str(err)) from None
        return
    if c.env_id not in SUPPORTED_ENV_IDS:
        raise ConfigError("--env-id", f"unknown or unsupported environment {c.env_id!r}; valid ids: {describe_ids()}")
    extra = missing_extra(c.env_id)
    if extra:
        raise ConfigError(
            "--env-id", f"{c.env_id} needs the {extra} extra, which is not installed: pip install \"purejaxdqn[{extra}]\""
            f" (from a checkout: pip install -e \".[{extra}]\")",
        )


_POSITIVE_INTS = (
    "num_envs", "num_eval_envs", "total_steps", "num_chunks", "eval_every",
    "buffer_size", "batch_size", "update_every", "gradient_steps", "target_update_every",
    "eps_decay_steps", "n_step", "num_atoms", "reset_ratio",
)  # fmt: skip


def _check_counts(c: Config) -> None:
    for name in _POSITIVE_INTS:
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(option(name), f"must be a positive integer, got {value!r}")
    if not isinstance(c.learning_starts, int) or c.learning_starts < 0:
        raise ConfigError("--learning-starts", f"must be a non-negative integer, got {c.learning_starts!r}")
    if isinstance(c.time_limit, bool) or not isinstance(c.time_limit, int) or c.time_limit < 0:
        raise ConfigError("--time-limit", f"must be a non-negative integer (0: the env's own), got {c.time_limit!r}")


def _check_counters(c: Config) -> None:
    """Every integer the device counts in must fit its dtype, or the run would silently wrap."""
    if isinstance(c.seed, bool) or not isinstance(c.seed, int) or not 0 <= c.seed < SEED_LIMIT:
        raise ConfigError("--seed", f"must be an integer in [0, 2**32), got {c.seed!r}")
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if f.name != "seed" and isinstance(value, int) and not isinstance(value, bool) and value >= INT32_LIMIT:
            raise ConfigError(option(f.name), f"{value} does not fit the device's int32 counters (must be below 2**31)")
    derived = (
        ("--total-steps", "env steps after rounding up to whole chunks", c.actual_total_steps + c.num_envs),
        ("--buffer-size", "replay items (twice that in the priority tree)", 2 * c.buffer_rows * c.num_envs),
        ("--gradient-steps", "gradient updates of the run",
         (c.actual_total_steps // c.update_every + 1) * c.gradient_steps),
    )  # fmt: skip
    for name, what, value in derived:
        if value >= INT32_LIMIT:
            raise ConfigError(name, f"the run would count {value:,} {what}, more than the device's int32 counters hold (2**31)")


def _positive(v) -> bool:
    return v > 0


def _unit(v) -> bool:
    return 0 <= v <= 1


def _open_unit(v) -> bool:
    return 0 < v <= 1


# (setting, test of a finite value, what the message says it must be), checked in this order.
_LEARNER_NUMBERS: tuple[tuple[str, Callable, str], ...] = (
    ("lr", _positive, "learning rate must be positive"),
    ("gamma", _open_unit, "must be in (0, 1]"),
    ("tau", _open_unit, "must be in (0, 1]"),
    ("eps_start", _unit, "must be in [0, 1]"),
    ("eps_end", _unit, "must be in [0, 1]"),
    ("eval_epsilon", _unit, "must be in [0, 1]"),
    ("huber_delta", _positive, "must be positive"),
    ("adam_eps", _positive, "must be positive"),
    ("max_grad_norm", lambda v: v >= 0, "must be positive, or 0 for no clipping"),
)
_REPLAY_AND_ENV_NUMBERS: tuple[tuple[str, Callable, str], ...] = (
    ("priority_alpha", lambda v: v >= 0, "must be 0 or more"),
    ("priority_beta", _unit, "must be in [0, 1]"),
    ("priority_eps", _positive, "must be positive"),
    ("sticky_actions", lambda v: 0 <= v < 1, "must be in [0, 1)"),
)


def _numbers_in_range(table) -> Callable[[Config], None]:
    def check(c: Config) -> None:
        for name, test, must in table:
            value = getattr(c, name)
            if not (_finite(value) and test(value)):
                raise ConfigError(option(name), f"{must}, got {value!r}")

    return check


def _check_distributional(c: Config) -> None:
    if c.distributional and c.num_atoms < 2:
        raise ConfigError("--num-atoms", f"C51 needs at least 2 atoms, got {c.num_atoms}")
    if c.distributional and not (_finite(c.v_min) and _finite(c.v_max) and c.v_min < c.v_max):
        raise ConfigError("--v-min/--v-max", f"need v_min < v_max, got {c.v_min!r} and {c.v_max!r}")


def _check_n_step_rows(c: Config) -> None:
    if c.n_step >= c.buffer_rows:
        blamed = "--n-step" if c.buffer_size >= 2 * c.num_envs else "--buffer-size"
        raise ConfigError(blamed, f"--buffer-size {c.buffer_size} over --num-envs {c.num_envs} envs gives {c.buffer_rows} "
                          f"replay rows per env, which --n-step {c.n_step} needs more than: raise --buffer-size or lower --num-envs")  # fmt: skip


def _check_family_settings(c: Config) -> None:
    """Settings made for some env families only: the full action set, the conv and Nature
    torsos, shared resets."""
    from purejaxdqn.envs import image_observations, shares_resets

    if c.full_action_set and not (c.env_id.endswith("-MinAtar") or _atari(c)):
        raise ConfigError("--full-action-set", f"applies to MinAtar and Atari games only, not {c.env_id}")
    if c.torso == "nature" and not _atari(c):
        raise ConfigError("--torso", f"'nature' is the Atari network (84x84 frames), not one for {c.env_id}")
    if c.torso != "nature" and _atari(c):  # the MinAtar conv on 84x84x4 frames: a 58M-weight dense layer
        raise ConfigError("--torso", f"an Atari game's 84x84 frames need the 'nature' torso, not '{c.torso}'")
    if c.torso == "conv" and not image_observations(c.env_id):
        raise ConfigError("--torso", f"'conv' needs image observations (the MinAtar games, MiniGrid), not {c.env_id}")
    if c.reset_ratio > 1 and not shares_resets(c.env_id):
        raise ConfigError("--reset-ratio", f"applies to Craftax, XLand-MiniGrid and Jumanji (their step does not reset), "
                          f"not {c.env_id}: use 1")  # fmt: skip
    if c.reset_ratio > c.num_envs:
        raise ConfigError("--reset-ratio", f"{c.reset_ratio} is more than --num-envs {c.num_envs} (one reset per step "
                          f"for all envs is --reset-ratio {c.num_envs})")  # fmt: skip


def _check_widths(c: Config) -> None:
    if not c.widths:
        raise ConfigError("--widths", "needs at least one hidden layer width")
    if any(isinstance(w, bool) or not isinstance(w, int) or w <= 0 for w in c.widths):
        raise ConfigError("--widths", f"widths must be positive integers, got {list(c.widths)}")


def _check_replay_fills(c: Config) -> None:
    """The first update samples only transitions that were collected, and does come."""
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


MAX_LOG_WINDOWS = 1_000  # metrics rows per chunk and run (--log-every): the per-chunk fetch stays small


def _check_schedule(c: Config) -> None:
    if c.eval_every < c.num_envs:
        raise ConfigError(
            "--eval-every", f"{c.eval_every} is below --num-envs {c.num_envs}: one step would cross several eval points"
        )
    if c.num_chunks > math.ceil(c.total_steps / c.num_envs):
        raise ConfigError(
            "--num-chunks", f"{c.num_chunks} chunks is more than the run's {math.ceil(c.total_steps / c.num_envs)} iterations"
        )
    if c.log_every < 0 or c.log_every % c.num_envs:
        raise ConfigError("--log-every", f"must be 0 or a positive multiple of --num-envs {c.num_envs} (env steps come "
                          f"{c.num_envs} at a time), got {c.log_every}")  # fmt: skip
    if c.log_windows > MAX_LOG_WINDOWS:
        raise ConfigError("--log-every", f"{c.log_every} gives {c.log_windows:,} rows per chunk of {c.chunk_steps:,} env "
                          f"steps, over {MAX_LOG_WINDOWS:,}: use a larger --log-every or more --num-chunks")  # fmt: skip
    if _host(c) and c.eval_every < (block := _block_steps(c)):
        raise ConfigError("--eval-every", f"{c.eval_every} is below a block's {block} env steps (the learner "
                          "evaluates between blocks): lower --block-steps or raise --eval-every")  # fmt: skip
    if isinstance(c.unroll, bool) or not isinstance(c.unroll, int) or c.unroll < 0:
        raise ConfigError("--unroll", f"must be 0 (the backend's default) or a positive integer, got {c.unroll!r}")
    if c.loop == "static" and schedule.chunk_schedule(c) is None:
        raise ConfigError("--loop", schedule.why_not_static(c) + "; use --loop auto or branching")


MAX_ACTORS = 256  # --actors: threads of one process


def _block_steps(c: Config) -> int:
    return c.block_rows * c.num_envs


def _check_host(c: Config) -> None:
    """The actor-learner's settings, for a host env; what it cannot do, refused."""
    if not _host(c):
        return
    for name in ("block_steps", "queue_size", "publish_every"):
        if getattr(c, name) < 1:
            raise ConfigError(option(name), f"must be a positive integer, got {getattr(c, name)}")
    if not 1 <= c.actors <= MAX_ACTORS:
        raise ConfigError("--actors", f"must be an integer from 1 to {MAX_ACTORS}, got {c.actors}")
    if c.num_envs % c.actors:
        raise ConfigError("--actors", f"{c.actors} actors must divide --num-envs {c.num_envs} (each steps its own share)")
    if c.actor_priorities and not (c.prioritized and c.n_step == 1 and not c.distributional):
        raise ConfigError("--actor-priorities", "needs --prioritized with 1-step returns and no C51 (an actor's "
                          "priority is its |TD error| of one step)")  # fmt: skip
    if c.host_loop == "sync" and c.rate_limit == "free":
        raise ConfigError("--rate-limit", "'free' needs --host-loop async (one thread never waits for data)")
    refused = (("sticky_actions", c.sticky_actions > 0, "set the env's own (ALE: repeat_action_probability)"),
               ("keep_best", c.keep_best, "the actor-learner keeps the final parameters only"))  # fmt: skip
    for name, given, why in refused:
        if given:
            raise ConfigError(option(name), f"does not apply to a host env: {why}")


def _check_atari(c: Config) -> None:
    """An Atari game: its replay must skip the ALE's reset steps, which only 'frames' knows.
    Elsewhere no env reports lost lives, so `episodic_life` has nothing to end (the command
    line's check_used says so first)."""
    if not _atari(c):
        if c.episodic_life:
            raise ConfigError("--episodic-life", f"only applies with an Atari game (an env with lives), not {c.env_id}")
        return
    if c.replay_layout == "pairs":
        raise ConfigError("--replay-layout", "'pairs' cannot skip the ALE's reset steps (the step after an "
                          "episode's end only resets): use 'frames' or 'auto' for an Atari game")  # fmt: skip
    if isinstance(c.noop_max, bool) or not isinstance(c.noop_max, int) or c.noop_max < 0:
        raise ConfigError("--noop-max", f"must be a non-negative integer, got {c.noop_max!r}")


def _check_frames(c: Config) -> None:
    """The frames layout (algorithm/frame_replay.py): the compiled loop's, with room for a
    window, its bootstrap frame and a stack's history."""
    if not _frames(c):
        return
    if _host(c):
        raise ConfigError("--replay-layout", "'frames' is the compiled loop's; a host env's replay stores pairs")
    if c.buffer_rows <= c.n_step + 3:
        raise ConfigError("--buffer-size", f"{c.buffer_rows} replay rows per env are too few for 'frames' with "
                          f"--n-step {c.n_step}: it needs more than {c.n_step + 3}")  # fmt: skip
    if c.learning_starts <= c.n_step * c.num_envs:
        raise ConfigError("--learning-starts", f"{c.learning_starts} is too small for --replay-layout frames with "
                          f"{c.num_envs} envs: a row is sampleable once the {c.n_step} after it are stored; use more "
                          f"than {c.n_step * c.num_envs}")  # fmt: skip


# The order of the checks decides which error a config with several problems gets.
_CHECKS: tuple[Callable[[Config], None], ...] = (
    _check_types,  # types and choices first: the checks after it may rely on them
    _check_env,
    _check_counts,
    _check_counters,
    _numbers_in_range(_LEARNER_NUMBERS),
    _check_distributional,
    _check_n_step_rows,
    _numbers_in_range(_REPLAY_AND_ENV_NUMBERS),
    _check_family_settings,
    _check_widths,
    _check_replay_fills,
    _check_host,
    _check_atari,
    _check_frames,
    _check_schedule,
)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
