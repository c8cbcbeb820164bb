"""Proportional prioritized replay (Schaul et al. 2016): a sum tree of priorities on the device.

Pure functions over an explicit `SumTree` state (`init`, `set`, `sample`, ...), in the style of
optax / flashbax; everything is jit- and vmap-safe (no Python control flow on traced values).
The tree only holds priorities; the transitions live in the replay buffer, addressed by the same
flat leaf index.

Choices, and why:

- Layout: `nodes[1]` is the root, node `i` has children `2i` and `2i+1`, leaves sit at
  `[P, 2P)` with `P` the next power of two >= capacity (node 0 unused). Padding leaves
  `[capacity, P)` stay at zero priority, so they are never sampled.
- Recompute from children: `set` writes the leaves, then rewrites every affected ancestor as
  the float32 sum of its two children, level by level (log2 P scatters). No incremental
  `+= delta` updates: those accumulate rounding error in float32 until interior sums disagree
  with their leaves and sampling can reach zero-priority leaves. Here every internal node is
  always exactly `left + right` (in float32), so the tree equals one rebuilt from its leaves,
  bit for bit, however many updates it has seen.
- Duplicate indices in one `set` call: the last occurrence wins (deterministically; a plain
  JAX scatter with duplicates leaves the winner unspecified).
- Stratified sampling: `[0, total)` is split into `batch_size` equal segments with one
  uniform draw per segment, which lowers the variance of the batch composition while each
  draw's marginal over the batch is still exactly proportional.
- Sampling guard: the draw is clamped below `total`, and the descent only enters a child with
  positive mass (when float rounding says "go right" but the right subtree is empty, it goes
  left, and vice versa). Because a parent is exactly `left + right`, a positive parent always
  has a positive child, so the descent always ends on a positive-priority leaf as long as the
  root is positive. Finally the index is clamped to `num_valid - 1` (a belt-and-braces bound
  for callers that left stale priorities beyond the filled part; with a consistent tree it
  never fires).
- Importance weights are normalized by the max weight *in the batch* (as in the paper and
  most implementations), so they only scale the loss down and need no global min priority.
  A data-parallel batch is one batch: its shards normalize by the max over all of them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class SumTree(NamedTuple):
    nodes: jax.Array  # float32 [2 * P]: node 1 the root, leaves at [P, 2P), node 0 unused
    max_priority: jax.Array  # float32 scalar: largest priority ever set (starts at 1.0)


def _num_leaves(tree: SumTree) -> int:
    """P, the (power of two) number of leaves; static, from the shape."""
    return tree.nodes.shape[0] // 2


def _depth(tree: SumTree) -> int:
    """log2 P: the number of levels between a leaf and the root."""
    return _num_leaves(tree).bit_length() - 1


def init(capacity: int) -> SumTree:
    """An all-zero tree with room for `capacity` leaves (rounded up to a power of two)."""
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    p = 1 << (capacity - 1).bit_length()
    return SumTree(nodes=jnp.zeros((2 * p,), jnp.float32), max_priority=jnp.float32(1.0))


def leaves(tree: SumTree) -> jax.Array:
    """All P leaf priorities, float32 [P]."""
    return tree.nodes[_num_leaves(tree) :]


def get(tree: SumTree, indices: jax.Array) -> jax.Array:
    """Priorities at leaf `indices`, float32 [B]."""
    return tree.nodes[_num_leaves(tree) + indices]


def total(tree: SumTree) -> jax.Array:
    """Sum of all priorities (the root)."""
    return tree.nodes[1]


def set(tree: SumTree, indices: jax.Array, priorities: jax.Array) -> SumTree:  # noqa: A001
    """Write `priorities` at leaf `indices` (in [0, capacity)), then recompute their ancestors.

    Duplicate indices: the last occurrence in the batch wins. Ancestors are rewritten as the
    exact sum of their children, level by level, so the tree never drifts.
    """
    p = _num_leaves(tree)
    indices = jnp.asarray(indices, jnp.int32).reshape(-1)
    priorities = jnp.asarray(priorities, jnp.float32).reshape(-1)
    n = indices.shape[0]

    # Last write wins: a stable sort by index keeps batch order within a run of equal indices,
    # so the last element of each run is the last write; every other one is dropped.
    order = jnp.argsort(indices, stable=True)
    sorted_idx = indices[order]
    is_last_sorted = jnp.concatenate([sorted_idx[1:] != sorted_idx[:-1], jnp.ones((1,), bool)])
    keep = jnp.zeros((n,), bool).at[order].set(is_last_sorted)

    pos = indices + p
    write_pos = jnp.where(keep, pos, tree.nodes.shape[0])  # out of bounds: dropped
    nodes = tree.nodes.at[write_pos].set(priorities, mode="drop")
    for _ in range(_depth(tree)):
        pos = pos >> 1  # duplicate parents write the same value: order does not matter
        nodes = nodes.at[pos].set(nodes[2 * pos] + nodes[2 * pos + 1])

    written_max = jnp.max(jnp.where(keep, priorities, -jnp.inf))
    return SumTree(nodes=nodes, max_priority=jnp.maximum(tree.max_priority, written_max))


def sample(tree: SumTree, key: jax.Array, batch_size: int, num_valid) -> jax.Array:
    """Stratified proportional sample of `batch_size` leaf indices, int32 [B].

    Needs `total(tree) > 0`. Never returns a zero-priority leaf or an index >= num_valid when
    priorities are only set below `num_valid` (see the module docstring for the guard).
    """
    p = _num_leaves(tree)
    root = total(tree)
    u = (jnp.arange(batch_size, dtype=jnp.float32) + jax.random.uniform(key, (batch_size,))) * (
        root / batch_size
    )
    u = jnp.clip(u, 0.0, jnp.nextafter(root, jnp.float32(0.0)))

    idx = jnp.ones((batch_size,), jnp.int32)
    for _ in range(_depth(tree)):
        left = tree.nodes[2 * idx]
        right = tree.nodes[2 * idx + 1]
        go_right = ((u >= left) & (right > 0)) | (left <= 0)
        u = jnp.where(go_right, u - left, u)
        idx = 2 * idx + go_right.astype(jnp.int32)
    return jnp.minimum(idx - p, jnp.asarray(num_valid, jnp.int32) - 1)


def importance_weights(tree: SumTree, indices: jax.Array, num_valid, beta) -> jax.Array:
    """w_i = (N * P(i))^-beta with P(i) = p_i / total, divided by the batch max (so max is 1).

    Computed in log space so tiny probabilities neither overflow nor lose the normalization.
    `indices` must have positive priority (as `sample` guarantees); a zero gives NaN.
    """
    log_w = log_importance_weights(tree, indices, num_valid, beta)
    return jnp.exp(log_w - jnp.max(log_w))


def log_importance_weights(tree: SumTree, indices: jax.Array, num_valid, beta) -> jax.Array:
    """log (N * P(i))^-beta, before normalization (a data-parallel batch normalizes by the
    max over all shards' batches, see replay.sample_batch)."""
    prob = get(tree, indices) / total(tree)
    return -beta * (jnp.log(jnp.asarray(num_valid, jnp.float32)) + jnp.log(prob))


def priorities_from_td(td_abs: jax.Array, alpha, eps: float = 1e-6) -> jax.Array:
    """(|delta| + eps)^alpha: eps keeps every transition sampleable."""
    return (jnp.abs(td_abs) + eps) ** alpha


def beta_at(step, beta_start, total_steps) -> jax.Array:
    """Importance-sampling exponent, linear from `beta_start` at step 0 to 1 at `total_steps`."""
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / jnp.maximum(total_steps, 1), 0.0, 1.0)
    return beta_start + (1.0 - beta_start) * frac
