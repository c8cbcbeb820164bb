"""Q-networks: observations in, one value per action out.

`QNetwork.__call__` always returns Q-values `[batch, actions]`, so acting, evaluation and
exported policies never need to know the head. A distributional (C51) network also exposes
its per-action return distribution through `method="logits"` (`[batch, actions, atoms]`).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from purejaxdqn.algorithm.distributional import mean_q, support
from purejaxdqn.config import Config


class PatchConv(nn.Module):
    """An unpadded k x k convolution of stride s written as patches @ kernel.

    Same parameters and result as `nn.Conv(features, (k, k), (s, s), padding="VALID")` (a test
    checks it), but it lowers to one matrix product. XLA's CPU backend runs that several times
    faster than its convolution at MinAtar's sizes, and inside a loop body (the training scan)
    its convolution's gradient ~9x slower than outside one at the Nature DQN's (BENCHMARKS.md,
    "Atari"); the matrix product has neither problem.
    """

    features: int
    kernel: int = 3
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s, channels = self.kernel, self.stride, x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        h, w = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
        patches = jnp.concatenate(
            [x[:, i : i + s * (h - 1) + 1 : s, j : j + s * (w - 1) + 1 : s, :] for i in range(k) for j in range(k)], axis=-1
        )
        return patches @ kernel.reshape(k * k * channels, self.features) + bias


# The Nature DQN's convolutions (Mnih et al. 2015): (features, kernel, stride), unpadded, ReLU.
NATURE_CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))


class QNetwork(nn.Module):
    """A Q-network: torso, optional dueling head, optional distributional output.

    - torso "mlp": observations of any shape are flattened, then Dense+ReLU layers of `widths`.
    - torso "conv": the MinAtar paper's network, one 3x3 stride-1 convolution with 16 channels
      (no padding) and ReLU, flattened, then Dense+ReLU layers of `widths` (the paper: 128).
    - torso "nature": the Nature DQN's network for 84x84 Atari frames, pixels scaled by 1/255,
      `NATURE_CONVS` with ReLU, flattened, then `widths` (the paper: 512).
    Observations are cast to float32 first (replay may store them as uint8). The dueling head
    computes Q = V + A - mean(A) (Wang et al., 2016); with `num_atoms` > 0 the same is done on
    logits per atom (as in Rainbow) and Q is the mean of the softmax distribution on the support.
    """

    num_actions: int
    # The defaults are Config's (one source); make_network passes a config's values.
    widths: Sequence[int] = Config.widths
    dueling: bool = Config.dueling
    torso: str = Config.torso
    num_atoms: int = 0  # 0: plain Q-values; > 0: C51 with this many atoms
    v_min: float = Config.v_min
    v_max: float = Config.v_max

    def setup(self):
        # Names follow flax's automatic ones (Dense_0, Dense_1, ...) so parameters, and with them
        # the initial values drawn for a seed, are the same as a plain compact MLP's.
        if self.torso == "conv":
            self.convs = [PatchConv(16, name="Conv_0")]
        elif self.torso == "nature":
            self.convs = [PatchConv(f, k, s, name=f"Conv_{i}") for i, (f, k, s) in enumerate(NATURE_CONVS)]
        else:
            self.convs = []
        self.hidden = [nn.Dense(w, name=f"Dense_{i}") for i, w in enumerate(self.widths)]
        atoms, n = max(self.num_atoms, 1), len(self.widths)
        if self.dueling:
            self.value = nn.Dense(atoms, name=f"Dense_{n}")
            self.head = nn.Dense(self.num_actions * atoms, name=f"Dense_{n + 1}")
        else:
            self.value = None
            self.head = nn.Dense(self.num_actions * atoms, name=f"Dense_{n}")

    def _features(self, obs: jax.Array) -> jax.Array:
        x = obs.astype(jnp.float32)
        if self.torso == "nature":
            x = x / 255.0
        for conv in self.convs:
            x = nn.relu(conv(x))
        x = x.reshape(obs.shape[0], -1)
        for layer in self.hidden:
            x = nn.relu(layer(x))
        return x

    def logits(self, obs: jax.Array) -> jax.Array:
        """Per-action outputs: `[batch, actions]` Q-values, or `[batch, actions, atoms]` logits."""
        x = self._features(obs)
        atoms = max(self.num_atoms, 1)
        out = self.head(x).reshape(obs.shape[0], self.num_actions, atoms)
        if self.dueling:
            out = self.value(x)[:, None, :] + out - out.mean(axis=1, keepdims=True)
        return out if self.num_atoms else out[..., 0]

    def __call__(self, obs: jax.Array) -> jax.Array:
        """Q-values `[batch, actions]`."""
        out = self.logits(obs)
        if not self.num_atoms:
            return out
        return mean_q(out, support(self.num_atoms, self.v_min, self.v_max))


def make_network(config: Config, num_actions: int) -> QNetwork:
    """The Q-network a config describes."""
    return QNetwork(
        num_actions=num_actions,
        widths=tuple(config.widths),
        dueling=config.dueling,
        torso=config.torso,
        num_atoms=config.num_atoms if config.distributional else 0,
        v_min=config.v_min,
        v_max=config.v_max,
    )
