"""Learning suite: does each preset learn, on seeds nobody tuned on?

For each preset: N seeds (default 1000, 1001, ...: never used for tuning) in one vmapped program
(`python -m purejaxdqn.train --num-seeds N`, split over the CPU's cores by default), then a
table per preset from the run's evals.jsonl:

- final greedy return over seeds: mean, IQM, min, and how many seeds reach the threshold;
- the env step at which each seed first reached it, and whether it *stayed* there: the last
  `--last-k` evaluations all at or above it (DQN on CartPole is known to collapse after solving);
- the published reference beside it (CleanRL's DQN for the classic-control envs; the MinAtar
  paper's DQN for the MinAtar games, with the protocol difference stated).

Writes OUT/learning_suite.md, OUT/learning_suite.json and OUT/learning_suite.png (one panel per
preset: mean and min..max over seeds, the threshold as a labelled line). A script, not a test:
its --smoke mode runs in the test suite.

    python experiments/learning_suite.py --presets cartpole --num-seeds 10 --out runs/learning
    python experiments/learning_suite.py --presets breakout,freeway --num-seeds 3 --out runs/minatar
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from purejaxdqn.report import iqm

# What a preset's final greedy return is judged against, per env: (threshold, source).
REFERENCES = {
    "CartPole-v1": (475.0, "solved: CartPole-v1's reward threshold 475"),
    "Acrobot-v1": (-88.9, "CleanRL DQN, 500k steps, 3 seeds: -88.9 +- 1.6"),
    "MountainCar-v0": (-188.9, "CleanRL DQN, 500k steps, 3 seeds: -188.9 +- 11.8"),
    "Breakout-MinAtar": (10.0, "MinAtar paper DQN ~10 at 5M steps (6 actions, sticky 0.1, RMSProp)"),
    "Freeway-MinAtar": (50.0, "MinAtar paper DQN ~50 at 5M steps (6 actions, sticky 0.1, RMSProp)"),
    "Asterix-MinAtar": (17.0, "MinAtar paper DQN ~17 at 5M steps (6 actions, sticky 0.1, RMSProp)"),
    "SpaceInvaders-MinAtar": (43.0, "MinAtar paper DQN ~43 at 5M steps (6 actions, sticky 0.1, RMSProp)"),
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


def run_preset(preset: str, args, extra: list[str]) -> dict:
    run_dir = args.out / preset.replace(",", "+")
    cmd = [sys.executable, "-m", "purejaxdqn.train", "--preset", preset, "--num-seeds", str(args.num_seeds),
           "--seed", str(args.seed), "--output-dir", str(run_dir), "--overwrite", "--no-progress", *extra]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"learning_suite: {preset} failed: {proc.stderr.strip()[-500:]}")
    config = json.loads((run_dir / "config.json").read_text())["config"]
    summary = json.loads((run_dir / "summary.json").read_text())
    steps, returns = read_evals(run_dir, args.num_seeds)
    threshold, source = REFERENCES.get(config["env_id"], (float("nan"), "no reference"))
    return {
        "preset": preset, "env_id": config["env_id"], "seeds": list(range(args.seed, args.seed + args.num_seeds)),
        "env_steps": config["total_steps"], "threshold": threshold, "reference": source,
        "command": " ".join(["python -m purejaxdqn.train", *cmd[3:]]), "wall_s": summary.get("total_s"),
        "steps": steps.tolist(), "returns": returns.tolist(), **judge(steps, returns, threshold, args.last_k),
    }  # fmt: skip


def markdown(results: list[dict], last_k: int) -> str:
    lines = [
        f"| preset | env | steps | seeds | final mean | IQM | min | >= threshold at end | stayed (last {last_k} evals) "
        "| first reached (median step) | threshold (source) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        firsts = [s for s in r["first_solved_step"] if s is not None]
        median_first = f"{int(np.median(firsts)):,}" if firsts else "never"
        n = len(r["seeds"])
        lines.append(
            f"| {r['preset']} | {r['env_id']} | {r['env_steps']:,} | {r['seeds'][0]}-{r['seeds'][-1]} "
            f"| {r['final_mean']:.1f} | {r['final_iqm']:.1f} | {r['final_min']:.1f} | {r['solved_at_end']}/{n} "
            f"| {r['stayed_solved']}/{n} | {median_first} | {r['threshold']:g} ({r['reference']}) |"
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
        ax.set_ylabel("greedy eval return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="cartpole", help="comma-separated; '+' joins stacked presets: breakout+rainbow")
    parser.add_argument("--num-seeds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1000, help="first seed (keep it away from the tuning seeds)")
    parser.add_argument("--last-k", type=int, default=3, help="evals at the end that must all reach the threshold")
    parser.add_argument("--out", type=Path, default=Path("runs/learning_suite"))
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: checks the script runs (tests)")
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
