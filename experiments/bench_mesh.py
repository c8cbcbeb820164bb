"""Env steps/s against the device mesh: data-parallel devices (1, 2, 4, 8) for one run,
devices on the runs axis for a batch of vmapped seeds, and devices on the model axis
(tensor-parallel hidden layers) for one run.

For the model axis two more figures: per-device bytes of the learner state (online and target
parameters, Adam moments) of a wide network (`--model-memory-widths`, default 8192,8192),
computed from the shardings of the compiled program (nothing is run), and the run time of a
run whose network is split (`--model-run-widths`, default 256,256).

Each point is one `python -m purejaxdqn.train` process (the real CLI path, outputs included),
read back from its summary.json. On a CPU the devices are forced with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`: they share the same cores, so the figures
show the cost of the mesh (collectives, smaller per-device work), not a speedup. On a machine
with real devices drop `--force-cpu-devices`.

    python experiments/bench_mesh.py                       # forced CPU devices, both axes
    python experiments/bench_mesh.py --devices 1 2 4 8 --total-steps 200000
    python experiments/bench_mesh.py --axes model --total-steps 20000
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


def model_memory_rows(devices: list[int], widths: str, force_devices: int | None) -> list[dict]:
    """Per-device learner bytes (parameters, target, Adam moments) of one run of the reference
    workload with `widths`, over a model axis of each size in `devices`, from the compiled
    program's shardings."""
    if force_devices:  # before jax starts: this process needs the devices itself
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={force_devices}"
        os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import numpy as np

    from purejaxdqn import cli
    from purejaxdqn.algorithm import parallel
    from purejaxdqn.host import runner

    def per_device(tree) -> int:
        return sum(int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize for x in jax.tree.leaves(tree))

    config = cli.make_plan([*WORKLOAD, "--widths", widths]).config
    runs, _ = runner.make_runs(config)
    rows = []
    for n in devices:
        learner = runner.compile_program(config, runs, parallel.MeshShape(1, 1, n)).abstract_state.learner
        rows.append({"model_devices": n, "widths": widths, "params_mib": round(per_device(learner.params) / 2**20, 1),
                     "learner_mib": round(per_device(learner) / 2**20, 1)})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--total-steps", type=int, default=200_000)
    parser.add_argument("--num-seeds", type=int, default=8, help="vmapped seeds for the runs-axis sweep")
    parser.add_argument("--axes", nargs="+", default=["data", "runs"], choices=["data", "runs", "model"])
    parser.add_argument("--model-memory-widths", default="8192,8192", help="network for the model-axis memory rows")
    parser.add_argument("--model-run-widths", default="256,256", help="network for the model-axis run-time rows")
    parser.add_argument("--force-cpu-devices", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    force = max(args.devices) if args.force_cpu_devices else None
    base = [*WORKLOAD, "--total-steps", str(args.total_steps)]
    rows = []
    for axis in args.axes:
        for d in args.devices:
            if axis == "data":
                s = run_cli([*base, "--mesh-runs", "1", "--mesh-data", str(d)], force)
            elif axis == "model":
                s = run_cli([*base, "--widths", args.model_run_widths, "--mesh-runs", "1", "--mesh-model", str(d)], force)
            else:
                s = run_cli([*base, "--num-seeds", str(args.num_seeds), "--mesh-runs", str(d), "--mesh-data", "1"], force)
            rows.append(row(axis, d, s))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| axis | devices | runs | compile s | run s | env steps/s (total) | updates/s | final eval (mean) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['axis']} | {r['devices']} | {r['runs']} | {r['compile_s']} | {r['run_s']} | "
              f"{r['env_steps_per_s']:,} | {r['updates_per_s']:,} | {r['final_eval_mean']} |")  # fmt: skip
    if "model" in args.axes:
        memory = model_memory_rows(args.devices, args.model_memory_widths, force)
        print("\n| model devices | widths | parameters per device (MiB) | parameters + target + Adam per device (MiB) |")
        print("|---|---|---|---|")
        for r in memory:
            print(f"| {r['model_devices']} | {r['widths']} | {r['params_mib']} | {r['learner_mib']} |")


if __name__ == "__main__":
    main()
