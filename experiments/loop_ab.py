"""The static chunk against the branching one (and unroll values), on this machine's backend.

One process: each variant's chunk program is compiled by the trainer's own
`runner.compile_program`, then whole runs of all variants alternate for `--rounds` rounds
(gpu_suite.micro_chunks), so each ratio compares runs made back to back.

    python experiments/loop_ab.py --preset reference --seeds 1 --unroll 1,2,4 --rounds 3
    python experiments/loop_ab.py --preset breakout --total-steps 100000 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_suite  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="reference")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unroll", default="1", help="comma-separated unroll values of the static chunk")
    parser.add_argument("--total-steps", type=int, help="shorter runs (the preset's otherwise)")
    args = parser.parse_args()
    variants = {"branching": {"loop": "branching"}}
    variants.update({f"static, unroll {u}": {"loop": "static", "unroll": int(u)} for u in args.unroll.split(",")})
    overrides = {"total_steps": args.total_steps} if args.total_steps else {}
    result = gpu_suite.micro_chunks(args.preset, args.seeds, variants, args.rounds, overrides)
    rows = result["variants"]
    base = rows["branching"]["run_s_rounds"]
    print(f"{args.preset} x {args.seeds} seeds, {args.rounds} interleaved rounds ({result['device']})")
    print("| variant | compile s | run s (rounds) | env steps/s | run time over branching (per round) |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        ratios = [a / b for a, b in zip(row["run_s_rounds"], base)]
        print(f"| {name} | {row['compile_s']:.2f} | {' / '.join(f'{s:.2f}' for s in row['run_s_rounds'])} | "
              f"{row['env_steps_per_s']:,.0f} | {statistics.median(ratios):.3f} ({' / '.join(f'{r:.3f}' for r in ratios)}) |")  # fmt: skip
    print("same final returns:", result["same_final_returns"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
