"""Q-networks: observations in, one value per action out."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class QNetwork(nn.Module):
    """An MLP Q-network with an optional dueling head.

    Observations of any shape are flattened and cast to float32 (replay may store them as
    uint8). The dueling head computes Q = V + A - mean(A) (Wang et al., 2016).
    """

    num_actions: int
    widths: Sequence[int] = (120, 84)
    dueling: bool = False

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> jnp.ndarray:
        x = obs.astype(jnp.float32).reshape(obs.shape[0], -1)
        for width in self.widths:
            x = nn.relu(nn.Dense(width)(x))
        if not self.dueling:
            return nn.Dense(self.num_actions)(x)
        value = nn.Dense(1)(x)
        advantage = nn.Dense(self.num_actions)(x)
        return value + advantage - advantage.mean(axis=-1, keepdims=True)
