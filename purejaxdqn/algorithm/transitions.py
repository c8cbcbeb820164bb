"""What replay stores and what it hands the learner: a `Transition` row in, a `Batch` out
(shared by both replay layouts, replay.py's pairs and frame_replay.py's frames)."""

from __future__ import annotations

from typing import NamedTuple

import jax


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array  # the observation the step led to (the final one at an episode end)
    terminated: jax.Array  # natural episode end: no bootstrap
    truncated: jax.Array  # time-limit end: bootstrap from next_obs



class Batch(NamedTuple):
    """A training batch: the TD target of item i is `reward + discount * V(next_obs)`."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array  # n-step discounted reward sum
    next_obs: jax.Array  # the observation to bootstrap from
    discount: jax.Array  # gamma^k for the k steps summed; 0 if they ended in a terminal
    weight: jax.Array | None  # importance weights (prioritized replay), else None
    index: jax.Array  # flat replay index row * num_envs + env (for priority updates)
