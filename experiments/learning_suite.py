"""Learning suite: does each preset learn, on seeds nobody tuned on?

For each preset: N seeds (default 1000, 1001, ...: never used for tuning) in one vmapped program
(`python -m purejaxdqn.train --num-seeds N`, split over the CPU's cores by default), then a
table per preset from the run's evals.jsonl:

- final greedy return over seeds: mean, IQM, min, and how many seeds reach the threshold;
- the env step at which each seed first reached it, and whether it *stayed* there: the last
  `--last-k` evaluations all at or above it (DQN on CartPole is known to collapse after solving);
- each seed's final policy re-played for `--reeval-episodes` (100) fresh episodes: the mean
  and its standard error, since the evals during training use only `--num-eval-envs` episodes;
- the published reference beside it (CleanRL's DQN for the classic-control envs; the MinAtar
  paper's DQN for the MinAtar games, with the protocol difference stated).

Writes OUT/learning_suite.md, OUT/learning_suite.json and OUT/learning_suite.png (one panel per
preset: mean and min..max over seeds, the threshold as a labelled line). A script, not a test:
its --smoke mode runs in the test suite.

    python experiments/learning_suite.py --presets cartpole --num-seeds 10 --out runs/learning
    python experiments/learning_suite.py --presets breakout,freeway --num-seeds 3 --out runs/minatar
    python experiments/learning_suite.py --presets minigrid-empty,minigrid-doorkey,snake --num-seeds 3 --out runs/families
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from purejaxdqn.host.report import LAST_K, iqm

# What a preset's final greedy return is judged against, per env: (threshold, source).
REFERENCES = {
    "CartPole-v1": (475.0, "solved: CartPole-v1's reward threshold 475"),
    "Acrobot-v1": (-88.9, "CleanRL DQN, 500k steps, 3 seeds: -88.9 +- 1.6"),
    "MountainCar-v0": (-188.9, "CleanRL DQN, 500k steps, 3 seeds: -188.9 +- 11.8"),
    # Read off the MinAtar paper's figure at 1M steps, the presets' length (5M value after it);
    # its protocol differs: 6 actions, sticky actions 0.1, RMSProp (see --preset original).
    "Breakout-MinAtar": (9.5, "MinAtar paper DQN ~9.5 at 1M steps (~10 at 5M)"),
    "Freeway-MinAtar": (48.0, "MinAtar paper DQN ~48 at 1M steps (~50 at 5M)"),
    "Asterix-MinAtar": (5.0, "MinAtar paper DQN ~5-10 at 1M steps (~17 at 5M)"),
    "SpaceInvaders-MinAtar": (30.0, "MinAtar paper DQN ~30-33 at 1M steps (~43 at 5M)"),
    # The other families: no published DQN figure at these budgets; judged against the task.
    "MiniGrid-Empty-8x8": (0.9, "the goal within 28 steps (the shortest path, ~12 steps: ~0.96)"),
    "MiniGrid-DoorKey-5x5": (0.9, "key, door and goal within 27 steps"),
    "Snake-v1": (10.0, "10 fruit per episode (random allowed actions already eat ~4: they never collide)"),
    "Craftax-Classic-Symbolic-v1": (2.0, "return 2 (a uniformly random action: see BENCHMARKS.md)"),
}


def judge(steps: np.ndarray, returns: np.ndarray, threshold: float, last_k: int) -> dict:
    """Per-seed verdicts from an eval log: `returns[seed, eval]` at env steps `steps[eval]`."""
    final = returns[:, -1]
    reached = returns >= threshold
    first = [int(steps[np.argmax(r)]) if r.any() else None for r in reached]
    stayed = reached[:, -last_k:].all(axis=1)
    return {
        "final_mean": float(final.mean()), "final_iqm": iqm(final), "final_min": float(final.min()),
        "final_per_seed": [float(x) for x in final],
        "solved_at_end": int((final >= threshold).sum()), "stayed_solved": int(stayed.sum()),
        "first_solved_step": first, "last_k_mean": float(returns[:, -last_k:].mean()),
    }  # fmt: skip


def read_evals(run_dir: Path, num_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps [evals], returns [seeds, evals]) from a run directory's evals.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines() if line.strip()]
    steps = sorted({r["env_steps"] for r in rows})
    returns = np.full((num_seeds, len(steps)), np.nan)
    for r in rows:
        returns[r["run"], steps.index(r["env_steps"])] = r["eval_return_mean"]
    return np.asarray(steps), returns


def reevaluate(run_dir: Path, num_seeds: int, episodes: int, seed: int = 12345) -> tuple[list[float], list[float]]:
    """Each seed's final policy over `episodes` fresh episodes (at the run's eval epsilon):
    per-seed mean return and its standard error. The in-training evals use few episodes; this
    says how far their mean can be trusted."""
    from purejaxdqn.host.policy import load_policy

    means, errors = [], []
    for run in range(num_seeds):
        returns = load_policy(run_dir, run=run).play(episodes, seed + run)
        means.append(float(returns.mean()))
        errors.append(float(returns.std(ddof=1) / np.sqrt(episodes)))
    return means, errors


def random_policy(run_dir: Path, episodes: int, seed: int = 54321) -> float:
    """Mean return of uniformly random (allowed) actions in the preset's env: epsilon 1."""
    from purejaxdqn.host.policy import load_policy

    return float(load_policy(run_dir, run=0).play(episodes, seed, epsilon=1.0).mean())


def run_preset(preset: str, args, extra: list[str]) -> dict:
    run_dir = args.out / preset.replace(",", "+")
    cmd = [sys.executable, "-m", "purejaxdqn.train", "--preset", preset, "--num-seeds", str(args.num_seeds),
           "--seed", str(args.seed), "--output-dir", str(run_dir), "--overwrite", "--no-progress", *extra]  # fmt: skip
    if args.report_only and (run_dir / "summary.json").exists():
        proc = subprocess.CompletedProcess(cmd, 0)  # finished earlier with this command: report it
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"learning_suite: {preset} failed: {proc.stderr.strip()[-500:]}")
    config = json.loads((run_dir / "config.json").read_text())["config"]
    summary = json.loads((run_dir / "summary.json").read_text())
    steps, returns = read_evals(run_dir, args.num_seeds)
    threshold, source = REFERENCES.get(config["env_id"], (float("nan"), "no reference"))
    reeval_means, reeval_errors = reevaluate(run_dir, args.num_seeds, args.reeval_episodes)
    return {
        "preset": preset, "env_id": config["env_id"], "seeds": list(range(args.seed, args.seed + args.num_seeds)),
        "env_steps": config["total_steps"], "threshold": threshold, "reference": source,
        "command": " ".join(["python -m purejaxdqn.train", *cmd[3:]]), "wall_s": summary.get("total_s"),
        "steps": steps.tolist(), "returns": returns.tolist(), **judge(steps, returns, threshold, args.last_k),
        "eval_episodes": config["num_eval_envs"], "eval_epsilon": config["eval_epsilon"],
        "reeval_episodes": args.reeval_episodes, "reeval_per_seed": reeval_means, "reeval_se_per_seed": reeval_errors,
        "reeval_reached": int((np.asarray(reeval_means) >= threshold).sum()),
        "random_policy_mean": random_policy(run_dir, args.reeval_episodes),
    }  # fmt: skip


def markdown(results: list[dict], last_k: int) -> str:
    lines = [
        f"| preset | env | steps | seeds | final mean | IQM | min | mean of last {last_k} | >= threshold at end "
        f"| stayed (last {last_k} evals) | re-evaluated final policy: mean, >= threshold, max SE "
        "| first reached (median step) | random policy | threshold (source) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        firsts = [s for s in r["first_solved_step"] if s is not None]
        median_first = f"{int(np.median(firsts)):,}" if firsts else "never"
        n = len(r["seeds"])
        lines.append(
            f"| {r['preset']} | {r['env_id']} | {r['env_steps']:,} | {r['seeds'][0]}-{r['seeds'][-1]} "
            f"| {r['final_mean']:.3g} | {r['final_iqm']:.3g} | {r['final_min']:.3g} | {r['last_k_mean']:.3g} "
            f"| {r['solved_at_end']}/{n} | {r['stayed_solved']}/{n} "
            f"| {np.mean(r['reeval_per_seed']):.3g}, {r['reeval_reached']}/{n}, {max(r['reeval_se_per_seed']):.2f} "
            f"({r['reeval_episodes']} episodes each) | {median_first} | {r['random_policy_mean']:.2f} "
            f"| {r['threshold']:g} ({r['reference']}) |"
        )
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.4), squeeze=False)
    for ax, r in zip(axes[0], results):
        steps, returns = np.asarray(r["steps"]), np.asarray(r["returns"])
        ax.plot(steps, returns.mean(axis=0), marker="o", ms=3, label=f"mean of {len(r['seeds'])} seeds")
        ax.fill_between(steps, returns.min(axis=0), returns.max(axis=0), alpha=0.25, label="min..max over seeds")
        if np.isfinite(r["threshold"]):
            ax.axhline(r["threshold"], color="k", ls="--", lw=1, label=f"reference {r['threshold']:g}")
        ax.set_title(f"{r['preset']} ({r['env_id']})", fontsize=9)
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="cartpole", help="comma-separated; '+' joins stacked presets: breakout+rainbow")
    parser.add_argument("--num-seeds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1000, help="first seed (keep it away from the tuning seeds)")
    parser.add_argument("--last-k", type=int, default=LAST_K, help="evals at the end that must all reach the threshold")
    parser.add_argument("--reeval-episodes", type=int, default=100, help="episodes re-playing each seed's final policy")
    parser.add_argument("--out", type=Path, default=Path("runs/learning_suite"))
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: checks the script runs (tests)")
    parser.add_argument("--report-only", action="store_true",
                        help="report a preset's finished run in --out instead of training it again")  # fmt: skip
    args, extra = parser.parse_known_args(argv)
    if args.smoke:
        extra += ["--total-steps", "3000", "--learning-starts", "500", "--eval-every", "1000", "--num-chunks", "3",
                  "--widths", "16", "--num-eval-envs", "2"]  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    results = [run_preset(p.replace("+", ","), args, extra) for p in args.presets.split(",")]
    table = markdown(results, args.last_k)
    (args.out / "learning_suite.md").write_text(table)
    (args.out / "learning_suite.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(results, args.out / "learning_suite.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
