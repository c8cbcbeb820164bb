"""Env steps/s against the device mesh: data-parallel devices (1, 2, 4, 8) for one run, and
devices on the runs axis for a batch of vmapped seeds.

Each point is one `python -m purejaxdqn.train` process (the real CLI path, outputs included),
read back from its summary.json. On a CPU the devices are forced with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`: they share the same cores, so the figures
show the cost of the mesh (collectives, smaller per-device work), not a speedup. On a machine
with real devices drop `--force-cpu-devices`.

    python experiments/bench_mesh.py                       # forced CPU devices, both axes
    python experiments/bench_mesh.py --devices 1 2 4 8 --total-steps 200000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Reference workload, with env/batch/eval counts that 1, 2, 4 and 8 divide.
WORKLOAD = ["--preset", "reference", "--num-envs", "16", "--num-eval-envs", "16", "--batch-size", "128"]


def run_cli(args: list[str], force_devices: int | None) -> dict:
    env = dict(os.environ)
    if force_devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={force_devices}"
        env["JAX_PLATFORMS"] = "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "purejaxdqn.train", *args, "--output-dir", str(out), "--no-progress",
               "--checkpoint-every", "0"]  # fmt: skip
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
        return json.loads((out / "summary.json").read_text())


def row(axis: str, devices: int, s: dict) -> dict:
    return {
        "axis": axis,
        "devices": devices,
        "runs": s["num_runs"],
        "compile_s": round(s["compile_s"], 2),
        "run_s": round(s["run_s"], 2),
        "env_steps_per_s": round(s["env_steps_per_s"]),
        "updates_per_s": round(s["updates_per_s"]),
        "final_eval_mean": round(sum(s["final_eval_return_mean"]) / s["num_runs"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--total-steps", type=int, default=200_000)
    parser.add_argument("--num-seeds", type=int, default=8, help="vmapped seeds for the runs-axis sweep")
    parser.add_argument("--axes", nargs="+", default=["data", "runs"], choices=["data", "runs"])
    parser.add_argument("--force-cpu-devices", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    force = max(args.devices) if args.force_cpu_devices else None
    base = [*WORKLOAD, "--total-steps", str(args.total_steps)]
    rows = []
    for axis in args.axes:
        for d in args.devices:
            if axis == "data":
                s = run_cli([*base, "--mesh-runs", "1", "--mesh-data", str(d)], force)
            else:
                s = run_cli([*base, "--num-seeds", str(args.num_seeds), "--mesh-runs", str(d), "--mesh-data", "1"], force)
            rows.append(row(axis, d, s))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| axis | devices | runs | compile s | run s | env steps/s (total) | updates/s | final eval (mean) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['axis']} | {r['devices']} | {r['runs']} | {r['compile_s']} | {r['run_s']} | "
              f"{r['env_steps_per_s']:,} | {r['updates_per_s']:,} | {r['final_eval_mean']} |")  # fmt: skip


if __name__ == "__main__":
    main()
