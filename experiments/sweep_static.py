"""Sweep settings that change array shapes (widths, batch size, buffer size, envs, ...).

Such settings cannot share one compiled program, so each combination is its own compile, run
one after another; inside each, seeds and `--sweep` hyperparameters are still vmapped. All
results land in one table.

    python experiments/sweep_static.py --static widths 64,64 120,84 --static batch_size 64 128 \\
        --output-dir runs/static-sweep -- --num-seeds 4 --sweep lr=1e-3,3e-4

Arguments after `--` are ordinary `python -m purejaxdqn.train` options shared by every
combination. Every combination is validated before the first compile. Writes, under
--output-dir: one run directory per combination, `results.json` and `results.md` (the table).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from purejaxdqn import cli
from purejaxdqn.host import run_directory, report, runner
from purejaxdqn.host.run_options import RunOptions


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    shared = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--static", nargs="+", action="append", required=True, metavar=("NAME", "VALUE"),
                        help="a shape-changing setting and its values (repeat for a grid)")  # fmt: skip
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(own)

    grid = {}
    for name, *values in args.static:
        if not values:
            parser.error(f"--static {name}: give at least one value")
        grid[name.replace("-", "_")] = values
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]

    # Validate every combination before compiling anything.
    try:
        run_directory.check_output_dir(args.output_dir, args.overwrite)
        parsed = []
        for combo in combos:
            extra = [x for name, value in combo.items() for x in (f"--{name.replace('_', '-')}", value)]
            parsed.append(cli.make_plan([*shared, *extra]))
    except (cli.UsageError, cli.ConfigError, run_directory.OutputDirError) as err:
        print(f"sweep_static: error: {err}", file=sys.stderr)
        return 2

    args.output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for combo, p in zip(combos, parsed):
        label = ", ".join(f"{k}={v}" for k, v in combo.items())
        run_dir = args.output_dir / "_".join(f"{k}={v}" for k, v in combo.items()).replace(",", "-")
        runs, settings = p.runs, p.settings
        print(f"[{label}] {len(runs)} runs: compiling and training...", flush=True)
        result = runner.train_runs(
            p.config, runs, settings, RunOptions(output_dir=run_dir, overwrite=args.overwrite, preset=p.preset),
        )  # fmt: skip
        s = result.summary
        print(f"  compile {s['compile_s']:.1f} s | run {s['run_s']:.1f} s | {s['env_steps_per_s']:,.0f} env steps/s")
        for row in result.table:
            full_label = f"{label}, {row['label']}" if p.sweep else label
            rows.append({**row, **combo, "label": full_label, "compile_s": s["compile_s"], "run_s": s["run_s"]})

    table = report.format_table(report.mark_best(rows))
    print(table)
    run_directory.write_json(args.output_dir / "results.json", rows)
    (args.output_dir / "results.md").write_text("```\n" + table + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
