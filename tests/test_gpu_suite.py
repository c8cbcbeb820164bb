"""The prepared GPU suite (experiments/gpu_suite.py) in its CPU smoke mode, so it cannot rot
before the rare moment a GPU machine is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# Stands in for ../shared/peers/bench_purejaxrl.py (PureJaxRL is never a dependency): writes
# the fields the suite reads, with a run time that makes the ratio checkable, and has a `dqn`
# whose program loop_structure.py can read.
FAKE_PEER = """
import argparse, json, types
import jax

DEFAULT_CONFIG = {"N": 50}


def _make_train(config):
    def train(key):
        def body(c, i):  # an unbatched predicate: under vmap the cond stays a branch
            return jax.lax.cond(i % 2 == 0, jax.numpy.sin, lambda x: x, c) * 1.5, None
        return jax.lax.scan(body, jax.random.uniform(key, (3,)), jax.numpy.arange(config["N"]))[0]
    return train


dqn = types.SimpleNamespace(make_train=_make_train)

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    for name in ("--seeds", "--total", "--runs", "--out"):
        ap.add_argument(name)
    a = ap.parse_args()
    json.dump({"run1_s": 0.5, "trace_lower_s": 0.25, "xla_compile_s": 1.0, "sps_total_run2": 4e4,
               "greedy_eval_128eps_mean": 500.0, "num_seeds": int(a.seeds)}, open(a.out, "w"))
    print("{\\n not the result: the suite reads --out")
"""


def test_gpu_suite_smoke_mode_runs_every_item_and_writes_its_table(tmp_path):
    peer = tmp_path / "peer"
    peer.mkdir()
    (peer / "bench_purejaxrl.py").write_text(FAKE_PEER)
    out = tmp_path / "suite"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "gpu_suite.py"), "--smoke", "--out", str(out), "--purejaxrl", str(peer),
         "--budget-s", "850"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_suite.json").read_text())
    assert report["complete"] and all(r["status"] == "ok" for r in report["rows"])
    items = [r["item"] for r in report["rows"]]
    rows = {r["item"]: r for r in report["rows"]}
    # 1. the static chunk against the branching one, first; ratios per interleaved round
    ab = [f"reference x 1 seeds, {v}" for v in ("branching", "static, unroll 1", "static, unroll 2")]
    assert items[:5] == [*ab, "default command, cold cache", "default command, warm cache"]
    branching, static, unroll2 = (rows[i] for i in ab)
    assert branching["per_env_step"]["conditionals"] == [2, 2] and static["per_env_step"]["conditionals"] == [0, 0]
    assert static["per_env_step"]["traced_loops"] == [0, 0] and len(static["run_s_rounds"]) == 2
    assert static["over_branching_rounds"] == [a / b for a, b in zip(static["run_s_rounds"], branching["run_s_rounds"])]
    assert "over_unroll_1" in unroll2 and "over_unroll_1" not in static and static["settings"] == {"loop": "static", "unroll": 1}
    assert {"reference x 2 seeds, branching", "reference x 2 seeds, static, unroll 1"} <= set(items)
    # 2. the default command; the trainer's wall split where summary.json has one
    assert rows["default command, warm cache"]["compile_s"] < rows["default command, cold cache"]["compile_s"]
    assert "wall_split_s" in rows["default command, warm cache"]
    # 3. PureJaxRL pairs
    peer, ours = rows["PureJaxRL dqn.py x 1 seeds, pair 1"], rows["purejaxdqn reference x 1 seeds, pair 1"]
    assert peer["run_s"] == 0.5 and peer["compile_s"] == 1.25
    assert ours["purejaxrl_over_ours"] == 0.5 / ours["run_s"] and ours["runs"] == 1
    # 4. command-buffer flags: one process each, XLA_FLAGS in its environment
    (flag,) = [r for r in report["rows"] if r["item"].startswith("XLA_FLAGS=--xla_gpu_enable_command_buffer=,")]
    assert "--xla_gpu_enable_command_buffer=" in flag["xla_flags"]
    assert flag["over_default_flags"] == flag["run_s"] / static["run_s"]
    # 5. MinAtar against its env-only ceiling
    assert 0 < rows["breakout x 1 seeds"]["fraction_of_env_ceiling"] < 1
    # 5b. the env families (#22): the trainer beside its env-only ceiling
    family = rows["minigrid-empty x 4 envs: trainer (env-only ceiling in notes)"]
    assert 0 < family["fraction_of_env_ceiling"] < 1 and family["ceiling_env_steps_per_s"] > family["env_steps_per_s"]
    # 5c. Atari (#20): the trainer beside ale-py's env-only rate, and a learning run's row
    atari = rows["atari x 2 envs: trainer (env-only ceiling in notes)"]
    assert 0 < atari["fraction_of_env_ceiling"] < 1 and atari["updates_per_s"] > 0
    learning = rows["atari, Breakout learning"]
    assert learning["env_steps_per_run"] == 512 and learning["updates_per_s"] > 0 and "final_return_mean" in learning
    # 6. the rest
    assert any(i.startswith("env-only ceiling") for i in items) and any(i.startswith("prioritized") for i in items)
    profile = rows["profile of one iteration, reference preset"]["us_per_iteration"]
    assert all(us > 0 for us in profile.values()) and len(profile) >= 8
    structure = rows["loop structure (per env step of the chunk)"]
    assert structure["programs"]["reference --loop branching"]["per_env_step"]["conditionals"] == [2, 2]
    assert structure["purejaxrl"]["per_env_step"]["conditionals"] == [1, 1]
    table = (out / "gpu_suite.md").read_text()
    assert table.count("\n| ") == len(report["rows"]) + 1 and "env-only ceiling" in table
    assert "run time / branching" in table and "run time / unroll 1" in table and "run time / default flags" in table
