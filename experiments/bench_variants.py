"""Cost of the DQN-family switches.

1. Replay: sampling a batch and (prioritized only) writing its new priorities, uniform vs
   prioritized, for buffers of 1e5 and 1e6 transitions (CartPole observations, 10 envs).
2. Breakout-MinAtar speed: env steps/s of the `breakout` (DQN) and `breakout,rainbow` presets
   (one update per env step, batch 32, 8 envs) against stepping the same 8 envs with random
   actions and nothing else (the ceiling), and the ratio.

Compile time is reported apart from run time everywhere.

    python experiments/bench_variants.py
    python experiments/bench_variants.py --skip-replay --total-steps 30000
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp

from purejaxdqn.algorithm import prioritized, replay
from purejaxdqn.host import runner
from purejaxdqn.config import from_preset
from purejaxdqn.envs import env_from_config


def timed(fn, *args):
    """(compile s, run s) of a jitted function, run once after compiling."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return t1 - t0, time.perf_counter() - t1


def bench_replay(capacity: int, prioritized_replay: bool, batch: int = 128, iters: int = 2000) -> dict:
    num_envs = 10
    rows = capacity // num_envs
    example = replay.Transition(
        obs=jnp.zeros((num_envs, 4)), action=jnp.zeros(num_envs, jnp.int32), reward=jnp.zeros(num_envs),
        next_obs=jnp.zeros((num_envs, 4)), terminated=jnp.zeros(num_envs, bool), truncated=jnp.zeros(num_envs, bool),
    )  # fmt: skip
    state = replay.init(example, rows, prioritized_replay)
    state = state._replace(filled=jnp.int32(rows))
    if prioritized_replay:
        p = jax.random.uniform(jax.random.key(0), (rows * num_envs,), minval=0.1, maxval=2.0)
        state = state._replace(priorities=prioritized.set(state.priorities, jnp.arange(rows * num_envs), p))

    def loop(state, key):
        def body(s, k):
            b = replay.sample_batch(s, k, batch, 0.99, 1, 0.5 if prioritized_replay else None)
            if prioritized_replay:
                new = prioritized.priorities_from_td(jnp.abs(b.reward) + 0.1, 0.5)
                s = s._replace(priorities=prioritized.set(s.priorities, b.index, new))
            return s, b.obs.sum()

        return jax.lax.scan(body, state, jax.random.split(key, iters))

    compile_s, run_s = timed(loop, state, jax.random.key(1))
    return {
        "part": "replay", "capacity": capacity, "prioritized": prioritized_replay, "batch": batch,
        "compile_s": round(compile_s, 2), "us_per_sample_and_update": round(run_s / iters * 1e6, 1),
    }  # fmt: skip


def bench_env_only(config, total_steps: int) -> dict:
    venv = env_from_config(config, config.num_envs)
    iters = total_steps // config.num_envs

    def loop(key):
        obs, state = venv.reset(key)

        def body(carry, k):
            state, total = carry
            action_key, step_key = jax.random.split(k)
            action = jax.random.randint(action_key, (venv.num_envs,), 0, venv.num_actions)
            res = venv.step(step_key, state, action)
            return (res.env_state, total + res.reward.sum()), None

        return jax.lax.scan(body, (state, 0.0), jax.random.split(key, iters))[0][1]

    compile_s, run_s = timed(loop, jax.random.key(0))
    return {"part": "env only", "compile_s": round(compile_s, 2), "run_s": round(run_s, 2),
            "env_steps_per_s": round(iters * venv.num_envs / run_s)}  # fmt: skip


def bench_trainer(presets: str, total_steps: int) -> dict:
    config = from_preset(presets, total_steps=total_steps, num_chunks=1, eval_every=total_steps,
                         learning_starts=1_000, num_eval_envs=8)  # fmt: skip
    s = runner.train_runs(config, *runner.make_runs(config)).summary
    return {"part": presets, "compile_s": round(s["compile_s"], 2), "run_s": round(s["run_s"], 2),
            "env_steps_per_s": round(s["env_steps_per_s"]), "updates_per_s": round(s["updates_per_s"])}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-steps", type=int, default=20_000, help="env steps of each Breakout speed run")
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if not args.skip_replay:
        for capacity in (100_000, 1_000_000):
            for per in (False, True):
                print(json.dumps(bench_replay(capacity, per)), flush=True)
    if not args.skip_speed:
        ceiling = bench_env_only(from_preset("breakout"), args.total_steps * 10)
        print(json.dumps(ceiling), flush=True)
        for presets in ("breakout", "breakout,rainbow"):
            r = bench_trainer(presets, args.total_steps)
            r["ratio_to_env_only"] = round(r["env_steps_per_s"] / ceiling["env_steps_per_s"], 4)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
