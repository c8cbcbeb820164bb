"""Replay memory of the two layouts (pairs, frames), counted exactly from the state's abstract
shapes (`jax.eval_shape`: nothing is allocated), as the memory preflight counts them.

    python experiments/replay_memory.py [--buffer-size 1000000]
"""

from __future__ import annotations

import argparse

import jax

from purejaxdqn import ConfigError, from_preset
from purejaxdqn.host import memory
from purejaxdqn.algorithm.loop import make_trainer


def replay_bytes(config) -> int:
    state = jax.eval_shape(make_trainer(config).init, jax.random.key(0), config.hparams())
    return memory.state_bytes(state.replay)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buffer-size", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"| preset | buffer | pairs | frames | frames / pairs |\n|---|---|---|---|---|")
    for preset in ("cartpole", "breakout", "craftax-classic", "atari"):
        try:
            base = from_preset(preset, buffer_size=args.buffer_size)
        except Exception as err:  # an optional family not installed
            print(f"| {preset} | skipped: {str(err).splitlines()[0]} |")
            continue
        frames = replay_bytes(base.replace(replay_layout="frames"))
        try:
            pairs = replay_bytes(base.replace(replay_layout="pairs"))
        except ConfigError:  # Atari: pairs cannot skip the ALE's reset steps
            print(f"| {preset} | {args.buffer_size:,} | refused | {frames / 2**20:,.1f} MiB | |")
            continue
        print(f"| {preset} | {args.buffer_size:,} | {pairs / 2**20:,.1f} MiB | {frames / 2**20:,.1f} MiB | {frames / pairs:.3f} |")


if __name__ == "__main__":
    main()
