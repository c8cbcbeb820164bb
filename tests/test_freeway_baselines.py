"""experiments/freeway_baselines.py: its scripted yardsticks behave as described (the lookahead
policy dodges cars that always-up runs into), so the BENCHMARKS figures can be re-measured."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
import freeway_baselines  # noqa: E402


def test_lookahead_beats_always_up_and_random_actions_cost_it():
    up = freeway_baselines.measure(False, "up", 0.0, 0.0, episodes=2, horizon=4)
    look = freeway_baselines.measure(False, "lookahead", 0.0, 0.0, episodes=2, horizon=4)
    noisy = freeway_baselines.measure(False, "lookahead", 0.5, 0.0, episodes=2, horizon=4)
    assert 0 < up["mean"] < look["mean"] and noisy["mean"] < look["mean"]
    assert look["min"] > up["max"]  # each lookahead episode crosses more often than any always-up one
