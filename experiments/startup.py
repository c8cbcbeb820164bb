"""Where the training command's own wall time goes (issue #19, item 4): runs a command (default:
the bare `python -m purejaxdqn.train`, which trains the cartpole preset into runs/) N times as
subprocesses with a warm compilation cache, and reports per run and as median and range:

- `external`: the wall time seen from outside, from just before the process is started to its
  exit status;
- summary.json's "wall_split_s" (process creation to summary.json's write: interpreter,
  imports, backend_start, plan, prepare, compile, run, checkpoint_saves, logging,
  summary_and_plot, other) and "wall_s";
- `exit` = external - wall_s: what summary.json cannot hold (its own write, the result lines,
  the interpreter's shutdown; plus the start of the process, ~ms);
- CPU seconds (user + sys, all threads): `external_cpu` from the OS, `cpu:<span>` for the
  spans summary.json's "wall_split_cpu_s" times (on a busy machine wall time stretches, CPU
  time far less), `cpu:exit` = external_cpu - cpu:total;
- `outside` = external - (compile + run): the part issue #19 wants at most 1.0 s.

Each command runs in a fresh temporary directory (its runs/ lands there); one warm-up run first
fills the cache (not counted). A summary.json without "wall_split_s" (older code) still gives
`external`, compile, run and saves.

`--code DIR` (repeatable) runs the package from another source tree (DIR/purejaxdqn, e.g. a
`git archive` of an earlier commit; ahead of an editable install) beside the installed one, interleaved round by round, so a
before/after comparison sees the same load of a shared machine.

    python experiments/startup.py --repeats 5
    python experiments/startup.py --repeats 5 --code /tmp/before --json out.json
    python experiments/startup.py --repeats 5 -- --total-steps 50000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARTS = ("interpreter", "imports", "backend_start", "plan", "prepare", "compile", "run", "checkpoint_saves", "logging",
         "summary_and_plot", "other")  # fmt: skip


# `python -m purejaxdqn.train` from another source tree: ahead of an editable install's finder too.
FROM_TREE = ("import runpy, sys; tree = sys.argv.pop(1); sys.path.insert(0, tree); "
             "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in str(getattr(f, '__module__', ''))]; "
             "runpy.run_module('purejaxdqn.train', run_name='__main__', alter_sys=True)")  # fmt: skip


def run_once(args: list[str], cwd: Path, env: dict, code: Path | None = None) -> dict:
    """One command in `cwd` (the package from source tree `code`, or the installed one); its
    external wall time and its summary.json's figures."""
    before = set(cwd.glob("runs/*/*"))
    command = ["-m", "purejaxdqn.train"] if code is None else ["-c", FROM_TREE, str(code)]
    usage0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run([sys.executable, *command, *args], check=False, cwd=cwd, env=env, capture_output=True, text=True)
    external, usage = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"exit status {proc.returncode}:\n{proc.stderr[-3000:]}")
    out = [Path(line.split(":", 1)[1].strip()) for line in proc.stdout.splitlines() if line.startswith("outputs:")]
    run_dir = cwd / out[0] if out else next(iter(set(cwd.glob("runs/*/*")) - before))
    summary = json.loads((run_dir / "summary.json").read_text())
    cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
    row = {"external": external, "external_cpu": cpu, "load_1min": os.getloadavg()[0]}
    split = summary.get("wall_split_s")
    if split:
        row.update(split, wall_s=summary["wall_s"], exit=external - summary["wall_s"])
        row.update({f"cpu:{k}": v for k, v in summary.get("wall_split_cpu_s", {}).items()})
        if "total" in summary.get("wall_split_cpu_s", {}):
            row["cpu:exit"] = cpu - summary["wall_split_cpu_s"]["total"]
    else:  # older code: only the timings summary.json always had
        row.update(compile=summary["compile_s"], run=summary["run_s"], checkpoint_saves=summary["checkpoint_save_s"])
    row["outside"] = external - row["compile"] - row["run"]
    return row


def stats(rows: list[dict]) -> dict[str, dict[str, float]]:
    keys = [k for k in rows[0] if all(k in r for r in rows)]
    return {k: {"median": statistics.median(r[k] for r in rows), "min": min(r[k] for r in rows),
                "max": max(r[k] for r in rows)} for k in keys}  # fmt: skip


def report(label: str, rows: list[dict], train_args: list[str]) -> dict:
    table = stats(rows)
    print(f"\n{label}: {len(rows)} runs of: python -m purejaxdqn.train {' '.join(train_args)}")
    print(f"{'seconds':20s} {'median':>7s} {'min':>7s} {'max':>7s}")
    order = ["external", "wall_s", *PARTS, "exit", "outside", "external_cpu", *(f"cpu:{k}" for k in (*PARTS, "total", "exit")),
             "load_1min"]  # fmt: skip
    for key in [k for k in order if k in table] + [k for k in table if k not in order]:
        t = table[key]
        print(f"{key:20s} {t['median']:7.3f} {t['min']:7.3f} {t['max']:7.3f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="measured runs of each code (after one warm-up run each)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up runs (the cache is warm already)")
    parser.add_argument("--code", type=Path, action="append", default=[], help="also run the package from this source tree")
    parser.add_argument("--no-installed", action="store_true", help="run only the --code trees")
    parser.add_argument("--json", type=Path, help="write the rows and the statistics here")
    parser.add_argument("train_args", nargs="*", help="after --: options for purejaxdqn.train (default: none)")
    args = parser.parse_args()
    codes = {**({} if args.no_installed else {"installed": None}), **{str(c): c.resolve() for c in args.code}}
    rows: dict[str, list[dict]] = {label: [] for label in codes}
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        for i in range(0 if args.no_warmup else -1, args.repeats):
            for label, code in codes.items():
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                cwd = Path(tmp) / f"{len(rows[label])}-{i + 1}-{label.replace('/', '_')}"
                cwd.mkdir()
                row = run_once(args.train_args, cwd, env, code)
                if i < 0:
                    print(f"warm-up ({label}): external {row['external']:.2f} s, compile {row['compile']:.2f} s", flush=True)
                    continue
                rows[label].append(row)
                print(label, json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    tables = {label: report(label, r, args.train_args) for label, r in rows.items()}
    if args.json:
        args.json.write_text(json.dumps({"command": ["python", "-m", "purejaxdqn.train", *args.train_args], "rows": rows,
                                         "stats": tables}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
