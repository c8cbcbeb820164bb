"""experiments/learning_suite.py: its verdicts against hand-made eval logs, and its smoke mode."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("learning_suite", ROOT / "experiments" / "learning_suite.py")
suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(suite)


def test_verdicts_count_solves_collapses_and_first_solve_steps():
    """Seed 0 solves and stays; seed 1 solves then collapses at the end; seed 2 solves only at
    the last eval (not 'stayed' over 3); seed 3 never solves."""
    steps = np.array([10, 20, 30, 40, 50])
    returns = np.array([
        [100, 480, 500, 490, 500],
        [200, 500, 500, 500, 130],
        [100, 200, 300, 400, 476],
        [10, 20, 30, 40, 50],
    ], float)  # fmt: skip
    v = suite.judge(steps, returns, 475, 3)
    assert v["solved_at_end"] == 2 and v["stayed_solved"] == 1
    assert v["first_solved_step"] == [20, 20, 50, None]
    assert v["final_min"] == 50 and v["final_mean"] == pytest.approx((500 + 130 + 476 + 50) / 4)
    assert v["final_iqm"] == pytest.approx((130 + 476) / 2)  # middle half of 4 values


def test_iqm_matches_the_middle_half_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    assert suite.iqm(x) == pytest.approx(np.sort(x)[10:30].mean())


def test_smoke_mode_writes_table_json_and_figure(tmp_path):
    assert suite.main(["--presets", "cartpole", "--num-seeds", "2", "--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "learning_suite.json").read_text())
    assert [r["preset"] for r in results] == ["cartpole"] and results[0]["seeds"] == [1000, 1001]
    assert len(results[0]["steps"]) == 3 and np.isfinite(np.asarray(results[0]["returns"])).all()
    table = (tmp_path / "learning_suite.md").read_text()
    assert "| cartpole | CartPole-v1 |" in table and "/2 |" in table and "(100 episodes each)" in table
    assert len(results[0]["reeval_per_seed"]) == 2 and all(se >= 0 for se in results[0]["reeval_se_per_seed"])
    assert (tmp_path / "learning_suite.png").stat().st_size > 1000
