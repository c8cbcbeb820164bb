"""Schedules and interval checks in env steps.

Env steps advance by `num_envs` per vectorized step, so a check such as `steps % N == 0`
never fires when `num_envs` does not divide `N`. Intervals here count the multiples of `N`
*crossed* by a step instead, which is right for any number of envs.
"""

from __future__ import annotations

import jax.numpy as jnp


def linear_epsilon(step, start, end, decay_steps, xp=jnp):
    """Epsilon decayed linearly from `start` to `end` over `decay_steps` env steps, then held
    (`xp=np`: on the host, no device call)."""
    frac = xp.clip(step / decay_steps, 0.0, 1.0)
    return start + frac * (end - start)


def multiples_crossed(before, after, every, start=0, xp=jnp):
    """How many multiples `k * every` (k >= 1) with `k * every >= start` lie in `(before, after]`.

    `before` and `after` are the env-step counters before and after a vectorized step.
    Integer arithmetic throughout; works on traced values and under vmap (`xp=np`: on the host,
    on numpy arrays or integers, with no device call).
    """
    low = xp.maximum(before, start - 1)
    return xp.maximum(after // every - low // every, 0)
