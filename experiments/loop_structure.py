"""What one iteration of the compiled training loop launches, on this machine's backend.

Compiles the reference workload (`--preset reference`, 1 seed) and reads XLA's optimized HLO:
the main loop's body (the `while` of the most iterations), its ops that are not bookkeeping
(a fusion is one kernel; tuples, parameters, constants and bitcasts are free), and the ops of
each branch of each `conditional` in it (nested loops and branches counted in). On a GPU each
counted op is about one kernel launch, and each `while`/`conditional` one host round trip for
its predicate; on a CPU the counts only hint at that. With `--purejaxrl DIR` (see
gpu_suite.py) PureJaxRL's dqn.py program is read the same way, for a side-by-side.

    python experiments/loop_structure.py
    python experiments/loop_structure.py --purejaxrl .gpu        # also PureJaxRL's dqn.py
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import re
import sys
from pathlib import Path

import jax

FREE = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast"}
CALLED = ("body", "condition", "true_computation", "false_computation")


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
    """HLO module text -> {computation name: its instruction lines}."""
    comps: dict[str, list[str]] = {}
    name = None
    for line in hlo.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if header:
            name = header.group(1)
            comps[name] = []
        elif line.startswith("}"):
            name = None
        elif name is not None and opcode(line):
            comps[name].append(line.strip())
    return comps


def callees(line: str) -> list[str]:
    """Computations a while/conditional line runs (not fusions: a fusion is one kernel)."""
    names = [m.group(1) for key in CALLED for m in [re.search(key + r"=%?([\w.\-]+)", line)] if m]
    branches = re.search(r"branch_computations=\{([^}]*)\}", line)
    return names + ([b.strip().lstrip("%") for b in branches.group(1).split(",")] if branches else [])


def launched(comps: dict[str, list[str]], name: str) -> collections.Counter:
    """Ops of a computation that cost a launch, nested loop bodies and branches counted in."""
    ops: collections.Counter = collections.Counter()
    for line in comps[name]:
        op = opcode(line)
        if op in FREE:
            continue
        ops[op] += 1
        if op in ("while", "conditional"):
            for sub in callees(line):
                ops.update(launched(comps, sub))
    return ops


def trip_count(while_line: str) -> int:
    """XLA's known trip count of a `while` (0 where it has none)."""
    match = re.search(r'known_trip_count"?:\{"?n"?:"?(\d+)', while_line)
    return int(match.group(1)) if match else 0


def loop_structure(compiled) -> dict:
    """The main loop (the `while` of the most iterations): its body's own ops, and each
    conditional's branches (largest first)."""
    comps = computations(compiled.as_text())
    loops = [line for lines in comps.values() for line in lines if opcode(line) == "while"]
    body = re.search(r"body=%?([\w.\-]+)", max(loops, key=lambda line: (trip_count(line), len(line)))).group(1)
    own = collections.Counter(opcode(line) for line in comps[body] if opcode(line) not in FREE)
    branches = [sorted((sum(launched(comps, sub).values()) for sub in callees(line)), reverse=True)
                for line in comps[body] if opcode(line) == "conditional"]  # fmt: skip
    return {"body_ops": sum(own.values()), "body_by_opcode": dict(own.most_common()),
            "conditionals": len(branches), "branch_ops": branches,
            "backend": jax.default_backend()}  # fmt: skip


def ours() -> dict:
    from purejaxdqn import from_preset, make_train

    return loop_structure(jax.jit(make_train(from_preset("reference"))).lower(jax.random.key(0)).compile())


def purejaxrl(peer_dir: Path) -> dict:
    """PureJaxRL's dqn.py (its own CartPole config), 1 seed, as its main() compiles it."""
    sys.path[:0] = [str(peer_dir)]
    spec = importlib.util.spec_from_file_location("bench_purejaxrl", peer_dir / "bench_purejaxrl.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    train = jax.jit(jax.vmap(bench.dqn.make_train(dict(bench.DEFAULT_CONFIG))))
    return loop_structure(train.lower(jax.random.split(jax.random.PRNGKey(0), 1)).compile())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--purejaxrl", type=Path, help="folder with bench_purejaxrl.py, dqn.py, wandb.py")
    args = parser.parse_args()
    report = {"ours": ours()}
    if args.purejaxrl:
        report["purejaxrl"] = purejaxrl(args.purejaxrl)
    for who, r in report.items():
        print(f"{who:10s} ({r['backend']}): loop body {r['body_ops']} ops {r['body_by_opcode']}; "
              f"{r['conditionals']} conditionals, branch ops {r['branch_ops']}")  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main()
