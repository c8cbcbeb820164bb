"""The actor-learner against the synchronous host loop of the same code (`--host-loop sync`),
on a host env, at several update-to-data ratios: whole `python -m purejaxdqn.train` processes,
alternated pair by pair (sync, async, sync, async, ...) so the machine's drift hits both alike.

Per variant: compile s, run s (training only: summary.json's run_s), env steps/s, updates/s,
the policy lag, and the ratio of the sync run's time to the async one's (the speed-up), median
over the pairs. Costs that the async design overlaps (env stepping on the host, the learner's
updates on the device) add up in the sync loop; the speed-up is at most their sum over the
larger of the two.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="gymnasium:CartPole-v1")
    parser.add_argument("--steps", type=int, default=100_000, help="env steps of each run")
    parser.add_argument("--update-every", default="10,5,2", help="comma-separated; 10 envs, 1 update per round")
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=3)
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
    print("\n| updates per env step | sync run s | async run s | speed-up (median of pairs) | async env steps/s | lag mean / max |")
    print("|---|---|---|---|---|---|")
    for every in (int(v) for v in args.update_every.split(",")):
        sync, asyn = results[f"{every}/sync"], results[f"{every}/async"]
        ratio = statistics.median(s["run_s"] / a["run_s"] for s, a in zip(sync, asyn))
        med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
        print(f"| {1 / every:.2f} | {med(sync, 'run_s'):.2f} | {med(asyn, 'run_s'):.2f} | {ratio:.2f}x | "
              f"{med(asyn, 'env_steps_per_s'):,.0f} | {med(asyn, 'policy_lag_mean'):.1f} / {max(r['policy_lag_max'] for r in asyn):.0f} |")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "runs": results}, indent=1))


if __name__ == "__main__":
    main()
