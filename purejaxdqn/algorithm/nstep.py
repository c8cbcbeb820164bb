"""Truncation-aware n-step returns over a window of consecutive steps of one env.

A window row holds steps t, ..., t+n-1. The return stops at the first step that ends the
episode, counted inclusively (k = j + 1 for the first j with terminated or truncated, else
k = n), and bootstraps from the next_obs of step k-1:

- terminated at k-1: no bootstrap, discount 0;
- truncated at k-1 (time limit): the sum stops, but the target still bootstraps with gamma^k
  from that step's next_obs (the episode's final observation);
- no end in the window: bootstrap with gamma^n from step n-1's next_obs.

A step both terminated and truncated counts as terminated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def nstep_return(
    rewards: jax.Array, terminated: jax.Array, truncated: jax.Array, gamma, n: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(returns [B], discounts [B], last [B] int32) for windows [B, >= n]; uses the first n steps.

    returns = sum_{i<k} gamma^i r_i; discounts = gamma^k, or 0 if step k-1 is terminated;
    last = k - 1, the window step whose next_obs is the bootstrap observation. `gamma` may be
    traced; `n` is static.
    """
    rewards = jnp.asarray(rewards, jnp.float32)[:, :n]
    terminated = jnp.asarray(terminated, bool)[:, :n]
    truncated = jnp.asarray(truncated, bool)[:, :n]
    done = (terminated | truncated).astype(jnp.int32)
    # Step i is in the sum iff no step before it ended the episode.
    ended_before = (jnp.cumsum(done, axis=1) - done) > 0
    included = ~ended_before
    gamma = jnp.asarray(gamma, jnp.float32)
    powers = gamma ** jnp.arange(n, dtype=jnp.float32)  # 0 ** 0 == 1
    returns = jnp.sum(jnp.where(included, powers * rewards, 0.0), axis=1)
    k = jnp.sum(included, axis=1, dtype=jnp.int32)
    last = k - 1
    ends_terminal = jnp.take_along_axis(terminated, last[:, None], axis=1)[:, 0]
    discounts = jnp.where(ends_terminal, 0.0, gamma ** k.astype(jnp.float32))
    return returns, discounts, last
