"""experiments/profile_iteration.py runs (a tiny profile), so the profile in BENCHMARKS.md can be
re-measured. Its timings are not checked: speed is measured by scripts, never by tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_profile_reports_every_part_and_op_counts():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "profile_iteration.py"), "--preset", "cartpole",
         "--iterations", "100", "--repeats", "1"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    parts = report["us_per_iteration"]
    for part in ("act (forward + epsilon-greedy)", "env step (incl. its RNG)", "replay sample (incl. its RNG)",
                 "update (gradients + Adam + target)", "WHOLE iteration (one update per step)"):  # fmt: skip
        assert parts[part] > 0, part
    assert report["dots"] >= 6 and report["fusions"] > 0 and report["hlo_ops"] > report["fusions"]
