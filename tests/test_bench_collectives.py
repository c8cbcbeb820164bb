"""experiments/bench_collectives.py runs on forced CPU devices (a tiny size), so the all-reduce
figures in BENCHMARKS.md can be re-measured. Timings are not checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_collectives_benchmark_reports_each_device_count_and_size():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "bench_collectives.py"), "--devices", "2", "4",
         "--sizes", "100", "--iterations", "5", "--repeats", "1"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [(r["devices"], r["floats"]) for r in rows] == [(2, 100), (4, 100)]
    assert all(r["us"] > 0 for r in rows)
