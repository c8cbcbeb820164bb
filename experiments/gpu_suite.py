"""The prepared accelerator suite: one command, one JSON, one markdown table.

Made to fit a lent GPU machine's short lease (15 minutes of device time, start-up included).
Each item runs in its own process (`python -m purejaxdqn.train`, or a script of
`experiments/`), so compile, run time and the device's peak memory are each item's own. Items,
cheapest and most important first; when the time budget runs short the rest are skipped and
say so:

1. the default command (`python -m purejaxdqn.train`), cold and warm compilation cache: wall
   time from process start, final eval return (goal on a GPU: < 3 s wall warm, solved);
2. seeds scaling on the reference workload: 1, 8, 64, 256, 1024 seeds x 500k steps (1 seed is
   the reference workload itself; goal: 1024 seeds in < 60 s), and 1 seed in one chunk (what
   the host loop between chunks costs);
3. the env-only ceiling of Breakout-MinAtar (random actions, the MinAtar items' number of
   envs, same program shape: a jitted scan of vectorized steps) and prioritized replay's
   sample + priority write-back at 1e5 and 1e6 entries;
4. where one iteration's time goes (`experiments/profile_iteration.py`, reference preset) and
   what it launches (`experiments/loop_structure.py`: kernels and host round trips);
5. with `--purejaxrl DIR`: PureJaxRL's dqn.py side by side, interleaved pairs at 1 and 128
   seeds (DIR holds `bench_purejaxrl.py`, the patched `dqn.py` and the `wandb.py` stand-in of
   `../shared/peers/`; flashbax must be importable);
6. Breakout-MinAtar DQN and Rainbow presets, against the env-only ceiling.

    python experiments/gpu_suite.py --out gpu_suite                       # on the GPU machine
    python experiments/gpu_suite.py --out gpu_suite --purejaxrl .gpu     # ... and PureJaxRL
    python experiments/gpu_suite.py --out /tmp/s --smoke                  # seconds on a CPU (tests run it)

Writes OUT/gpu_suite.json and OUT/gpu_suite.md (and each run's directory under OUT/runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "seeds": [1, 8, 64, 256, 1024],
    "seed_steps": 500_000,
    "minatar_steps": 200_000,
    "minatar_seeds": 16,
    "per_sizes": [100_000, 1_000_000],
    "micro_iterations": 2_000,
    "profile_iterations": 5_000,
    "peer_seeds": [1, 128],
    "peer_steps": 500_000,
}
SMOKE = {
    "seeds": [1, 2],
    "seed_steps": 4_000,
    "minatar_steps": 2_000,
    "minatar_seeds": 1,
    "per_sizes": [1_000],
    "micro_iterations": 200,
    "profile_iterations": 200,
    "peer_seeds": [1],
    "peer_steps": 20_000,
}
SMOKE_CARTPOLE = ["--total-steps", "4000", "--learning-starts", "1000", "--eval-every", "2000", "--num-chunks", "2"]
MINATAR_SMOKE = ["--learning-starts", "500", "--eval-every", "1000", "--num-chunks", "2", "--buffer-size", "2000",
                 "--num-eval-envs", "2"]  # fmt: skip


class Suite:
    """Runs items in subprocesses within a wall-time budget and collects their rows."""

    def __init__(self, out: Path, budget_s: float, smoke: bool):
        self.out, self.smoke, self.rows = out, smoke, []
        self.deadline = time.monotonic() + budget_s
        self.cache = out / "jax_cache"

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def train(self, item: str, args: list[str], timeout_s: float, cache: bool = True) -> dict:
        """One `python -m purejaxdqn.train` run: its summary plus the wall time from process start."""
        run_dir = self.out / "runs" / item.replace(" ", "_")
        cmd = [sys.executable, "-m", "purejaxdqn.train", *args, "--output-dir", str(run_dir), "--overwrite",
               "--no-progress", "--checkpoint-every", "0",
               "--compilation-cache", str(self.cache) if cache else "off"]  # fmt: skip
        row = {"item": item, "command": " ".join(["python -m purejaxdqn.train", *args])}
        if self.left() < 5:
            return self._add({**row, "status": "skipped: out of time"})
        t0 = time.perf_counter()
        proc = self._run(cmd, timeout_s)
        wall = time.perf_counter() - t0
        if isinstance(proc, str) or proc.returncode != 0:
            return self._add({**row, "status": proc if isinstance(proc, str) else self._failed(proc)})
        s = json.loads((run_dir / "summary.json").read_text())
        finals = s["final_eval_return_mean"]
        return self._add({
            **row, "status": "ok", "wall_s": wall, "compile_s": s["compile_s"], "run_s": s["run_s"],
            "env_steps_per_s": s["env_steps_per_s"], "updates_per_s": s["updates_per_s"], "runs": s["num_runs"],
            "env_steps_per_run": s["env_steps_per_run"], "device_peak_bytes": s.get("device_peak_bytes"),
            "final_return_mean": sum(finals) / len(finals), "final_return_min": min(finals),
            "device": s.get("device"), "backend": s.get("backend"),
        })  # fmt: skip

    def micro(self, item: str, name: str, kwargs: dict, timeout_s: float) -> dict:
        """A microbenchmark of this file (`--micro NAME`) in its own process."""
        return self.script(item, [__file__, "--micro", name, "--micro-args", json.dumps(kwargs)], timeout_s)

    def script(self, item: str, argv: list[str], timeout_s: float, env: dict | None = None,
               result: Path | None = None) -> dict:
        """A Python script whose last stdout line (or `result` file) is a JSON object: the row."""
        row = {"item": item}
        if self.left() < 5:
            return self._add({**row, "status": "skipped: out of time"})
        proc = self._run([sys.executable, *argv], timeout_s, env)
        if isinstance(proc, str) or proc.returncode != 0:
            return self._add({**row, "status": proc if isinstance(proc, str) else self._failed(proc)})
        text = result.read_text() if result else proc.stdout.strip().splitlines()[-1]
        return self._add({**row, "status": "ok", **json.loads(text)})

    def _run(self, cmd: list[str], timeout_s: float, env: dict | None = None):
        """The finished process, or why it did not finish (a status string)."""
        limit = min(timeout_s, self.left())
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env)
        except subprocess.TimeoutExpired:
            cut = "stopped by the suite's time budget" if limit < timeout_s else "timed out"
            return f"{cut} after {limit:.0f} s"

    @staticmethod
    def _failed(proc: subprocess.CompletedProcess) -> str:
        return f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"

    def _add(self, row: dict) -> dict:
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return row


def run_suite(out: Path, budget_s: float, smoke: bool, purejaxrl: Path | None = None) -> dict:
    p = SMOKE if smoke else FULL
    suite = Suite(out, budget_s, smoke)
    t0 = time.perf_counter()
    default = SMOKE_CARTPOLE if smoke else []
    suite.train("default command, cold cache", default, 120)
    suite.train("default command, warm cache", default, 60)
    for n in p["seeds"]:
        steps = SMOKE_CARTPOLE if smoke else ["--total-steps", str(p["seed_steps"])]
        suite.train(f"reference x {n} seeds", ["--preset", "reference", "--num-seeds", str(n), *steps], 150)
    # The same single run in one chunk: the difference is what the host loop between chunks
    # costs (the device waits while the host reads each chunk's statistics).
    steps = SMOKE_CARTPOLE[:-1] + ["1"] if smoke else ["--total-steps", str(p["seed_steps"]), "--num-chunks", "1"]
    suite.train("reference x 1 seeds, one chunk", ["--preset", "reference", *steps], 150)
    envs = 8 * p["minatar_seeds"]  # the MinAtar presets step 8 envs per run
    ceiling = suite.micro(f"env-only ceiling, Breakout-MinAtar x {envs} envs", "env_ceiling",
                          {"env_id": "Breakout-MinAtar", "num_envs": envs, "iterations": p["micro_iterations"]}, 90)
    for size in p["per_sizes"]:
        suite.micro(f"prioritized sample+update, {size:.0e} entries", "per", {"capacity": size, "batch": 128,
                    "iterations": p["micro_iterations"]}, 60)  # fmt: skip
    suite.script("profile of one iteration, reference preset", [str(HERE / "profile_iteration.py"), "--iterations",
                 str(p["profile_iterations"]), "--repeats", "3"], 120)  # fmt: skip
    peer = ["--purejaxrl", str(purejaxrl)] if purejaxrl is not None else []
    suite.script("loop structure (ops launched per iteration)", [str(HERE / "loop_structure.py"), *peer], 90)
    if purejaxrl is not None:
        for n in p["peer_seeds"]:
            for pair in (1, 2):
                vs_purejaxrl(suite, purejaxrl, n, p["peer_steps"], pair)
    minatar = ["--total-steps", str(p["minatar_steps"]), "--num-seeds", str(p["minatar_seeds"])]
    minatar += MINATAR_SMOKE if smoke else []
    for preset in ("breakout", "breakout,rainbow"):
        row = suite.train(f"{preset} x {p['minatar_seeds']} seeds", ["--preset", preset, *minatar], 150)
        if row.get("status") == "ok" and ceiling.get("status") == "ok":
            row["fraction_of_env_ceiling"] = row["env_steps_per_s"] / ceiling["env_steps_per_s"]
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(), "smoke": smoke,
              "suite_wall_s": time.perf_counter() - t0, "rows": suite.rows}  # fmt: skip
    (out / "gpu_suite.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "gpu_suite.md").write_text(markdown(report))
    return report


def vs_purejaxrl(suite: Suite, peer_dir: Path, seeds: int, steps: int, pair: int) -> dict:
    """One interleaved pair: PureJaxRL's dqn.py, then `--preset reference`, same workload and
    seeds; the row's ratio is PureJaxRL's run time over ours (compile excluded for both)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(peer_dir), os.environ.get("PYTHONPATH", "")])}
    peer_json = suite.out / f"purejaxrl_s{seeds}_{pair}.json"
    peer = suite.script(f"PureJaxRL dqn.py x {seeds} seeds, pair {pair}", [str(peer_dir / "bench_purejaxrl.py"),
                        "--seeds", str(seeds), "--total", str(steps), "--runs", "1", "--out", str(peer_json)], 150, env,
                        result=peer_json)  # fmt: skip
    ours = suite.train(f"purejaxdqn reference x {seeds} seeds, pair {pair}", ["--preset", "reference", "--num-seeds",
                       str(seeds), "--total-steps", str(steps)], 150, cache=False)  # fmt: skip
    if peer.get("status") == "ok":
        peer["compile_s"] = peer["trace_lower_s"] + peer["xla_compile_s"]
        peer["run_s"], peer["env_steps_per_s"] = peer["run1_s"], peer["sps_total_run2"]
        peer["final_return_mean"] = peer["final_return_min"] = peer["greedy_eval_128eps_mean"]
        if ours.get("status") == "ok":
            ours["purejaxrl_over_ours"] = peer["run_s"] / ours["run_s"]
    return ours


def markdown(report: dict) -> str:
    rows = report["rows"]
    device = next((r.get("device") for r in rows if r.get("device")), "?")
    lines = [
        f"GPU suite {report['date']} on {device} ({'smoke' if report['smoke'] else 'full'}; "
        f"{report['suite_wall_s']:.0f} s in all)",
        "",
        "| item | wall s | compile s | run s | env steps/s | updates/s | peak device MiB | final return (mean / min) | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(x, spec):
        return "" if x is None else format(x, spec)

    for r in rows:
        peak = r.get("device_peak_bytes")
        extra = f" ({r['fraction_of_env_ceiling']:.0%} of the env-only ceiling)" if "fraction_of_env_ceiling" in r else ""
        per = f"{r['us_per_step']:.1f} us per sample+update" if "us_per_step" in r else ""
        if "purejaxrl_over_ours" in r:
            extra += f" (PureJaxRL's run time / ours: {r['purejaxrl_over_ours']:.2f})"
        if "ours" in r:
            per = "; ".join(f"{who}: loop body {x['body_ops']} ops, branches {x['branch_ops']}" for who, x in r.items()
                            if isinstance(x, dict) and "body_ops" in x)  # fmt: skip
        if "us_per_iteration" in r:
            per = "; ".join(f"{part} {us:.1f}" for part, us in r["us_per_iteration"].items()) + " (us per iteration)"
        ret = f"{r['final_return_mean']:.1f} / {r['final_return_min']:.1f}" if "final_return_mean" in r else per
        lines.append(
            f"| {r['item']} | {f(r.get('wall_s'), '.1f')} | {f(r.get('compile_s'), '.1f')} | {f(r.get('run_s'), '.2f')} "
            f"| {f(r.get('env_steps_per_s'), ',.0f')}{extra} | {f(r.get('updates_per_s'), ',.0f')} "
            f"| {f(peak / 2**20 if peak else None, ',.0f')} | {ret} | {r['status']} |"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ microbenchmarks (own process)
def micro_env_ceiling(env_id: str, num_envs: int, iterations: int) -> dict:
    """Random-action stepping of num_envs envs in a jitted scan: the most a trainer can reach."""
    import jax

    from purejaxdqn.environments import make_vec_env

    venv = make_vec_env(env_id, num_envs)

    def body(carry, _):
        env_state, key = carry
        key, action_key, step_key = jax.random.split(key, 3)
        action = jax.random.randint(action_key, (num_envs,), 0, venv.num_actions)
        return (venv.step(step_key, env_state, action).env_state, key), None

    def run(key):
        _, env_state = venv.reset(key)
        return jax.lax.scan(body, (env_state, key), None, length=iterations)[0]

    compiled = jax.jit(run).lower(jax.random.key(0)).compile()
    jax.block_until_ready(compiled(jax.random.key(0)))
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(jax.random.key(1)))
    run_s = time.perf_counter() - t0
    return {"run_s": run_s, "env_steps_per_s": iterations * num_envs / run_s, **_device()}


def micro_per(capacity: int, batch: int, iterations: int) -> dict:
    """Prioritized replay bookkeeping alone: stratified sample + priority write-back per step."""
    import jax
    import jax.numpy as jnp

    from purejaxdqn.algorithm import prioritized

    def body(carry, _):
        tree, key = carry
        key, sample_key = jax.random.split(key)
        idx = prioritized.sample(tree, sample_key, batch, capacity)
        weights = prioritized.importance_weights(tree, idx, capacity, 0.5)
        new = prioritized.priorities_from_td(weights + 0.1, 0.6)
        return (prioritized.set(tree, idx, new), key), None

    tree = prioritized.set(prioritized.init(capacity), jnp.arange(capacity), jnp.ones(capacity))

    def run(tree):
        return jax.lax.scan(body, (tree, jax.random.key(0)), None, length=iterations)[0]

    compiled = jax.jit(run).lower(tree).compile()
    jax.block_until_ready(compiled(tree))
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(tree))
    run_s = time.perf_counter() - t0
    return {"run_s": run_s, "us_per_step": run_s / iterations * 1e6, **_device()}


def _device() -> dict:
    import jax

    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    return {"device": getattr(device, "device_kind", str(device)), "backend": jax.default_backend(),
            "device_peak_bytes": stats.get("peak_bytes_in_use")}  # fmt: skip


MICRO = {"env_ceiling": micro_env_ceiling, "per": micro_per}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_suite"))
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: checks the suite runs (CPU, tests)")
    parser.add_argument("--budget-s", type=float, default=450, help="wall-time budget; later items are skipped")
    parser.add_argument("--purejaxrl", type=Path, help="folder with bench_purejaxrl.py, dqn.py, wandb.py: side-by-side pairs")
    parser.add_argument("--micro", choices=sorted(MICRO), help=argparse.SUPPRESS)
    parser.add_argument("--micro-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.micro:
        print(json.dumps(MICRO[args.micro](**json.loads(args.micro_args))))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    report = run_suite(args.out, args.budget_s, args.smoke, args.purejaxrl)
    print(markdown(report))
    return 0 if all(r["status"] == "ok" for r in report["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
