"""The prepared GPU suite (experiments/gpu_suite.py) in its CPU smoke mode, so it cannot rot
before the rare moment a GPU machine is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_suite_smoke_mode_runs_every_item_and_writes_its_table(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "gpu_suite.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    items = [r["item"] for r in report["rows"]]
    assert items[:2] == ["default command, cold cache", "default command, warm cache"]
    assert {"reference x 1 seeds", "reference x 2 seeds", "breakout x 1 seeds", "breakout,rainbow x 1 seeds"} <= set(items)
    assert any(i.startswith("env-only ceiling") for i in items) and any(i.startswith("prioritized") for i in items)
    rows = {r["item"]: r for r in report["rows"]}
    assert all(r["status"] == "ok" for r in report["rows"])
    assert rows["default command, warm cache"]["compile_s"] < rows["default command, cold cache"]["compile_s"]
    assert 0 < rows["breakout x 1 seeds"]["fraction_of_env_ceiling"] < 1
    table = (tmp_path / "gpu_suite.md").read_text()
    assert table.count("\n| ") == len(report["rows"]) + 1 and "env-only ceiling" in table
