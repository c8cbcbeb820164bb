"""`python -m purejaxdqn.evaluate RUN_DIR --episodes N`: greedy evaluation of a saved run.

Loads the policy from the run's newest checkpoint (parameters only) and plays N whole greedy
episodes on the run's gymnax environment, vectorized and jitted; prints mean/std return.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "python -m purejaxdqn.evaluate"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run directory written by python -m purejaxdqn.train")
    parser.add_argument("--episodes", type=int, default=100, help="greedy episodes to play (default: 100)")
    parser.add_argument("--run", type=int, default=0, help="which run of a multi-run directory (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the evaluation episodes (default: 0)")
    args = parser.parse_args(argv)
    if args.episodes <= 0:
        print(f"{PROG}: error: --episodes: must be a positive integer, got {args.episodes}", file=sys.stderr)
        return 2

    import jax
    import numpy as np

    from purejaxdqn.checkpointing import CheckpointError
    from purejaxdqn.environments import env_from_config
    from purejaxdqn.evaluation import make_episode_returns
    from purejaxdqn.policy import RunDirError, load_policy

    try:
        policy = load_policy(args.run_dir, run=args.run)
    except (RunDirError, CheckpointError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    venv = env_from_config(policy.config, args.episodes)
    returns = np.asarray(jax.jit(make_episode_returns(policy.network.apply, venv, args.episodes))(
        policy.params, jax.random.key(args.seed)
    ))  # fmt: skip
    print(
        f"{policy.config.env_id}: {args.episodes} greedy episodes (checkpoint after chunk {policy.step}, run {args.run}): "
        f"mean return {returns.mean():.2f} +- {returns.std():.2f} (min {returns.min():.1f}, max {returns.max():.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
