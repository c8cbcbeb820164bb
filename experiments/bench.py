"""Speed benchmark on the reference workload (../shared/notes/references.md).

CartPole-v1, 500k env steps, 10 envs, replay 10k, batch 128, one update every 10 env steps,
MLP 120-84, hard target copy every 50 updates (= 500 env steps), Adam lr 2.5e-4: the
`reference` preset. Prints compile s, run s, env steps/s, updates/s and peak memory, then
the same number of bare gradient updates (no env, no replay, no RNG: the floor for this
workload) and the overhead ratio full run / bare updates. With --e2e it also times the
default command `python -m purejaxdqn.train` from process start to its printed result.

    python experiments/bench.py                  # reference workload, 1 seed
    python experiments/bench.py --repeats 3 --e2e 3
    python experiments/bench.py --num-seeds 8    # vmapped seeds, aggregate throughput
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

from purejaxdqn.algorithm import learner as learner_lib
from purejaxdqn.algorithm import replay as replay_lib
from purejaxdqn.config import from_preset
from purejaxdqn.algorithm.loop import make_trainer
from purejaxdqn.host.runner import make_runs, memory_report, platform_report, train_runs


def bench_full(config, num_seeds: int) -> dict:
    result = train_runs(config, *make_runs(config, num_seeds))
    s = result.summary
    return {
        "compile_s": s["compile_s"],
        "run_s": s["run_s"],
        "env_steps_per_s": s["env_steps_per_s"],
        "updates_per_s": s["updates_per_s"],
        "final_eval_mean": float(sum(s["final_eval_return_mean"]) / num_seeds),
        "solved": sum(r >= 475 for r in s["final_eval_return_mean"]),
        "updates": sum(s["updates_per_run"]),
    }


def bench_bare_updates(config, num_updates: int) -> dict:
    """`num_updates` learner updates on one fixed batch in a scan: the floor of the full run."""
    trainer = make_trainer(config)
    hp = config.hparams()
    state = jax.jit(trainer.init)(jax.random.key(0), hp)
    b, shape = config.batch_size, trainer.venv.obs_shape
    obs_key, next_key, action_key = jax.random.split(jax.random.key(1), 3)
    batch = replay_lib.one_step_batch(replay_lib.Transition(
        obs=jax.random.normal(obs_key, (b, *shape)).astype(trainer.venv.obs_dtype),
        action=jax.random.randint(action_key, (b,), 0, trainer.venv.num_actions),
        reward=jnp.ones(b),
        next_obs=jax.random.normal(next_key, (b, *shape)).astype(trainer.venv.obs_dtype),
        terminated=jnp.zeros(b, bool),
        truncated=jnp.zeros(b, bool),
    ), hp.gamma)
    update = learner_lib.make_update(trainer.network.apply, config)

    def loop(learner):
        return jax.lax.scan(lambda l, _: (update(l, batch, hp)[0], None), learner, None, length=num_updates)[0]

    t0 = time.perf_counter()
    compiled = jax.jit(loop).lower(state.learner).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(state.learner))
    run_s = time.perf_counter() - t0
    return {"bare_compile_s": compile_s, "bare_run_s": run_s, "bare_updates_per_s": num_updates / run_s}


def bench_e2e(repeats: int) -> list[float]:
    """Wall seconds of `python -m purejaxdqn.train` (default preset), process start to exit."""
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "purejaxdqn.train", "--output-dir", f"{tmp}/run"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            times.append(time.perf_counter() - t0)
            print("  e2e:", proc.stdout.splitlines()[0], f"| wall {times[-1]:.1f} s", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="reference")
    parser.add_argument("--total-steps", type=int, default=None)
    parser.add_argument("--num-seeds", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="full runs to time (median reported)")
    parser.add_argument("--e2e", type=int, default=0, help="times to run the default CLI end to end")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-update floor")
    args = parser.parse_args()

    config = from_preset(args.preset)
    if args.total_steps:
        config = config.replace(total_steps=args.total_steps)
    print(f"platform: {platform_report()}")
    print(f"workload: preset={args.preset} env={config.env_id} steps={config.actual_total_steps:,} "
          f"envs={config.num_envs} batch={config.batch_size} widths={config.widths} seeds={args.num_seeds}")  # fmt: skip

    runs = []
    for i in range(args.repeats):
        r = bench_full(config, args.num_seeds)
        runs.append(r)
        print(f"  full run {i}: compile {r['compile_s']:.2f} s | run {r['run_s']:.2f} s | "
              f"{r['env_steps_per_s']:,.0f} env steps/s | {r['updates_per_s']:,.0f} updates/s | "
              f"final eval {r['final_eval_mean']:.1f} | solved {r['solved']}/{args.num_seeds}", flush=True)  # fmt: skip
    report = {
        "preset": args.preset, "num_seeds": args.num_seeds, "total_steps": config.actual_total_steps,
        "compile_s": statistics.median(r["compile_s"] for r in runs),
        "run_s": statistics.median(r["run_s"] for r in runs),
        "run_s_all": [round(r["run_s"], 2) for r in runs],
    }  # fmt: skip
    report["env_steps_per_s"] = config.actual_total_steps * args.num_seeds / report["run_s"]
    report["updates_per_s"] = runs[0]["updates"] / report["run_s"]
    if not args.no_bare:
        bare = bench_bare_updates(config, runs[0]["updates"] // args.num_seeds)
        report.update(bare)
        report["overhead_ratio"] = report["run_s"] / (bare["bare_run_s"] * args.num_seeds)
        print(f"  bare updates: {bare['bare_run_s']:.2f} s for {runs[0]['updates'] // args.num_seeds:,} updates "
              f"({bare['bare_updates_per_s']:,.0f}/s) | overhead ratio full/bare {report['overhead_ratio']:.2f}")  # fmt: skip
    report.update(memory_report())
    if args.e2e:
        times = bench_e2e(args.e2e)
        report["e2e_default_s"] = statistics.median(times)
        report["e2e_default_s_all"] = [round(t, 2) for t in times]
    report.update(platform_report())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
