"""The prepared accelerator suite: one command, one JSON, one markdown table.

Made to fit a lent GPU machine's short lease (15 minutes of device time, start-up included):
the suite keeps to `--budget-s` (460 s; on an H200 it needs about 450), skipping what is left
when time runs short, and rewrites OUT/gpu_suite.json after every row, so a run cut short
still leaves its rows. Each item runs in its own process (`python -m purejaxdqn.train`, or a
script of `experiments/`), so compile, run time and the device's peak memory are each item's
own. Items, most decisive and cheapest first (`--only GROUP,...` reruns some; group names in
brackets):

1. [ab1] the static chunk against the branching one (issue #19), reference workload, 1 seed:
   the trainer's own programs (`runner.compile_program`, as `--loop branching` and `--loop
   static --unroll 1/4/16` compile them) in one process, run whole (every chunk, the
   statistics read after each, as the trainer does) in interleaved rounds, with what the
   device's compiled HLO executes per env step (experiments/loop_structure.py: conditionals,
   loops of traced trip count, ops, command buffers); ratios per round: static / branching,
   unroll N / unroll 1;
2. [default] the default command (`python -m purejaxdqn.train`), cold and warm compilation
   cache: wall time from process start, and summary.json's `wall_s` / `wall_split_s` where the
   trainer writes them (goal on a GPU: < 3 s wall warm, solved);
3. [peer1, peer128] with `--purejaxrl DIR`: PureJaxRL's dqn.py side by side with `--preset
   reference`, interleaved pairs at 1 seed (2 pairs) and 128 seeds (1 pair) (DIR holds
   `bench_purejaxrl.py`, the patched `dqn.py` and the `wandb.py` stand-in of `../shared/peers/`;
   flashbax must be importable); [ab128] item 1 at 128 seeds between them;
4. [flags] XLA:GPU command buffers (CUDA graphs): the branching and the static (unroll 1)
   chunk at 1 seed, one process per XLA_FLAGS variant (command buffers off;
   `+WHILE,+CONDITIONAL`; `--xla_gpu_graph_min_graph_size=1`;
   `--xla_gpu_command_buffer_unroll_loops=true`), each run time over item 1's (default flags);
5. [minatar] Breakout-MinAtar DQN (16 runs x 8 envs) against its env-only ceiling (random
   actions, same number of envs, a jitted scan of vectorized steps); [families] each env
   family's preset (experiments/env_speed.py) beside its env-only ceiling;
   [atari] the `atari` preset's trainer (8 envs, Breakout) beside ale-py's env-only rate at the
   same envs, then 200k steps of Breakout learning (env steps/s, updates/s, device memory,
   returns; never run on a GPU so far: its time is a guess, so it comes before [rest]);
6. [rest] if time remains: loop_structure.py on the device (reference static and branching,
   and PureJaxRL's program with `--purejaxrl`), seeds scaling (1 to 1024 seeds x 500k steps),
   1 seed in one chunk (what the host loop between chunks costs), where one iteration's time
   goes (profile_iteration.py), Breakout Rainbow, prioritized replay's sample + write-back.

The prepared command (BENCHMARKS.md, "GPU suite (prepared for #19)", says how `.gpu` is made
from ../shared/peers/ and which wheels go along):

    timeout 500 python experiments/gpu_suite.py --out $OUT/gpu_suite --purejaxrl .gpu
    python experiments/gpu_suite.py --out $OUT/gpu_suite2 --only flags,minatar   # a rerun of some
    python experiments/gpu_suite.py --out /tmp/s --smoke                        # a 2-core CPU, 4-7 min (tests run it)

Writes OUT/gpu_suite.json and OUT/gpu_suite.md (and each run's directory under OUT/runs). The
smoke mode shrinks every item (tiny workloads, fewer variants) and compiles XLA's machine code
at -O0 (XLA_FLAGS) to keep the CPU's compile times short.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "ab": [(1, (1, 4, 16)), (128, (1, 4, 16))],  # (seeds, unrolls of the static chunk) beside the branching one
    "ab_rounds": 2,
    "ab_overrides": {},  # the reference workload as it is: 500k steps, 20 chunks
    "flag_variants": ["off", "while", "min_graph_size_1", "unroll_loops"],
    "flag_programs": ["branching", "static, unroll 1"],
    "seeds": [1, 8, 64, 256, 1024],
    "one_chunk": True,
    "seed_steps": 500_000,
    "minatar_steps": 200_000,
    "minatar_seeds": 16,
    "rainbow": True,
    "per_sizes": [100_000, 1_000_000],
    "micro_iterations": 2_000,
    "profile_iterations": 5_000,
    "peer_pairs": [(1, 2), (128, 1)],  # (seeds, interleaved pairs)
    "peer_steps": 500_000,
    "structure": ["reference", "reference:branching"],
    # (preset, envs, trainer steps): the env families beside their ceilings (env_speed.py);
    # on a GPU many envs (the trainer is one run); skipped where a family is not installed.
    "families": [("minigrid-empty", 1024, 500_000), ("snake", 1024, 500_000), ("craftax-classic", 1024, 200_000)],
    # Atari (#20): the preset's 8 envs beside ale-py's env-only rate, then a few minutes of
    # Breakout learning (the CPU learning run's settings, BENCHMARKS.md) with its returns.
    "atari_envs": 8,
    "atari_speed_steps": 20_000,
    "atari_learning": ["--total-steps", "200000", "--learning-starts", "20000", "--eps-decay-steps", "100000",
                       "--buffer-size", "100000", "--eval-every", "50000", "--num-chunks", "8"],
}
SMOKE = {
    "ab": [(1, (1, 2)), (2, (1,))],
    "ab_rounds": 2,
    "ab_overrides": {"total_steps": 4_000, "learning_starts": 1_000, "eval_every": 2_000, "num_chunks": 2},
    "flag_variants": ["off"],
    "flag_programs": ["static, unroll 1"],
    "seeds": [],  # the rest's train runs: the default command's path already
    "one_chunk": False,
    "seed_steps": 4_000,
    "minatar_steps": 2_000,
    "minatar_seeds": 1,
    "rainbow": False,
    "per_sizes": [1_000],
    "micro_iterations": 200,
    "profile_iterations": 200,
    "peer_pairs": [(1, 1)],
    "peer_steps": 20_000,
    "structure": ["reference:branching"],
    "families": [("minigrid-empty", 4, 400)],
    "atari_envs": 2,
    "atari_speed_steps": 400,
    "atari_learning": ["--total-steps", "512", "--learning-starts", "128", "--buffer-size", "512", "--eval-every", "256",
                       "--num-chunks", "2", "--num-eval-envs", "2", "--time-limit", "100"],
}
SMOKE_CARTPOLE = ["--total-steps", "4000", "--learning-starts", "1000", "--eval-every", "2000", "--num-chunks", "2"]
MINATAR_SMOKE = ["--learning-starts", "500", "--eval-every", "1000", "--num-chunks", "2", "--buffer-size", "2000",
                 "--num-eval-envs", "2"]  # fmt: skip
# XLA:GPU command-buffer settings (../shared/notes/jax-facts.md, "XLA:GPU: what a loop costs"):
# defaults FUSION, CUBLAS, CUBLASLT, CUSTOM_CALL, CUDNN, DYNAMIC_SLICE_FUSION, CONDITIONAL
# (jaxlib >= 0.10.2); WHILE never by default; min graph size 5; loops not unrolled.
XLA_FLAG_VARIANTS = {
    "off": "--xla_gpu_enable_command_buffer=",
    "while": "--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL",
    "min_graph_size_1": "--xla_gpu_graph_min_graph_size=1",
    "unroll_loops": "--xla_gpu_command_buffer_unroll_loops=true",
}
SMOKE_XLA_FLAGS = "--xla_backend_optimization_level=0"  # machine code at -O0: same HLO, faster CPU compiles
GROUPS = ("ab1", "default", "peer1", "ab128", "peer128", "flags", "minatar", "families", "atari", "rest")


class Suite:
    """Runs items in subprocesses within a wall-time budget and collects their rows."""

    def __init__(self, out: Path, budget_s: float, smoke: bool):
        self.out, self.smoke, self.rows = out, smoke, []
        self.deadline = time.monotonic() + budget_s
        self.cache = out / "jax_cache"
        self.t0 = self.last = time.perf_counter()
        self.env = dict(os.environ)
        if smoke:
            self.env["XLA_FLAGS"] = (self.env.get("XLA_FLAGS", "") + " " + SMOKE_XLA_FLAGS).strip()

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
            # the trainer's own split of its wall time, where it writes one (absent: None)
            "summary_wall_s": s.get("wall_s"), "wall_split_s": s.get("wall_split_s"),
        })  # fmt: skip

    def micro(self, item: str, name: str, kwargs: dict, timeout_s: float, env: dict | None = None) -> dict:
        """A microbenchmark of this file (`--micro NAME`) in its own process."""
        return self.script(item, [__file__, "--micro", name, "--micro-args", json.dumps(kwargs)], timeout_s, env)

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

    def chunks(self, item: str, kwargs: dict, timeout_s: float, env: dict | None = None) -> dict[str, dict]:
        """`micro_chunks` in its own process: one row per variant ("ITEM, VARIANT"), each with
        its run times per round; {variant: row} (empty where the process did not finish)."""
        row = self.micro(item, "chunks", kwargs, timeout_s, env)
        if row["status"] != "ok":
            return {}
        self.rows.remove(row)
        variants = row.pop("variants")
        common = {k: row[k] for k in ("device", "backend", "xla_flags", "same_final_returns") if k in row}
        rows = {name: {"item": f"{item}, {name}", "status": "ok", **common, **v} for name, v in variants.items()}
        for i, r in enumerate(rows.values()):
            self._add({**r, "item_s": row["item_s"] if i == 0 else 0.0})
        return {name: self.rows[-len(rows) + i] for i, name in enumerate(rows)}

    def _run(self, cmd: list[str], timeout_s: float, env: dict | None = None):
        """The finished process, or why it did not finish (a status string)."""
        limit = min(timeout_s, self.left())
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env or self.env, check=False)
        except subprocess.TimeoutExpired:
            cut = "stopped by the suite's time budget" if limit < timeout_s else "timed out"
            return f"{cut} after {limit:.0f} s"

    @staticmethod
    def _failed(proc: subprocess.CompletedProcess) -> str:
        return f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"

    def _add(self, row: dict) -> dict:
        now = time.perf_counter()
        row.setdefault("item_s", now - self.last)  # since the previous row: what this item cost the suite
        self.last = now
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        self.write(complete=False)
        return row

    def report(self, complete: bool) -> dict:
        return {"date": time.strftime("%Y-%m-%d %H:%M"), "host": platform.node(), "smoke": self.smoke,
                "complete": complete, "suite_wall_s": time.perf_counter() - self.t0, "rows": self.rows}  # fmt: skip

    def write(self, complete: bool) -> dict:
        """OUT/gpu_suite.json (after every row, so a run cut short keeps its rows) and .md."""
        report = self.report(complete)
        (self.out / "gpu_suite.json").write_text(json.dumps(report, indent=1) + "\n")
        (self.out / "gpu_suite.md").write_text(markdown(report))
        return report


def run_suite(out: Path, budget_s: float, smoke: bool, purejaxrl: Path | None = None,
              only: set[str] | None = None) -> dict:  # fmt: skip
    p = SMOKE if smoke else FULL
    suite = Suite(out, budget_s, smoke)
    only = set(GROUPS) if only is None else only
    ab_rows: dict[int, dict[str, dict]] = {}
    if "ab1" in only:
        ab_rows[1] = loop_ab(suite, p, *p["ab"][0])
    if "default" in only:
        default = SMOKE_CARTPOLE if smoke else []
        suite.train("default command, cold cache", default, 120)
        suite.train("default command, warm cache", default, 60)
    if purejaxrl is not None and "peer1" in only:
        for pair in range(1, p["peer_pairs"][0][1] + 1):
            vs_purejaxrl(suite, purejaxrl, p["peer_pairs"][0][0], p["peer_steps"], pair)
    if "ab128" in only:
        loop_ab(suite, p, *p["ab"][1])
    if purejaxrl is not None and "peer128" in only:
        for seeds, pairs in p["peer_pairs"][1:]:
            for pair in range(1, pairs + 1):
                vs_purejaxrl(suite, purejaxrl, seeds, p["peer_steps"], pair)
    if "flags" in only:
        xla_flags(suite, p, ab_rows.get(1, {}))
    ceiling: dict = {}
    if "minatar" in only:
        envs = 8 * p["minatar_seeds"]  # the MinAtar presets step 8 envs per run
        ceiling = suite.micro(f"env-only ceiling, Breakout-MinAtar x {envs} envs", "env_ceiling",
                              {"env_id": "Breakout-MinAtar", "num_envs": envs, "iterations": p["micro_iterations"]}, 90)
        minatar(suite, p, "breakout", ceiling)
    if "families" in only:
        families(suite, p)
    if "atari" in only:
        atari(suite, p)
    if "rest" in only:
        rest(suite, p, purejaxrl, ceiling)
    report = suite.write(complete=True)
    return report


def loop_ab(suite: Suite, p: dict, seeds: int, unrolls: tuple) -> dict[str, dict]:
    """Item 1 at `seeds`: the branching chunk and the static one at each unroll, one process,
    interleaved rounds; each static row's run time over the branching one's (per round), each
    unroll's over unroll 1's."""
    variants = {"branching": {"loop": "branching"}, **{f"static, unroll {u}": {"loop": "static", "unroll": u} for u in unrolls}}
    kwargs = {"preset": "reference", "seeds": seeds, "variants": variants, "rounds": p["ab_rounds"],
              "overrides": p["ab_overrides"]}  # fmt: skip
    rows = suite.chunks(f"reference x {seeds} seeds", kwargs, 240)
    for name, row in rows.items():
        if name != "branching" and "branching" in rows:
            _ratios(row, rows["branching"], "over_branching")
        if name.startswith("static, unroll") and name != "static, unroll 1" and "static, unroll 1" in rows:
            _ratios(row, rows["static, unroll 1"], "over_unroll_1")
    suite.write(complete=False)
    return rows


def _ratios(row: dict, base: dict, key: str) -> None:
    """row[key]: the median over rounds of row's run time over base's in the same round (the
    two ran back to back), and row[key + "_rounds"]: each round's."""
    per_round = [a / b for a, b in zip(row["run_s_rounds"], base["run_s_rounds"])]
    row[key], row[key + "_rounds"] = statistics.median(per_round), per_round


def xla_flags(suite: Suite, p: dict, defaults: dict[str, dict]) -> None:
    """Item 4: one process per XLA_FLAGS variant, each program's run time over item 1's."""
    programs = {name: ({"loop": "branching"} if name == "branching" else {"loop": "static", "unroll": int(name.split()[-1])})
                for name in p["flag_programs"]}  # fmt: skip
    kwargs = {"preset": "reference", "seeds": 1, "variants": programs, "rounds": 1, "overrides": p["ab_overrides"]}
    if not all(name in defaults for name in programs):  # item 1 did not run here (--only): measure the defaults
        defaults = suite.chunks("default XLA_FLAGS, reference x 1 seeds", kwargs, 150)
    for variant in p["flag_variants"]:
        flag = XLA_FLAG_VARIANTS[variant]
        env = {**suite.env, "XLA_FLAGS": (suite.env.get("XLA_FLAGS", "") + " " + flag).strip()}
        rows = suite.chunks(f"XLA_FLAGS={flag}, reference x 1 seeds", kwargs, 150, env)
        for name, row in rows.items():
            if name in defaults:
                row["over_default_flags"] = row["run_s"] / defaults[name]["run_s"]
    suite.write(complete=False)


def minatar(suite: Suite, p: dict, preset: str, ceiling: dict) -> dict:
    args = ["--preset", preset, "--total-steps", str(p["minatar_steps"]), "--num-seeds", str(p["minatar_seeds"])]
    row = suite.train(f"{preset} x {p['minatar_seeds']} seeds", args + (MINATAR_SMOKE if suite.smoke else []), 150)
    if row.get("status") == "ok" and ceiling.get("status") == "ok":
        row["fraction_of_env_ceiling"] = row["env_steps_per_s"] / ceiling["env_steps_per_s"]
        suite.write(complete=False)
    return row


def families(suite: Suite, p: dict) -> None:
    """The env families (#22): each preset's env-only ceiling and its trainer, one row each."""
    import importlib.util

    from purejaxdqn.config import from_preset
    from purejaxdqn.envs import family_of

    for preset, envs, steps in p["families"]:
        item = f"{preset} x {envs} envs: trainer (env-only ceiling in notes)"
        package = family_of(from_preset(preset).env_id).package
        if importlib.util.find_spec(package) is None:
            suite._add({"item": item, "status": f"skipped: {package} not installed"})
            continue
        argv = [str(HERE / "env_speed.py"), "--envs", preset, "--num-envs", str(envs), "--steps", str(steps),
                "--ceiling-steps", str(p["micro_iterations"] // 10), "--out", str(suite.out / "env_speed"), "--json"]  # fmt: skip
        suite.script(item, argv, 300)


def atari(suite: Suite, p: dict) -> None:
    """Atari (#20): the `atari` preset's trainer beside ale-py's env-only rate at the same envs
    (the ALE's XLA calls copy each step to and from the host on a GPU), and Breakout learning
    for a few minutes: env steps/s, updates/s, device memory, returns."""
    import importlib.util

    item = f"atari x {p['atari_envs']} envs: trainer (env-only ceiling in notes)"
    if importlib.util.find_spec("ale_py") is None:
        suite._add({"item": item, "status": "skipped: ale_py not installed (pip install -e '.[atari]')"})
        return
    argv = [str(HERE / "env_speed.py"), "--envs", "atari", "--num-envs", str(p["atari_envs"]), "--steps",
            str(p["atari_speed_steps"]), "--ceiling-steps", str(p["micro_iterations"] // 4), "--out",
            str(suite.out / "env_speed_atari"), "--json"]  # fmt: skip
    suite.script(item, argv, 300)
    suite.train("atari, Breakout learning", ["--preset", "atari", "--env-id", "Breakout", *p["atari_learning"]], 420)


def rest(suite: Suite, p: dict, purejaxrl: Path | None, ceiling: dict) -> None:
    """Item 6: the earlier suite's items, while time remains."""
    peer = ["--purejaxrl", str(purejaxrl)] if purejaxrl is not None else []
    fast = ["--fast-compile", "--buffer-size", "2000"] if suite.smoke else []
    suite.script("loop structure (per env step of the chunk)", [str(HERE / "loop_structure.py"), "--presets",
                 *p["structure"], *fast, *peer], 120)  # fmt: skip
    for n in p["seeds"]:
        steps = SMOKE_CARTPOLE if suite.smoke else ["--total-steps", str(p["seed_steps"])]
        suite.train(f"reference x {n} seeds", ["--preset", "reference", "--num-seeds", str(n), *steps], 150)
    # The same single run in one chunk: the difference is what the host loop between chunks
    # costs (the device waits while the host reads each chunk's statistics).
    if p["one_chunk"]:
        steps = ["--total-steps", str(p["seed_steps"]), "--num-chunks", "1"]
        suite.train("reference x 1 seeds, one chunk", ["--preset", "reference", *steps], 150)
    suite.script("profile of one iteration, reference preset", [str(HERE / "profile_iteration.py"), "--iterations",
                 str(p["profile_iterations"]), "--repeats", "3"], 120)  # fmt: skip
    if p["rainbow"]:
        minatar(suite, p, "breakout,rainbow", ceiling)
    for size in p["per_sizes"]:
        suite.micro(f"prioritized sample+update, {size:.0e} entries", "per", {"capacity": size, "batch": 128,
                    "iterations": p["micro_iterations"]}, 60)  # fmt: skip


def vs_purejaxrl(suite: Suite, peer_dir: Path, seeds: int, steps: int, pair: int) -> dict:
    """One interleaved pair: PureJaxRL's dqn.py, then `--preset reference`, same workload and
    seeds; the row's ratio is PureJaxRL's run time over ours (compile excluded for both)."""
    env = {**suite.env, "PYTHONPATH": os.pathsep.join([str(peer_dir), os.environ.get("PYTHONPATH", "")])}
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
    suite.write(complete=False)
    return ours


def notes(r: dict) -> str:
    """The table's notes for one row: ratios, what the program executes, the wall split."""
    out = []
    if "fraction_of_env_ceiling" in r:
        out.append(f"{r['fraction_of_env_ceiling']:.1%} of the env-only ceiling")
    if "purejaxrl_over_ours" in r:
        out.append(f"PureJaxRL's run time / ours: {r['purejaxrl_over_ours']:.2f}")
    for key, what in (("over_branching", "/ branching"), ("over_unroll_1", "/ unroll 1")):
        if key in r:
            rounds = ", ".join(f"{x:.2f}" for x in r[key + "_rounds"])
            out.append(f"**run time {what}: {r[key]:.2f}** (rounds {rounds})")
    if "over_default_flags" in r:
        out.append(f"**run time / default flags: {r['over_default_flags']:.2f}**")
    if "run_s_rounds" in r and len(r["run_s_rounds"]) > 1:
        out.append("run s per round " + ", ".join(f"{x:.2f}" for x in r["run_s_rounds"]))
    if "per_env_step" in r:
        s = r["per_env_step"]
        out.append(f"per env step: {_span(s['conditionals'])} conditionals, {_span(s['traced_loops'])} traced loops, "
                   f"{_span(s['ops'], '.0f')} ops, {_span(s['command_buffers'])} command buffers")  # fmt: skip
    if r.get("wall_split_s"):
        out.append("wall split s: " + ", ".join(f"{k} {v:.2f}" for k, v in r["wall_split_s"].items()))
    if r.get("summary_wall_s") is not None:
        out.append(f"trainer's wall {r['summary_wall_s']:.2f} s")
    if "us_per_step" in r:
        out.append(f"{r['us_per_step']:.1f} us per sample+update")
    if "us_per_iteration" in r:
        out.append("; ".join(f"{part} {us:.1f}" for part, us in r["us_per_iteration"].items()) + " (us per iteration)")
    for who, x in [*r.get("programs", {}).items(), ("PureJaxRL", r.get("purejaxrl"))]:
        if isinstance(x, dict) and "per_env_step" in x:
            s = x["per_env_step"]
            out.append(f"{who}: {_span(s['conditionals'])} conditionals, {_span(s['traced_loops'])} traced loops, "
                       f"{_span(s['ops'], '.0f')} ops per env step")  # fmt: skip
    return "; ".join(out)


def _span(lo_hi, spec: str = "g") -> str:
    lo, hi = lo_hi
    return format(lo, spec) if lo == hi else f"{lo:{spec}}-{hi:{spec}}"


def markdown(report: dict) -> str:
    rows = report["rows"]
    device = next((r.get("device") for r in rows if r.get("device")), "?")
    cut = "" if report.get("complete", True) else ", cut short"
    lines = [
        (f"GPU suite {report['date']} on {device} ({'smoke' if report['smoke'] else 'full'}{cut}; "
         f"{report['suite_wall_s']:.0f} s in all)"),
        "",
        ("| item | wall s | compile s | run s | env steps/s | updates/s | peak device MiB | final return (mean / min) "
         "| notes | status |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(x, spec):
        return "" if x is None else format(x, spec)

    for r in rows:
        peak = r.get("device_peak_bytes")
        ret = f"{r['final_return_mean']:.1f} / {r['final_return_min']:.1f}" if "final_return_mean" in r else ""
        lines.append(
            f"| {r['item']} | {f(r.get('wall_s'), '.1f')} | {f(r.get('compile_s'), '.1f')} | {f(r.get('run_s'), '.2f')} "
            f"| {f(r.get('env_steps_per_s'), ',.0f')} | {f(r.get('updates_per_s'), ',.0f')} "
            f"| {f(peak / 2**20 if peak else None, ',.0f')} | {ret} | {notes(r)} | {r['status']} |"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ microbenchmarks (own process)
def micro_env_ceiling(env_id: str, num_envs: int, iterations: int) -> dict:
    """Random-action stepping of num_envs envs in a jitted scan: the most a trainer can reach
    (env_speed.py's ceiling, which the families item runs too)."""
    from env_speed import ceiling

    row = ceiling(env_id, num_envs, iterations)
    return {"run_s": row["run_s"], "env_steps_per_s": row["env_steps_per_s"], **_device()}


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


def micro_chunks(preset: str, seeds: int, variants: dict, rounds: int, overrides: dict) -> dict:
    """The trainer's chunk programs of `preset` (+ `overrides`) under each variant's settings
    (e.g. {"loop": "branching"}), compiled by `runner.compile_program` on one device; then
    `rounds` interleaved rounds (every other one in reverse order) of a whole run of each: init,
    every chunk, the chunk's statistics read back after each as the trainer's loop does. Per
    variant: compile time, run time per round (median as run_s), final evaluation, and what its
    compiled chunk executes per env step (loop_structure.py)."""
    import jax
    import loop_structure
    import numpy as np

    from purejaxdqn.algorithm.parallel import MeshShape
    from purejaxdqn.config import from_preset
    from purejaxdqn.host import runner

    configs = {name: from_preset(preset, **overrides, **settings) for name, settings in variants.items()}
    programs = {}
    for name, config in configs.items():
        programs[name] = runner.compile_program(config, runner.make_runs(config, seeds)[0], MeshShape(1, 1))
    results = {name: {"compile_s": programs[name].compile_s, "run_s_rounds": [], "finals": []} for name in configs}
    names = list(configs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            program, config = programs[name], configs[name]
            state = jax.block_until_ready(program.init(program.seeds, program.hp))
            t0 = time.perf_counter()
            for _ in range(config.num_chunks):
                state = program.run_chunk(state, program.hp)
                jax.device_get(state.stats)
            results[name]["run_s_rounds"].append(time.perf_counter() - t0)
            results[name]["finals"] = np.asarray(state.evals.mean)[:, -1].tolist()
    out = {}
    for name, res in results.items():
        config, finals = configs[name], res.pop("finals")
        run_s = statistics.median(res["run_s_rounds"])
        structure = loop_structure.loop_structure(programs[name].run_chunk, config.iterations_per_chunk)
        steps = config.iterations_per_chunk * config.num_chunks * config.num_envs * seeds
        out[name] = {**res, "run_s": run_s, "env_steps_per_s": steps / run_s, "runs": seeds, "settings": variants[name],
                     "final_return_mean": sum(finals) / len(finals), "final_return_min": min(finals),
                     "per_env_step": structure["per_env_step"], "main_loop_trip_count": structure["main_loop"]["trip_count"]}  # fmt: skip
    same = len({v["final_return_mean"] for v in out.values()}) == 1  # the layouts compute the same numbers
    return {"variants": out, "same_final_returns": same, "xla_flags": os.environ.get("XLA_FLAGS", ""), **_device()}


def _device() -> dict:
    import jax

    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    return {"device": getattr(device, "device_kind", str(device)), "backend": jax.default_backend(),
            "device_peak_bytes": stats.get("peak_bytes_in_use")}  # fmt: skip


MICRO = {"env_ceiling": micro_env_ceiling, "per": micro_per, "chunks": micro_chunks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_suite"))
    parser.add_argument("--smoke", action="store_true", help="tiny budgets: checks the suite runs (CPU, tests)")
    parser.add_argument("--budget-s", type=float, default=460, help="wall-time budget; later items are skipped")
    parser.add_argument("--purejaxrl", type=Path, help="folder with bench_purejaxrl.py, dqn.py, wandb.py: side-by-side pairs")
    parser.add_argument("--only", help=f"comma-separated groups to run (default all): {', '.join(GROUPS)}")
    parser.add_argument("--micro", choices=sorted(MICRO), help=argparse.SUPPRESS)
    parser.add_argument("--micro-args", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.micro:
        print(json.dumps(MICRO[args.micro](**json.loads(args.micro_args))))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    only = set(args.only.split(",")) if args.only else None
    if only and not only <= set(GROUPS):
        parser.error(f"--only: unknown group(s) {', '.join(sorted(only - set(GROUPS)))}; groups: {', '.join(GROUPS)}")
    report = run_suite(args.out, args.budget_s, args.smoke, args.purejaxrl, only)
    print(markdown(report))
    return 0 if all(r["status"] == "ok" for r in report["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
