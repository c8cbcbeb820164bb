"""experiments/sweep_static.py: shape-changing sweeps as separate compiles, one results table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "experiments" / "sweep_static.py"
spec = importlib.util.spec_from_file_location("sweep_static", SCRIPT)
sweep_static = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep_static)

SHARED = ["--", "--total-steps", "2000", "--num-envs", "4", "--learning-starts", "500", "--batch-size", "32",
          "--buffer-size", "400", "--eval-every", "1000", "--num-chunks", "1", "--num-eval-envs", "2"]  # fmt: skip


def test_static_sweep_runs_each_combination_into_one_table(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert sweep_static.main(["--static", "widths", "16", "32,32", "--output-dir", str(out), *SHARED, "--num-seeds", "2"]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in rows] == ["widths=16", "widths=32,32"]
    assert all(r["seeds"] == 2 for r in rows) and sum(r["best"] for r in rows) == 1
    assert (out / "widths=16" / "summary.json").exists() and (out / "widths=32-32" / "summary.json").exists()
    assert "widths=32,32" in capsys.readouterr().out


def test_static_sweep_validates_every_combination_before_compiling(tmp_path, capsys):
    out = tmp_path / "bad"
    # batch 32 > buffer 16 is invalid: refused before the (valid) first combination compiles.
    code = sweep_static.main(["--static", "buffer_size", "400", "16", "--output-dir", str(out), *SHARED])
    assert code == 2
    assert "--batch-size" in capsys.readouterr().err
    assert not out.exists()
