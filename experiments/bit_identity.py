"""A fingerprint of whole training runs, to show a refactor changed no result bit.

Trains a few small gymnax configs (Double DQN + n-step + prioritized replay on CartPole; C51
with the conv torso, all 6 actions and sticky actions on Breakout; Asterix, whose gymnax step
purejaxdqn replaces) and prints a SHA-256 of each final train state (parameters, optimizer,
replay, env states, RNG keys, eval log). Run it at two commits on one machine and compare:

    git worktree add /tmp/before HEAD~1
    (cd /tmp && PYTHONPATH=/tmp/before python /path/to/experiments/bit_identity.py) > before.txt
    python experiments/bit_identity.py > after.txt && diff before.txt after.txt
"""

from __future__ import annotations

import hashlib

import jax
import numpy as np

CONFIGS = [
    dict(env_id="CartPole-v1", total_steps=3000, num_envs=4, learning_starts=500, eval_every=1000, buffer_size=2000,
         double_dqn=True, n_step=3, prioritized=True),
    dict(env_id="Breakout-MinAtar", total_steps=1200, num_envs=4, learning_starts=400, eval_every=600, buffer_size=1000,
         full_action_set=True, sticky_actions=0.1, torso="conv", distributional=True),
    dict(env_id="Asterix-MinAtar", total_steps=800, num_envs=2, learning_starts=200, eval_every=400, buffer_size=800,
         num_eval_envs=2),
]  # fmt: skip


def fingerprint(tree) -> str:
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        digest.update(np.asarray(leaf).tobytes())
    return digest.hexdigest()[:16]


def main() -> int:
    from purejaxdqn import Config, make_train

    for settings in CONFIGS:
        state = jax.jit(make_train(Config(**settings)))(jax.random.key(7))
        print(settings["env_id"], fingerprint(state), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
