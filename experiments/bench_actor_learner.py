"""The actor-learner against the synchronous host loop of the same code (`--host-loop sync`),
on a host env, at several update-to-data ratios: whole `python -m purejaxdqn.train` processes,
alternated pair by pair (sync, async, sync, async, ...) so the machine's drift hits both alike.

Per variant: compile s, run s (training only: summary.json's run_s), env steps/s, updates/s,
the policy lag, and the ratio of the sync run's time to the async one's (the speed-up), median
over the pairs. Costs that the async design overlaps (env stepping on the host, the learner's
updates on the device) add up in the sync loop; the speed-up is at most their sum over the
larger of the two. `--ceilings` also times each side alone in this process, for the same
number of env steps: the actor (its blocks, with fixed parameters) and the learner (ingesting
blocks of zeros), so the table shows the sum and the larger of the two beside the runs.

    python experiments/bench_actor_learner.py
    python experiments/bench_actor_learner.py --update-every 10,2 --steps 100000 --pairs 3 --out r.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(env_id: str, steps: int, update_every: int, loop: str, actors: int, extra: list[str]) -> dict:
    """One training process; its summary.json figures."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "purejaxdqn.train", "--env-id", env_id, "--total-steps", str(steps),
               "--learning-starts", str(steps // 10), "--eval-every", str(steps // 2), "--num-chunks", "2",
               "--update-every", str(update_every), "--actors", str(actors), "--host-loop", loop,
               "--no-progress", "--output-dir", out, "--overwrite", *extra]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        s = json.loads((Path(out) / "summary.json").read_text())
    keys = ("compile_s", "run_s", "env_steps_per_s", "updates_per_s", "policy_lag_mean", "policy_lag_max")
    return {k: s[k] for k in keys} | {"final_eval": s["final_eval_return_mean"][0]}


def ceilings(env_id: str, steps: int, update_every: int, actors: int) -> tuple[float, float]:
    """(actor s, learner s) for `steps` env steps, each side alone (see the module's docstring)."""
    import threading
    import time

    import jax
    import numpy as np

    from purejaxdqn.algorithm import ingest
    from purejaxdqn.config import from_preset
    from purejaxdqn.envs.host import make_host_env
    from purejaxdqn.host import actor_learner

    config = from_preset(None, env_id=env_id, total_steps=steps, learning_starts=steps // 10, eval_every=steps // 2,
                         num_chunks=2, update_every=update_every, actors=actors)  # fmt: skip
    spec, hp = make_host_env(env_id, 1).spec, config.hparams()
    program = ingest.make_program(config, spec)
    state = jax.jit(program.init)(jax.random.key(0), hp)
    server = actor_learner.ParameterServer(jax.devices("cpu")[-1], state.learner.params, 0)
    policy, blocks = jax.jit(program.greedy), config.iterations // config.block_rows
    actor = actor_learner.Actor(0, make_host_env(env_id, config.num_envs, 0), policy, server, config, hp, threading.Event(), 0, 0)
    block = actor.collect().rows  # (also compiles the policy)
    t0 = time.perf_counter()
    for _ in range(blocks):
        actor.collect()
    actor_s = time.perf_counter() - t0
    step = jax.jit(program.ingest, donate_argnums=0)
    zeros = jax.tree.map(np.zeros_like, block)
    state = jax.block_until_ready(step(state, zeros, hp))
    t0 = time.perf_counter()
    for _ in range(blocks - 1):
        state = step(state, zeros, hp)
    jax.block_until_ready(state)
    return actor_s, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="gymnasium:CartPole-v1")
    parser.add_argument("--steps", type=int, default=100_000, help="env steps of each run")
    parser.add_argument("--update-every", default="10,5,2", help="comma-separated; 10 envs, 1 update per round")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--ceilings", action="store_true", help="also time the actor and the learner alone")
    parser.add_argument("--out", help="write every figure as JSON here")
    parser.add_argument("extra", nargs="*", help="more train options, after --")
    args = parser.parse_args()

    results = {}
    for _ in range(args.pairs):
        for every in (int(v) for v in args.update_every.split(",")):
            for loop in ("sync", "async"):
                r = run(args.env_id, args.steps, every, loop, args.actors, args.extra)
                results.setdefault(f"{every}/{loop}", []).append(r)
                print(f"update_every {every:>3} {loop:>5}: run {r['run_s']:.2f} s, {r['env_steps_per_s']:,.0f} env steps/s, "
                      f"lag {r['policy_lag_mean']:.1f} (max {r['policy_lag_max']:.0f})", flush=True)  # fmt: skip
    alone = {}
    if args.ceilings:
        for every in (int(v) for v in args.update_every.split(",")):
            alone[every] = ceilings(args.env_id, args.steps, every, args.actors)
            print(f"update_every {every:>3} alone: actor {alone[every][0]:.2f} s, learner {alone[every][1]:.2f} s", flush=True)
    print("\n| updates per env step | sync run s | async run s | speed-up (median of pairs) | actor alone s | learner alone s "
          "| async env steps/s | lag mean / max |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for every in (int(v) for v in args.update_every.split(",")):
        sync, asyn = results[f"{every}/sync"], results[f"{every}/async"]
        ratio = statistics.median(s["run_s"] / a["run_s"] for s, a in zip(sync, asyn))
        med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
        a, l = alone.get(every, (float("nan"), float("nan")))
        print(f"| {1 / every:.2f} | {med(sync, 'run_s'):.2f} | {med(asyn, 'run_s'):.2f} | {ratio:.2f}x | {a:.2f} | {l:.2f} | "
              f"{med(asyn, 'env_steps_per_s'):,.0f} | {med(asyn, 'policy_lag_mean'):.1f} / {max(r['policy_lag_max'] for r in asyn):.0f} |")  # fmt: skip
        results[f"{every}/alone"] = {"actor_s": a, "learner_s": l}
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "runs": results}, indent=1))


if __name__ == "__main__":
    main()
