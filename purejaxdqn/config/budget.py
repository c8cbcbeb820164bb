"""A run's budget: schedules given as fractions of the run, a run as long as asked, and the
warnings for schedules that do not fit the run (a quick test with a preset's 100k-step
exploration ends with epsilon near 1 and means nothing).

Pure functions of a `Config` (and the batch's swept settings); the command line applies them to
new runs (a resumed run keeps what it was made with).
"""

from __future__ import annotations

import math

from purejaxdqn.config.schema import Config, ConfigError, option

# Options that set a step count as a fraction of --total-steps (CleanRL's exploration_fraction).
FRACTIONS = {"exploration_fraction": "eps_decay_steps", "learning_starts_fraction": "learning_starts"}
FRACTION_HELP = {
    "exploration_fraction": "epsilon decays over this fraction of --total-steps (sets --eps-decay-steps; CleanRL's "
    "exploration_fraction), e.g. 0.5",
    "learning_starts_fraction": "the first update comes after this fraction of --total-steps (sets --learning-starts), "
    "e.g. 0.05",
}
MIN_UPDATES = 1_000  # per run: fewer, and a result says little about the settings (warned)


def from_fractions(config: Config, fractions: dict[str, float]) -> dict[str, int]:
    """The step counts the given fractions stand for, of `config.total_steps`: {setting: steps}."""
    steps = {}
    for name, fraction in fractions.items():
        low = 0.0 if name == "learning_starts_fraction" else 1e-300  # exploration needs a decay of 1+ steps
        if not (low <= fraction <= 1.0):
            interval = "[0, 1]" if low == 0.0 else "(0, 1]"
            raise ConfigError(option(name), f"must be a fraction of the run in {interval}, got {fraction:g}")
        steps[FRACTIONS[name]] = max(round(fraction * config.total_steps), 1 if low else 0)
    return steps


def chunks_for_exact_length(config: Config) -> int | None:
    """A --num-chunks near the config's that splits its vectorized steps evenly, so the run is
    exactly --total-steps long (None: it already is, or no such count is within a factor of 2)."""
    if config.total_steps % config.num_envs or config.actual_total_steps == config.total_steps:
        return None
    iterations, asked = config.total_steps // config.num_envs, config.num_chunks
    divisors = [d for d in range(max(1, asked // 2), min(iterations, 2 * asked) + 1) if iterations % d == 0]
    return min(divisors, key=lambda d: (abs(d - asked), -d)) if divisors else None


def length_note(config: Config) -> str | None:
    """Why the run is not exactly --total-steps long (None when it is)."""
    actual, asked = config.actual_total_steps, config.total_steps
    if actual == asked:
        return None
    why = f"{config.num_chunks} equal chunks (--num-chunks) of whole vectorized steps of --num-envs {config.num_envs}"
    fix = chunks_for_exact_length(config)
    hint = f"--num-chunks {fix}" if fix else f"--total-steps {_multiple(asked, config.num_envs * config.num_chunks):,}"
    return f"the run is {actual:,} env steps, not the {asked:,} asked: {why} ({hint} for an exact length)"


def _multiple(value: int, of: int) -> int:
    return math.ceil(value / of) * of


def warnings(config: Config, settings: list[dict] | None = None) -> list[str]:
    """One line for each schedule that does not fit the run: exploration that has not finished
    at its end, learning that starts in its second half, no evaluation before the end, fewer
    than MIN_UPDATES updates per run. `settings`: the batch's swept values (each setting is checked; the worst is named)."""
    variants = [config.replace(**s) for s in settings or [{}]]
    total, out = config.actual_total_steps, []
    worst = max(variants, key=lambda c: c.eps_decay_steps)
    if worst.eps_decay_steps > total and worst.eps_start != worst.eps_end:
        eps = worst.eps_start + (worst.eps_end - worst.eps_start) * total / worst.eps_decay_steps
        out.append(f"exploration does not finish: epsilon decays over {worst.eps_decay_steps:,} env steps "
                   f"(--eps-decay-steps) but the run has {total:,}, ending at epsilon {eps:.2f} "
                   "(--exploration-fraction 0.5 decays it over half the run)")  # fmt: skip
    worst = max(variants, key=lambda c: c.learning_starts)
    if worst.learning_starts * 2 > total:
        out.append(f"learning starts at {worst.learning_starts:,} env steps (--learning-starts), past half of the "
                   f"run's {total:,} (--learning-starts-fraction 0.05 starts it after 5%)")  # fmt: skip
    if config.eval_every >= total:
        out.append(f"--eval-every {config.eval_every:,} is not below the run's {total:,} env steps: only the final "
                   "evaluation runs (one point in curves.png)")  # fmt: skip
    fewest = min(updates_per_run(c) for c in variants)
    if fewest < MIN_UPDATES:
        out.append(f"each run does only {fewest:,} updates (fewer than {MIN_UPDATES:,}): its result says little "
                   "about the settings (more --total-steps, or a smaller --update-every / --learning-starts)")  # fmt: skip
    return out


def updates_per_run(config: Config) -> int:
    """Gradient updates one run does: `gradient_steps` per update round, a round every
    `update_every` env steps once `learning_starts` steps are collected."""
    total, every = config.actual_total_steps, config.update_every
    rounds = total // every - max(config.learning_starts - 1, 0) // every  # multiples of every in [starts, total]
    return max(rounds, 0) * config.gradient_steps
