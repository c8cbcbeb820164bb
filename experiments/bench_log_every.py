"""Cost of finer logging (`--log-every`): a chunk's speed with one metrics row per chunk against
rows every N env steps, interleaved (A, B, C, A, B, C, ...) in one process so the machine's
drift hits every variant alike.

Each variant's chunk is compiled once (compile time reported apart); each repetition runs
`--chunks` chunks and times them. Reported per variant: compile s, median run s, env steps/s,
updates/s, and the median run time over the baseline's (log_every 0).

    python experiments/bench_log_every.py
    python experiments/bench_log_every.py --preset breakout --chunk-steps 8000 --log-every 0,2000,400
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax

from purejaxdqn.algorithm import loop
from purejaxdqn.config import from_preset


def compiled_chunk(config):
    """(compile s, run_chunk, initial state, hparams) of `config`'s chunk."""
    trainer = loop.make_trainer(config)
    hp = config.hparams()
    state = jax.block_until_ready(jax.jit(trainer.init)(jax.random.key(0), hp))
    t0 = time.perf_counter()
    run = jax.jit(trainer.run_chunk, donate_argnums=0).lower(state, hp).compile()
    return time.perf_counter() - t0, run, state, hp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cartpole")
    parser.add_argument("--chunk-steps", type=int, default=20_000, help="env steps of one chunk")
    parser.add_argument("--log-every", default="0,2000,200", help="comma-separated values; the first is the baseline")
    parser.add_argument("--chunks", type=int, default=3, help="chunks timed per repetition")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    variants = {}
    for every in (int(v) for v in args.log_every.split(",")):
        chunks = args.reps * args.chunks  # the run is exactly the chunks timed: every eval slot exists
        config = from_preset(args.preset, total_steps=args.chunk_steps * chunks, num_chunks=chunks, log_every=every)
        compile_s, run, state, hp = compiled_chunk(config)
        variants[every] = {"config": config, "compile_s": compile_s, "run": run, "state": state, "hp": hp, "times": []}
    for _ in range(args.reps):
        for v in variants.values():
            state, t0 = v["state"], time.perf_counter()
            for _ in range(args.chunks):
                state = v["run"](state, v["hp"])
            v["state"] = jax.block_until_ready(state)
            v["times"].append(time.perf_counter() - t0)
    base = statistics.median(next(iter(variants.values()))["times"])
    rows = []
    for every, v in variants.items():
        c, run_s = v["config"], statistics.median(v["times"])
        steps = c.chunk_steps * args.chunks
        rows.append({
            "log_every": every, "rows_per_chunk": c.log_windows, "compile_s": round(v["compile_s"], 3),
            "run_s_median": round(run_s, 4), "run_s_all": [round(t, 4) for t in v["times"]],
            "env_steps_per_s": round(steps / run_s), "updates_per_s": round(int(v["state"].learner.updates) / sum(v["times"])),
            "run_time_vs_baseline": round(run_s / base, 3),
        })  # fmt: skip
    print(f"preset {args.preset}, chunks of {args.chunk_steps:,} env steps, "
          f"{args.chunks} chunks x {args.reps} interleaved repetitions, {jax.devices()[0].platform}")  # fmt: skip
    print("| log_every | rows/chunk | compile s | run s (median) | env steps/s | updates/s | run time vs baseline |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['log_every']} | {r['rows_per_chunk']} | {r['compile_s']:.2f} | {r['run_s_median']:.3f} | "
              f"{r['env_steps_per_s']:,} | {r['updates_per_s']:,} | {r['run_time_vs_baseline']:.3f} |")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
