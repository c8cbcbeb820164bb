"""Env families beside their ceiling: env-only steps/s and the trainer's env steps/s.

For each env id (or preset): (1) the ceiling, `--num-envs` envs stepped with uniformly random
(allowed) actions in one jitted scan; (2) the trainer on the same number of envs, its preset's
settings (an id without a preset: the defaults), `--steps` env steps in one compiled program.
Compile and run time are reported apart, with env steps/s, updates/s and the train state's
bytes (replay included). Writes OUT/env_speed.json and OUT/env_speed.md.

    python experiments/env_speed.py --envs minigrid-empty,snake,craftax-classic --out runs/env_speed
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax


def ceiling(env_id: str, num_envs: int, iterations: int, reset_ratio: int = 1) -> dict:
    """Random-action stepping in a jitted scan (masked families: a random allowed action), with
    the trainer's shared resets (`reset_ratio`)."""
    from purejaxdqn.algorithm import acting
    from purejaxdqn.envs import make_vec_env

    venv = make_vec_env(env_id, num_envs, reset_ratio=reset_ratio)

    def body(carry, _):
        obs, env_state, key = carry
        key, action_key, step_key = jax.random.split(key, 3)
        action = acting.random_action(action_key, (num_envs,), venv.num_actions, venv.action_mask(obs))
        res = venv.step(step_key, env_state, action)
        return (res.obs, res.env_state, key), None

    def run(key):
        obs, env_state = venv.reset(key)
        return jax.lax.scan(body, (obs, env_state, key), None, length=iterations)[0][1]

    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(jax.random.key(0)))
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(jax.random.key(1)))
    run_s = time.perf_counter() - t0
    return {"compile_s": compile_s, "run_s": run_s, "env_steps_per_s": iterations * num_envs / run_s}


def trainer(config) -> dict:
    """The whole trainer for `config` (one compiled program): compile and run apart."""
    from purejaxdqn import make_train
    from purejaxdqn.algorithm.schedules import multiples_crossed
    from purejaxdqn.host.memory import state_bytes

    train = jax.jit(make_train(config))
    t0 = time.perf_counter()
    compiled = train.lower(jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0
    out = jax.block_until_ready(compiled(jax.random.key(0)))
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(jax.random.key(1)))
    run_s = time.perf_counter() - t0
    steps = config.actual_total_steps
    updates = int(config.gradient_steps * multiples_crossed(0, steps, config.update_every, config.learning_starts))
    return {"compile_s": compile_s, "run_s": run_s, "env_steps_per_s": steps / run_s, "updates_per_s": updates / run_s,
            "state_mib": float(state_bytes(out)) / 2**20}  # fmt: skip


def config_for(name: str, num_envs: int, steps: int, reset_ratio: int = 0):
    """A preset's config (or an env id's default one), for `steps` env steps in one chunk, on
    `num_envs` envs (0: the preset's own), its replay no bigger than the run, sharing resets as
    `reset_ratio` says (0: as the preset does, at most one reset per step for all envs)."""
    from purejaxdqn.config import PRESETS, from_preset

    base = from_preset(name) if name in PRESETS else from_preset(None, env_id=name)
    num_envs = num_envs or base.num_envs
    # Replay holds at most the run's steps (a buffer it never fills costs memory, not speed:
    # Atari's 1M frames are 6.6 GiB).
    return base.replace(num_envs=num_envs, total_steps=steps, num_chunks=1, eval_every=steps // 2,
                        reset_ratio=min(reset_ratio or base.reset_ratio, num_envs),
                        learning_starts=min(base.learning_starts, steps // 4),
                        buffer_size=min(base.buffer_size, max(steps, 4 * base.batch_size)))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default="minigrid-empty,snake,craftax-classic", help="comma-separated presets or env ids")
    parser.add_argument("--num-envs", type=int, default=0, help="envs stepped together (0: each preset's own)")
    parser.add_argument("--ceiling-steps", type=int, default=200, help="vectorized steps of the ceiling scan")
    parser.add_argument("--steps", type=int, default=20_000, help="env steps of the trainer run")
    parser.add_argument("--reset-ratio", type=int, default=0, help="training envs per reset made each step (0: "
                        "each preset's own; the ceiling shares resets the same way)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/env_speed"))
    parser.add_argument("--json", action="store_true", help="end with one JSON line per env: the trainer's row "
                        "with the ceiling's env steps/s beside it (the GPU suite's rows)")  # fmt: skip
    args = parser.parse_args(argv)
    rows = []
    for name in args.envs.split(","):
        config = config_for(name, args.num_envs, args.steps, args.reset_ratio)
        row = {"name": name, "env_id": config.env_id, "num_envs": config.num_envs, "reset_ratio": config.reset_ratio,
               "ceiling": ceiling(config.env_id, config.num_envs, args.ceiling_steps, config.reset_ratio),
               "trainer": trainer(config)}  # fmt: skip
        row["trainer_vs_ceiling"] = row["trainer"]["env_steps_per_s"] / row["ceiling"]["env_steps_per_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} {jax.devices()[0].device_kind}, "
              f"{jax.device_count()} device(s)", "steps": args.steps, "rows": rows}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "env_speed.json").write_text(json.dumps(report, indent=1))
    (args.out / "env_speed.md").write_text(markdown(report))
    print(markdown(report))
    if args.json:
        for r in rows:
            print(json.dumps({**r["trainer"], "ceiling_env_steps_per_s": r["ceiling"]["env_steps_per_s"],
                              "fraction_of_env_ceiling": r["trainer_vs_ceiling"], "num_envs": r["num_envs"]}))  # fmt: skip
    return 0


def markdown(report: dict) -> str:
    lines = [
        "| preset / id | env | envs | reset ratio | ceiling env steps/s | trainer env steps/s | updates/s | trainer / ceiling "
        "| compile s (ceiling, trainer) | state MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in report["rows"]:
        c, t = r["ceiling"], r["trainer"]
        lines.append(f"| {r['name']} | {r['env_id']} | {r['num_envs']} | {r.get('reset_ratio', 1)} | {c['env_steps_per_s']:,.0f} | {t['env_steps_per_s']:,.0f} "
                     f"| {t['updates_per_s']:,.0f} | {r['trainer_vs_ceiling']:.2f} | {c['compile_s']:.1f}, {t['compile_s']:.1f} "
                     f"| {t['state_mib']:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
