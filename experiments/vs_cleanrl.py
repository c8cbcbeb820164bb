"""Side-by-side speed of purejaxdqn and CleanRL's dqn_jax.py (gymnasium CartPole-v1).

CleanRL's DQN is the usual host-loop JAX DQN: one gymnasium env stepped in Python, a torch
replay buffer, a jitted update every 10 env steps. This runs it and a purejaxdqn command
alternately, P pairs on this machine, so the ratio holds while the machine's speed drifts (as
../shared/peers/vs_purejaxrl.sh does for PureJaxRL). Each whole process is timed (start to exit:
imports, compile and all), and what each prints about speed is parsed: CleanRL's last `SPS:` line
(env steps / seconds since its loop began, so its jit compiles but not its imports), and ours'
`compile X s | run Y s | N env steps/s` (run time only). Prints one row per pair and the median
ratios, both as speed-ups of ours over CleanRL: wall theirs/ours, steps/s ours/theirs.

CleanRL runs its defaults (CartPole-v1, 1 env, replay 10k, batch 128, learning starts 10k, train
every 10 steps, target copy every 500, epsilon 1 -> 0.05 over half the steps) with only
--total-timesteps and --seed set; tracking and video off; its TensorBoard events go to a temp dir.
Nothing of CleanRL enters this repo: experiments/setup_cleanrl.sh puts it in a scratch folder.

    experiments/setup_cleanrl.sh CLEANRL_GIT_DIR            # once: SCRATCH = /tmp/peers/cleanrl
    python experiments/vs_cleanrl.py --steps 50000 --pairs 2 --json /tmp/vs_cleanrl.json
    python experiments/vs_cleanrl.py --ours "python -m purejaxdqn.train --env-id gymnasium:CartPole-v1 \\
        --actors 1 --total-steps {steps} --seed {seed} --no-progress --output-dir {out}"  # e.g. a host-env trainer

Run from anywhere with the project's venv active; --ours runs from the project root, a leading
`python` being this interpreter, with {steps}, {seed} and {out} (a fresh empty temp dir) filled in.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# gymnasium's CartPole-v1 stepped on the host by the actor-learner, with CleanRL's algorithm and
# schedule (vanilla DQN, MSE, Adam 2.5e-4 unclipped, replay 10k, batch 128, learning starts 10k,
# an update every 10 env steps, target copy every 500 env steps, epsilon over half the run) on
# 10 envs stepped together (CleanRL steps 1).
OURS = ("python -m purejaxdqn.train --env-id gymnasium:CartPole-v1 --preset none --no-double-dqn --max-grad-norm 0 "
        "--exploration-fraction 0.5 --total-steps {steps} --seed {seed} --no-progress --output-dir {out}")


def timed(cmd: list[str], cwd, env=None) -> tuple[float, str]:
    """Wall seconds of the whole process, and its stdout; exits with its stderr tail on failure."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        sys.exit(f"failed ({p.returncode}): {shlex.join(cmd)}\n{p.stderr[-3000:]}")
    return wall, p.stdout


def last_float(pattern: str, text: str) -> float | None:
    found = re.findall(pattern, text)
    return float(found[-1].replace(",", "")) if found else None


def run_theirs(peer: Path, steps: int, seed: int, tmp: Path) -> dict:
    cmd = [str(peer / "venv/bin/python"), str(peer / "cleanrl/dqn_jax.py"), "--total-timesteps",
           str(steps), "--seed", str(seed), "--no-track", "--no-capture-video"]
    env = {**os.environ, "PYTHONPATH": str(peer)}
    wall, out = timed(cmd, cwd=tmp, env=env)  # cwd: its runs/ folder lands in the temp dir
    returns = [float(r) for r in re.findall(r"episodic_return=([-\d.]+)", out)]
    return {"wall_s": wall, "sps": last_float(r"SPS: (\d+)", out), "episodes": len(returns),
            "last10_return": statistics.mean(returns[-10:]) if returns else None}


def run_ours(template: str, steps: int, seed: int, out_dir: Path) -> dict:
    cmd = shlex.split(template.format(steps=steps, seed=seed, out=out_dir))
    if cmd[0] == "python":
        cmd[0] = sys.executable
    wall, out = timed(cmd, cwd=ROOT)
    return {"wall_s": wall, "sps": last_float(r"([\d,.]+) env steps/s", out),
            "compile_s": last_float(r"compile ([\d.]+) s", out), "run_s": last_float(r"run ([\d.]+) s", out),
            "final_eval": last_float(r"final eval return ([-\d.]+)", out)}


def ratio(a, b):
    return a / b if a and b else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "peers/cleanrl",
                    help="setup_cleanrl.sh's SCRATCH")
    ap.add_argument("--steps", type=int, default=500_000, help="env steps per run (CleanRL's default)")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ours", default=OURS, help="purejaxdqn command; {steps} {seed} {out} filled in")
    ap.add_argument("--json", type=Path, help="write every figure here")
    a = ap.parse_args()
    if not (a.peer / "cleanrl/dqn_jax.py").is_file():
        sys.exit(f"no {a.peer}/cleanrl/dqn_jax.py: run experiments/setup_cleanrl.sh first")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(1, a.pairs + 1):
            (Path(tmp) / f"theirs{i}").mkdir()
            theirs = run_theirs(a.peer, a.steps, a.seed, Path(tmp) / f"theirs{i}")
            ours = run_ours(a.ours, a.steps, a.seed, Path(tmp) / f"ours{i}")
            row = {"pair": i, "theirs": theirs, "ours": ours, "wall_ratio": theirs["wall_s"] / ours["wall_s"],
                   "sps_ratio": ratio(ours["sps"], theirs["sps"])}
            rows.append(row)
            print(f"pair {i}: CleanRL {theirs['wall_s']:.1f} s wall, {theirs['sps'] or 0:,.0f} SPS"
                  f" (last 10 episodes {theirs['last10_return'] or 0:.0f})"
                  f" | ours {ours['wall_s']:.1f} s wall, {ours['sps'] or 0:,.0f} env steps/s"
                  f" (compile {ours['compile_s'] or 0:.1f} s, run {ours['run_s'] or 0:.1f} s, eval {ours['final_eval'] or 0:.0f})"
                  f" | wall {row['wall_ratio']:.2f}x, steps/s {row['sps_ratio'] or 0:.1f}x", flush=True)

    med = {k: statistics.median(r[k] for r in rows) if all(r[k] for r in rows) else None
           for k in ("wall_ratio", "sps_ratio")}
    print(f"median over {a.pairs} pairs of {a.steps:,} steps: wall CleanRL/ours {med['wall_ratio']:.2f}x"
          + (f", env steps/s ours/CleanRL {med['sps_ratio']:.1f}x" if med["sps_ratio"] else ""))
    if a.json:
        commit = a.peer / "COMMIT"
        a.json.write_text(json.dumps({
            "date": datetime.date.today().isoformat(), "machine": platform.node(), "cpus": os.cpu_count(),
            "cleanrl_commit": commit.read_text().strip() if commit.is_file() else None,
            "steps": a.steps, "pairs": a.pairs, "seed": a.seed, "ours": a.ours, "rows": rows,
            "median_wall_ratio": med["wall_ratio"], "median_sps_ratio": med["sps_ratio"]}, indent=1))


if __name__ == "__main__":
    main()
