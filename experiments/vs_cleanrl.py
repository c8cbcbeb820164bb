"""Side-by-side speed of purejaxdqn and CleanRL's dqn_jax.py (CartPole-v1) or dqn_atari_jax.py (Breakout).

CleanRL's DQNs are the usual host-loop JAX DQN: one gymnasium env stepped in Python, a torch
replay buffer, a jitted update every few env steps. This runs one of them (--peer-script) and a
purejaxdqn command alternately, P pairs on this machine, so the ratio holds while the machine's
speed drifts (as ../shared/peers/vs_purejaxrl.sh does for PureJaxRL). Each whole process is timed
(start to exit: imports, compile and all), and what each prints about speed is parsed: CleanRL's
last `SPS:` line (env steps / seconds since its loop began, so its jit compiles but not its
imports; it prints one every 100 steps once learning has started, so a run must go past
--learning-starts), and ours' `compile X s | run Y s | N env steps/s` (run time only). Prints one
row per pair and the median ratios, both as speed-ups of ours over CleanRL: wall theirs/ours,
steps/s ours/theirs.

--peer-script dqn_jax (the default): CleanRL runs its defaults (CartPole-v1, 1 env, replay 10k,
batch 128, learning starts 10k, train every 10 steps, target copy every 500, epsilon 1 -> 0.05
over half the steps). --peer-script dqn_atari_jax: its defaults (BreakoutNoFrameskip-v4: ALE v4,
no sticky actions, full action set off, with its own wrappers: up to 30 no-ops, frame skip 4 with
max-pooling, a life loss ends an episode for the learner, FIRE on reset, rewards clipped, 84x84
grey, 4 stacked; 1 env, Nature CNN, Adam 1e-4, batch 32, train every 4 steps, target copy every
1000, epsilon 1 -> 0.01 over 10% of the steps), but for the replay buffer's size: its default 1M
(26 GiB of uint8 frames, which numpy cannot allocate on a machine with less memory) becomes
min(1M, steps + 1), which a run of that many steps never fills, so every sample is the one the
1M buffer would give. Either way CleanRL is given --env-id, --total-timesteps, --seed and
--learning-starts (this script's, default the peer's own: 10k CartPole, 80k Breakout), and the same
--learning-starts N is appended to ours (or fills a {learning_starts} in --ours instead); tracking
and video off; its TensorBoard events go to a temp dir. Nothing of CleanRL enters this repo:
experiments/setup_cleanrl.sh puts it in a scratch folder.

    experiments/setup_cleanrl.sh CLEANRL_GIT_DIR            # once: SCRATCH = /tmp/peers/cleanrl
    python experiments/vs_cleanrl.py --steps 50000 --pairs 2 --json /tmp/vs_cleanrl.json
    python experiments/vs_cleanrl.py --ours "python -m purejaxdqn.train --env-id gymnasium:CartPole-v1 \\
        --actors 1 --total-steps {steps} --seed {seed} --no-progress --output-dir {out}"  # e.g. a host-env trainer
    python experiments/vs_cleanrl.py --peer-script dqn_atari_jax --steps 200000 --pairs 2 \\
        --json /tmp/vs_cleanrl_breakout.json      # ours: --preset atari --env-id Breakout
    python experiments/vs_cleanrl.py --peer-script dqn_atari_jax --steps 3000 --learning-starts 1000 \\
        --pairs 1 --ours "python -c 'print(1)'"   # CleanRL's side alone (a placeholder for ours)

Run from anywhere with the project's venv active; --ours runs from the project root, a leading
`python` being this interpreter, with {steps}, {seed}, {out} (a fresh empty temp dir) and
optionally {learning_starts} filled in.
"""

from __future__ import annotations

import argparse
import dataclasses
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
# purejaxdqn's Atari preset on Breakout.
OURS_ATARI = ("python -m purejaxdqn.train --preset atari --env-id Breakout --total-steps {steps} --seed {seed} "
              "--no-progress --output-dir {out}")


@dataclasses.dataclass(frozen=True)
class Peer:
    script: str  # CleanRL's script, relative to setup_cleanrl.sh's SCRATCH
    env_id: str  # what CleanRL is given as --env-id (its own default)
    ours: str  # default --ours
    steps: int  # default --steps
    learning_starts: int  # CleanRL's default
    buffer_cap: int | None = None  # CleanRL's --buffer-size becomes min(this, steps + 1); None: its default


PEERS = {
    "dqn_jax": Peer("cleanrl/dqn_jax.py", "CartPole-v1", OURS, 500_000, 10_000),  # steps: CleanRL's default
    # CleanRL's default run is 10M steps (hours here); ALE's v4 ids are registered by ale-py 0.12.
    "dqn_atari_jax": Peer("cleanrl/dqn_atari_jax.py", "BreakoutNoFrameskip-v4", OURS_ATARI, 200_000, 80_000,
                          buffer_cap=1_000_000),
}


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


def run_theirs(peer_dir: Path, peer: Peer, steps: int, seed: int, learning_starts: int, tmp: Path) -> dict:
    cmd = [str(peer_dir / "venv/bin/python"), str(peer_dir / peer.script), "--env-id", peer.env_id,
           "--total-timesteps", str(steps), "--seed", str(seed), "--learning-starts", str(learning_starts),
           "--no-track", "--no-capture-video"]
    if peer.buffer_cap:
        cmd += ["--buffer-size", str(min(peer.buffer_cap, steps + 1))]
    env = {**os.environ, "PYTHONPATH": str(peer_dir)}
    wall, out = timed(cmd, cwd=tmp, env=env)  # cwd: its runs/ folder lands in the temp dir
    returns = [float(r) for r in re.findall(r"episodic_return=([-\d.]+)", out)]
    return {"cmd": shlex.join(cmd), "wall_s": wall, "sps": last_float(r"SPS: (\d+)", out), "episodes": len(returns),
            "last10_return": statistics.mean(returns[-10:]) if returns else None}


def run_ours(template: str, steps: int, seed: int, learning_starts: int, out_dir: Path) -> dict:
    cmd = shlex.split(template.format(steps=steps, seed=seed, out=out_dir, learning_starts=learning_starts))
    if "{learning_starts}" not in template:
        cmd += ["--learning-starts", str(learning_starts)]
    if cmd[0] == "python":
        cmd[0] = sys.executable
    wall, out = timed(cmd, cwd=ROOT)
    return {"cmd": shlex.join(cmd), "wall_s": wall, "sps": last_float(r"([\d,.]+) env steps/s", out),
            "compile_s": last_float(r"compile ([\d.]+) s", out), "run_s": last_float(r"run ([\d.]+) s", out),
            "final_eval": last_float(r"final eval return ([-\d.]+)", out)}


def ratio(a, b):
    return a / b if a and b else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peer", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "peers/cleanrl",
                    help="setup_cleanrl.sh's SCRATCH")
    ap.add_argument("--peer-script", choices=sorted(PEERS), default="dqn_jax",
                    help="CleanRL's script: dqn_jax (CartPole-v1) or dqn_atari_jax (BreakoutNoFrameskip-v4); "
                         "sets the defaults of --steps, --learning-starts and --ours")
    ap.add_argument("--steps", type=int, help="env steps per run (default: dqn_jax 500k, CleanRL's; dqn_atari_jax 200k)")
    ap.add_argument("--learning-starts", type=int,
                    help="given to both sides (default: CleanRL's, dqn_jax 10k, dqn_atari_jax 80k)")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ours", help="purejaxdqn command; {steps} {seed} {out} (and {learning_starts}, else "
                                   "--learning-starts N is appended) filled in (default: the peer's)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    a = ap.parse_args()
    peer = PEERS[a.peer_script]
    a.steps = peer.steps if a.steps is None else a.steps
    a.learning_starts = peer.learning_starts if a.learning_starts is None else a.learning_starts
    a.ours = peer.ours if a.ours is None else a.ours
    if not (a.peer / peer.script).is_file():
        sys.exit(f"no {a.peer}/{peer.script}: run experiments/setup_cleanrl.sh first")
    if a.steps <= a.learning_starts + 100:
        sys.exit(f"--steps {a.steps} must pass --learning-starts {a.learning_starts} by more than 100: "
                 "CleanRL prints SPS only once it trains")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(1, a.pairs + 1):
            (Path(tmp) / f"theirs{i}").mkdir()
            theirs = run_theirs(a.peer, peer, a.steps, a.seed, a.learning_starts, Path(tmp) / f"theirs{i}")
            ours = run_ours(a.ours, a.steps, a.seed, a.learning_starts, Path(tmp) / f"ours{i}")
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
    print(f"{a.peer_script} ({peer.env_id}), median over {a.pairs} pairs of {a.steps:,} steps:"
          f" wall CleanRL/ours {med['wall_ratio']:.2f}x"
          + (f", env steps/s ours/CleanRL {med['sps_ratio']:.1f}x" if med["sps_ratio"] else ""))
    if a.json:
        commit = a.peer / "COMMIT"
        a.json.write_text(json.dumps({
            "date": datetime.date.today().isoformat(), "machine": platform.node(), "cpus": os.cpu_count(),
            "cleanrl_commit": commit.read_text().strip() if commit.is_file() else None,
            "peer_script": a.peer_script, "env_id": peer.env_id, "steps": a.steps,
            "learning_starts": a.learning_starts, "pairs": a.pairs, "seed": a.seed, "ours": a.ours, "rows": rows,
            "median_wall_ratio": med["wall_ratio"], "median_sps_ratio": med["sps_ratio"]}, indent=1))


if __name__ == "__main__":
    main()
