"""What each env step of the compiled training chunk executes: conditionals, loops with a traced
trip count, ops launched (the CPU stand-in for a GPU's host round trips and kernel launches).

For each preset it compiles the chunk program the trainer runs (`host.runner.compile_program`,
the trainer's own function: 1 device, 1 seed unless `--seeds`) and reads `run_chunk`'s
optimized HLO (`Compiled.as_text()`):

- every `while` of the program: its trip count as XLA knows it (`known_trip_count` in its
  backend_config; a `while` without one has a *traced* trip count), its nesting, and how many
  times it starts per chunk;
- the *main loop nest*: the top-level `while` (inside no other) that executes the most ops,
  its nested loops and branches counted in. It covers the chunk's env steps (`covers_chunk`
  says where the config's schedule makes that certain: every preset's does); the rest of the
  chunk (a last evaluation, the finite-parameters check) runs once per chunk and is reported
  apart (`once_per_chunk`);
- per env step of the main loop nest (one vectorized step of `num_envs` envs; a chunk has
  `iterations_per_chunk` of them, `config/schedule.py` lays them out): the `conditional`s
  executed, the loops with a traced trip count started, and the ops launched, each as
  [fewest, most] over the branches a conditional may take (equal where there is none).

An op is an HLO instruction that is not bookkeeping (tuples, parameters, constants, bitcasts
and `call` wrappers are free; a fusion is one kernel); a `while` or `conditional` counts as one
itself. A loop of known trip count n runs its body n times (XLA:GPU then skips the condition);
a loop of traced trip count is counted for one iteration (its real count is unknown here; on a
GPU each iteration copies its predicate to the host). On a GPU each counted op is about one
kernel launch and each conditional / traced-loop iteration one host round trip, unless XLA
captured it into a command buffer (CUDA graph; `command_buffers` counts the captured
sequences it calls); on a CPU the counts only stand in for that.

    python experiments/loop_structure.py                          # every preset as it is
    python experiments/loop_structure.py --presets reference breakout,rainbow --loops auto,branching
    python experiments/loop_structure.py --presets reference:branching reference:auto:128 --loops-listed
    python experiments/loop_structure.py --purejaxrl .gpu        # also PureJaxRL's dqn.py (see gpu_suite.py)
    python experiments/loop_structure.py --fast-compile          # LLVM at -O0: same HLO, half the compile

`--fast-compile` sets XLA_FLAGS=--xla_backend_optimization_level=0 before jax starts: it only
lowers the machine-code optimization level, and the optimized HLO this reads is the same (the
tests use it). The last line printed is the whole report as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

FREE = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast", "call"}
CALLED = ("body", "condition", "true_computation", "false_computation")
METRICS = ("ops", "conditionals", "traced_loops", "command_buffers")
FAST_COMPILE = "--xla_backend_optimization_level=0"


# ------------------------------------------------------------------ HLO text
def opcode(line: str) -> str | None:
    """The opcode of one HLO instruction line (`%x = f32[2]{0} add(...)`), or None."""
    _, eq, rest = line.partition(" = ")
    if not eq:
        return None
    if rest.startswith("("):  # a tuple type: skip to its closing parenthesis
        depth = 0
        for i, ch in enumerate(rest):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                rest = rest[i + 1 :]
                break
    else:
        rest = rest.partition(" ")[2]
    match = re.match(r"\s*([a-z][\w-]*)\(", rest)
    return match.group(1) if match else None


def computations(hlo: str) -> dict[str, list[str]]:
    """HLO module text -> {computation name: its instruction lines}; the entry computation is
    also under the key None."""
    comps: dict[str | None, list[str]] = {}
    name = None
    for line in hlo.splitlines():
        header = re.match(r"^(ENTRY )?%?([\w.\-]+) .*\{$", line)
        if header:
            name = header.group(2)
            comps[name] = []
            if header.group(1):
                comps[None] = comps[name]
        elif line.startswith("}"):
            name = None
        elif name is not None and opcode(line):
            comps[name].append(line.strip())
    return comps


def callees(line: str) -> list[str]:
    """Computations a while / conditional / call line runs (not a fusion's: one kernel)."""
    names = [m.group(1) for key in CALLED for m in [re.search(r"\b" + key + r"=%?([\w.\-]+)", line)] if m]
    branches = re.search(r"branch_computations=\{([^}]*)\}", line)
    if opcode(line) == "call":
        names += [m.group(1) for m in [re.search(r"\bto_apply=%?([\w.\-]+)", line)] if m]
    return names + ([b.strip().lstrip("%") for b in branches.group(1).split(",")] if branches else [])


def trip_count(while_line: str) -> int | None:
    """XLA's known trip count of a `while`, or None where it is traced."""
    match = re.search(r'known_trip_count"?:\{"?n"?:"?(\d+)', while_line)
    return int(match.group(1)) if match else None


def label(line: str) -> str:
    """Where a `while` comes from: its op_name metadata, less the jit(...) prefix."""
    match = re.search(r'op_name="([^"]*)"', line)
    name = match.group(1) if match else re.match(r"%?([\w.\-]+)", line).group(1)
    return re.sub(r"^jit\([^)]*\)/", "", name)


# ------------------------------------------------------------------ counting
def _zero() -> dict:
    return {m: [0, 0] for m in METRICS}


def _add(total: dict, part: dict, times: int = 1) -> None:
    for m in METRICS:
        total[m][0] += times * part[m][0]
        total[m][1] += times * part[m][1]


class Program:
    """One compiled module: its loops and what each computation executes, counted once."""

    def __init__(self, hlo: str):
        self.comps = computations(hlo)
        self.loops: list[dict] = []  # every while reached from the entry, outer before inner
        self._memo: dict[str, dict] = {}
        self.skipped: str | None = None  # an instruction counted as nothing (`tally_without`)
        self._walk(None, depth=0, parent=None, starts=(1, 1))

    def tally(self, name: str | None) -> dict:
        """What one execution of computation `name` executes: {metric: [fewest, most]}."""
        if name in self._memo:
            return self._memo[name]
        total = _zero()
        for line in self.comps[name]:
            _add(total, self.tally_line(line))
        self._memo[name] = total
        return total

    def tally_without(self, line: str) -> dict:
        """What one execution of the module executes with instruction `line` left out (the
        main loop nest, which may sit in a branch: subtracting it would go below zero)."""
        memo, self._memo, self.skipped = self._memo, {}, line
        try:
            return self.tally(None)
        finally:
            self._memo, self.skipped = memo, None

    def tally_line(self, line: str) -> dict:
        """What one execution of one instruction executes, nested computations counted in."""
        op, total = opcode(line), _zero()
        if line == self.skipped:
            return total
        if op not in FREE:
            total["ops"] = [1, 1]
        if op == "while":
            body, cond = (re.search(key + r"=%?([\w.\-]+)", line).group(1) for key in ("body", "condition"))
            n = trip_count(line)
            _add(total, self.tally(body), n if n is not None else 1)
            if n is None:  # one iteration's worth: the condition runs too, its predicate goes to the host
                _add(total, self.tally(cond))
                total["traced_loops"][0] += 1
                total["traced_loops"][1] += 1
        elif op == "conditional":
            branches = [self.tally(sub) for sub in callees(line)]
            for m in METRICS:
                total[m][0] += min(b[m][0] for b in branches)
                total[m][1] += max(b[m][1] for b in branches)
            total["conditionals"][0] += 1
            total["conditionals"][1] += 1
        elif op == "call":
            if "command_buffer" in line:
                total["command_buffers"] = [1, 1]
            for sub in callees(line):
                _add(total, self.tally(sub))
        return total

    def _walk(self, name, depth: int, parent: int | None, starts: tuple[int, int]) -> None:
        """Records each while under computation `name` with how often it starts per run of
        the module ([fewest, most]: inside a branch it may not start at all)."""
        for line in self.comps[name]:
            op = opcode(line)
            if op == "while":
                n = trip_count(line)
                index = len(self.loops)
                self.loops.append({"trip_count": n, "depth": depth, "parent": parent, "label": label(line),
                                   "starts_per_chunk": list(starts), "line": line})  # fmt: skip
                body = re.search(r"body=%?([\w.\-]+)", line).group(1)
                inner = starts if n is None else (starts[0] * n, starts[1] * n)
                self._walk(body, depth + 1, index, inner)
            elif op == "conditional":
                for sub in callees(line):
                    self._walk(sub, depth, parent, (0, starts[1]))
            elif op == "call":
                for sub in callees(line):
                    self._walk(sub, depth, parent, starts)

    def nest(self, index: int) -> list[int]:
        """Loop `index` and every loop inside it."""
        inside = [index]
        for i, loop in enumerate(self.loops):
            if loop["parent"] in inside:
                inside.append(i)
        return inside


def per_step(t: dict, steps: int) -> dict:
    return {m: [round(lo / steps, 3), round(hi / steps, 3)] for m, (lo, hi) in t.items()}


def loop_structure(compiled, env_steps: int | None = None) -> dict:
    """The report of one compiled program (see the module docstring). `env_steps`: the env
    steps its main loop nest covers; None = one per iteration of the main loop."""
    import jax

    prog = Program(compiled.as_text())
    top = [i for i, loop in enumerate(prog.loops) if loop["depth"] == 0]
    if not top:
        raise ValueError("the program has no loop")
    main = max(top, key=lambda i: (prog.tally_line(prog.loops[i]["line"])["ops"][1], -i))
    main_loop = prog.loops[main]
    in_main = prog.tally_line(main_loop["line"])
    outside = prog.tally_without(main_loop["line"])
    steps = env_steps or main_loop["trip_count"] or 1
    body = re.search(r"body=%?([\w.\-]+)", main_loop["line"]).group(1)
    own = [opcode(line) for line in prog.comps[body] if opcode(line) not in FREE]
    branch_ops = [sorted((prog.tally(sub)["ops"][1] for sub in callees(line)), reverse=True)
                  for line in prog.comps[body] if opcode(line) == "conditional"]  # fmt: skip
    nest = set(prog.nest(main))
    loops = [{k: v for k, v in loop.items() if k != "line"} | {"main_nest": i in nest, "index": i}
             for i, loop in enumerate(prog.loops)]  # fmt: skip
    return {
        "backend": jax.default_backend(),
        "env_steps": steps,
        "per_env_step": per_step(in_main, steps),
        "once_per_chunk": outside,
        "main_loop": {
            "index": main,
            "trip_count": main_loop["trip_count"],
            "label": main_loop["label"],
            "env_steps_per_iteration": steps / (main_loop["trip_count"] or 1),
        },
        "loops": loops,
        # the main loop's own body (its nested loops and branches not opened), as the suite's table had it
        "body_ops": len(own),
        "body_by_opcode": {op: own.count(op) for op in sorted(set(own), key=own.count, reverse=True)},
        "conditionals": len(branch_ops),
        "branch_ops": branch_ops,
    }


# ------------------------------------------------------------------ the trainer's programs
def preset_config(name: str, loop: str = "auto", buffer_size: int | None = None):
    """`from_preset(name)` with `loop` (auto = as the preset has it) and, optionally, a smaller
    replay buffer (it changes no structure, only array sizes)."""
    from purejaxdqn.config import from_preset

    config = from_preset(name)
    if loop != "auto":
        config = config.replace(loop=loop)
    if buffer_size:
        config = config.replace(buffer_size=min(buffer_size, config.buffer_size))
    return config


def chunk_report(config, num_seeds: int = 1) -> dict:
    """The report of `config`'s chunk program, compiled by the trainer's own function."""
    from purejaxdqn.algorithm.parallel import MeshShape
    from purejaxdqn.config import schedule
    from purejaxdqn.host import runner

    t0 = time.perf_counter()
    runs, _ = runner.make_runs(config, num_seeds)
    program = runner.compile_program(config, runs, MeshShape(1, 1))
    static = schedule.uses_static_loop(config)
    plan = schedule.chunk_schedule(config) if static else None
    # The main loop nest covers the whole chunk where the chunk is one loop: the branching
    # scan, or a static schedule that is one repeated pattern (every preset's).
    covers = not static or (plan is not None and len(plan.runs) == 1 and (
        plan.runs[0][0] > 1 or (len(plan.runs[0][1]) == 1 and len(plan.runs[0][1][0].runs) == 1)))  # fmt: skip
    report = loop_structure(program.run_chunk, config.iterations_per_chunk)
    return {"loop": "static" if static else "branching", "unroll": config.unroll, "num_seeds": num_seeds,
            "num_envs": config.num_envs, "iterations_per_chunk": config.iterations_per_chunk,
            "schedule": repr(plan) if plan is not None else None, "covers_chunk": covers,
            "compile_s": round(time.perf_counter() - t0, 1), **report}  # fmt: skip


def purejaxrl(peer_dir: Path) -> dict:
    """PureJaxRL's dqn.py (its own CartPole config), 1 seed, as its main() compiles it; one
    iteration of its main loop is one env step."""
    import jax

    sys.path[:0] = [str(peer_dir)]
    spec = importlib.util.spec_from_file_location("bench_purejaxrl", peer_dir / "bench_purejaxrl.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    train = jax.jit(jax.vmap(bench.dqn.make_train(dict(bench.DEFAULT_CONFIG))))
    return loop_structure(train.lower(jax.random.split(jax.random.PRNGKey(0), 1)).compile())


def default_presets() -> list[str]:
    """Every preset of PRESETS as `--preset` takes it: each base preset alone, each modifier as
    `--preset NAME` gives it (on the default env's base), but MinAtar's protocol modifiers,
    which only apply to MinAtar, together on Freeway (the MinAtar paper's whole setup), and the
    Atari protocol modifier on the atari preset. A host
    env's preset (the actor-learner) compiles no chunk and is left out."""
    from purejaxdqn.config import PRESETS
    from purejaxdqn.envs import is_host_id

    specs = [name for name, overrides in PRESETS.items() if "env_id" in overrides and not is_host_id(overrides["env_id"])]
    for name in [name for name, overrides in PRESETS.items() if "env_id" not in overrides]:
        spec = {"original": "freeway,original,minatar-paper", "minatar-paper": "freeway,original,minatar-paper",
                "machado": "atari,machado"}.get(name, name)  # fmt: skip
        if spec not in specs:
            specs.append(spec)
    return specs


# ------------------------------------------------------------------ printing
def _range(lo_hi) -> str:
    lo, hi = lo_hi
    return f"{lo:g}" if lo == hi else f"{lo:g}..{hi:g}"


def loop_lines(r: dict) -> list[str]:
    """The loops of a report, siblings of the same trip count and origin folded (`x k`)."""
    loops, out = r["loops"], []

    def show(indices: list[int], indent: int) -> None:
        groups: dict[tuple, list[int]] = {}
        for i in indices:
            groups.setdefault((loops[i]["trip_count"], loops[i]["label"]), []).append(i)
        for (n, where), members in groups.items():
            first = loops[members[0]]
            count = f" x{len(members)}" if len(members) > 1 else ""
            mark = "MAIN " if first["index"] == r["main_loop"]["index"] else ""
            trips = f"{n} trips" if n is not None else "TRACED trip count"
            out.append(f"{'  ' * indent}{mark}while{count}: {trips}, starts {_range(first['starts_per_chunk'])}"
                       f"/chunk  [{where[-90:]}]")  # fmt: skip
            show([j for j, loop in enumerate(loops) if loop["parent"] in members], indent + 1)

    show([i for i, loop in enumerate(loops) if loop["depth"] == 0], 1)
    return out


def summary_line(name: str, r: dict) -> str:
    s, once = r["per_env_step"], r["once_per_chunk"]
    head = f"{name} [{r.get('loop', '?')}, {r['backend']}]"
    return (f"{head}: per env step: {_range(s['conditionals'])} conditionals, {_range(s['traced_loops'])} "
            f"traced-trip-count loops, {_range(s['ops'])} ops; main loop {r['main_loop']['trip_count']} trips x "
            f"{r['main_loop']['env_steps_per_iteration']:g} env steps; once per chunk: {_range(once['conditionals'])} "
            f"conditionals, {_range(once['traced_loops'])} traced loops, {_range(once['ops'])} ops")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", metavar="SPEC[:LOOP[:SEEDS]]",
                        help="presets to compile (default: every base preset and each modifier on a base): a --preset "
                        "spec (e.g. breakout,rainbow), then optionally the loop setting (auto, static, branching; "
                        "default --loops) and the seeds (default --seeds)")  # fmt: skip
    parser.add_argument("--loops", default="auto", help="comma-separated loop settings to compile each preset with "
                        "(auto = as the preset has it; static; branching)")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=1, help="runs in the batch (1 = no vmap, as the trainer does)")
    parser.add_argument("--buffer-size", type=int, help="at most this replay buffer (no structure changes; compiles faster)")
    parser.add_argument("--fast-compile", action="store_true", help=f"XLA_FLAGS+={FAST_COMPILE} (same HLO)")
    parser.add_argument("--loops-listed", action="store_true", help="print each program's loops")
    parser.add_argument("--purejaxrl", type=Path, help="folder with bench_purejaxrl.py, dqn.py, wandb.py")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if args.fast_compile:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE).strip()
    items = []
    for item in args.presets or default_presets():
        name, _, rest = item.partition(":")
        loop, _, seeds = rest.partition(":")
        items += [(name, loop, int(seeds or args.seeds)) for loop in ([loop] if loop else args.loops.split(","))]
    programs = {}
    for name, loop, seeds in items:
        key = name + ("" if loop == "auto" else f" --loop {loop}") + ("" if seeds == 1 else f" x {seeds} seeds")
        programs[key] = chunk_report(preset_config(name, loop, args.buffer_size), seeds)
        print(summary_line(key, programs[key]), flush=True)
        if args.loops_listed:
            print("\n".join(loop_lines(programs[key])), flush=True)
    report = {"programs": programs}
    if args.purejaxrl:
        report["purejaxrl"] = purejaxrl(args.purejaxrl)
        print(summary_line("PureJaxRL dqn.py", report["purejaxrl"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
