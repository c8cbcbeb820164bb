"""C51 (Bellemare et al. 2017): a categorical return distribution on a fixed support.

The projection is written as a dense "hat function" (as in rlax): the mass of each shifted
atom Tz_j goes to its two neighbouring atoms with weights clip(1 - |b_j - i|, 0, 1), where
b_j = (Tz_j - v_min) / dz is its fractional position. This is Algorithm 1 of the paper without
the scatter, and without its classic bug: when b_j is integral (l == u) Algorithm 1's weights
(u - b) and (b - l) are both 0 and the mass vanishes, while the hat gives weight 1 to atom b_j.
Tz is clipped to [v_min, v_max] and b to [0, K - 1], so the columns of the hat sum to 1 and the
projection conserves mass up to float rounding. Cost is O(B K^2), negligible for K = 51.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def support(num_atoms: int, v_min: float, v_max: float) -> jax.Array:
    """The K evenly spaced atoms z_0 = v_min, ..., z_{K-1} = v_max, float32 [K]."""
    return jnp.linspace(v_min, v_max, num_atoms, dtype=jnp.float32)


def project(
    next_probs: jax.Array, reward: jax.Array, discount: jax.Array, support: jax.Array
) -> jax.Array:
    """Project the distribution of r + discount * Z (Z ~ next_probs on `support`) onto `support`.

    `discount` is already gamma^k * (1 - terminated): 0 collapses the target to a point mass at
    r (clipped to the support). Returns [B, K] probabilities that sum to 1.
    """
    num_atoms = support.shape[0]
    v_min, v_max = support[0], support[-1]
    dz = (v_max - v_min) / (num_atoms - 1)
    tz = jnp.clip(reward[:, None] + discount[:, None] * support[None, :], v_min, v_max)  # [B, K]
    b = jnp.clip((tz - v_min) / dz, 0.0, num_atoms - 1)  # fractional atom position, [B, K]
    atoms = jnp.arange(num_atoms, dtype=b.dtype)
    # hat[b, i, j]: share of source atom j's mass that lands on target atom i.
    hat = jnp.clip(1.0 - jnp.abs(b[:, None, :] - atoms[None, :, None]), 0.0, 1.0)
    return jnp.einsum("bij,bj->bi", hat, next_probs)


def cross_entropy(target_probs: jax.Array, logits: jax.Array) -> jax.Array:
    """-sum_i target_i log softmax(logits)_i per row, [B]. Stop gradients on the target upstream."""
    return -jnp.sum(target_probs * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def mean_q(logits: jax.Array, support: jax.Array) -> jax.Array:
    """Q(s, a) = E[Z(s, a)] = sum_i softmax(logits)_i z_i, [B, A] from logits [B, A, K]."""
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * support, axis=-1)
