"""Finer logging (`--log-every N`): a row per window of N env steps inside each chunk, summing
to the chunk's own row, with each window's update count as a plain recomputation of the
schedule gives it, and the training itself unchanged bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from purejaxdqn import cli
from purejaxdqn.host import run_directory

from test_checkpoint import assert_states_bitwise_equal, full_state, rows_without_timing
from tiny import TINY

# 3 chunks of 1,000 env steps (4 envs), learning from 500, an update round every 10 steps.
ARGS = [*TINY, "--checkpoint-min-interval", "0", "--eval-every", "500"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("log_every")
    assert cli.main([*ARGS, "--output-dir", str(root / "chunks")]) == 0
    assert cli.main([*ARGS, "--log-every", "200", "--output-dir", str(root / "windows")]) == 0
    return root / "chunks", root / "windows"


def rows(run_dir):
    return run_directory.read_jsonl(run_dir / run_directory.METRICS_FILE)


def test_windows_sum_to_the_chunk_rows_and_training_is_unchanged(pair):
    chunks, windows = pair
    assert_states_bitwise_equal(full_state(chunks)[1]._replace(stats=None), full_state(windows)[1]._replace(stats=None))
    by_chunk = {r["chunk"]: r for r in rows(chunks)}
    fine = rows(windows)
    assert [r["env_steps"] for r in fine] == list(range(200, 3001, 200)) and [r["window"] for r in fine[:5]] == [0, 1, 2, 3, 4]
    for chunk, whole in by_chunk.items():
        parts = [r for r in fine if r["chunk"] == chunk]
        assert parts[-1]["env_steps"] == whole["env_steps"] and parts[-1]["updates"] == whole["updates"]
        assert sum(r["episodes"] for r in parts) == whole["episodes"]
        if whole["loss"] is not None:  # the chunk's mean loss is the windows' means weighted by their updates
            previous = by_chunk[chunk - 1]["updates"] if chunk else 0
            weights = np.diff([previous] + [r["updates"] for r in parts])
            losses = sum(w * r["loss"] for w, r in zip(weights, parts) if w)
            assert losses == pytest.approx(whole["loss"] * sum(weights), rel=1e-4)
        assert parts[-1]["epsilon"] == pytest.approx(whole["epsilon"]) and parts[-1]["eval_return_mean"] == whole["eval_return_mean"]


def reference_updates(start: int, end: int, update_every: int, learning_starts: int, gradient_steps: int) -> int:
    """Update rounds at the multiples of update_every in (start, end] from learning_starts on."""
    return gradient_steps * sum(1 for k in range(start + 1, end + 1) if k % update_every == 0 and k >= learning_starts)


def test_each_window_counts_the_updates_the_schedule_gives_it_and_the_evals_done_by_its_end(pair):
    _, windows = pair
    fine = rows(windows)
    before = 0
    for r in fine:
        start = r["env_steps"] - 200
        assert r["updates"] - before == reference_updates(start, r["env_steps"], 10, 500, 1), r
        before = r["updates"]
    evals = {r["env_steps"]: r["eval_return_mean"] for r in run_directory.read_jsonl(windows / run_directory.EVALS_FILE)}
    for r in fine:
        done = [step for step in evals if step <= r["env_steps"]]
        assert r["eval_return_mean"] == (evals[max(done)] if done else None), r


def test_a_bad_log_every_is_one_line(capsys):
    assert cli.main([*TINY, "--log-every", "6"]) == 2
    assert "--log-every: must be 0 or a positive multiple of --num-envs 4" in capsys.readouterr().err
    assert cli.main([*TINY, "--log-every", "-4"]) == 2
    capsys.readouterr()
    assert cli.main([*TINY, "--total-steps", "30000", "--log-every", "4"]) == 2
    assert "rows per chunk" in capsys.readouterr().err


def test_a_windowed_run_resumes_to_the_same_rows_and_state(pair, tmp_path):
    """The window axis of the per-chunk statistics is checkpointed like the rest: a copy whose
    last checkpoint is gone resumes from chunk 2 and ends with the same state and rows."""
    import shutil

    _, windows = pair
    copy = tmp_path / "copy"
    shutil.copytree(windows, copy)
    shutil.rmtree(copy / run_directory.CHECKPOINT_DIR / "3")
    assert cli.main(["--resume", str(copy)]) == 0
    assert_states_bitwise_equal(full_state(windows)[1], full_state(copy)[1])
    assert rows_without_timing(copy / run_directory.METRICS_FILE) == rows_without_timing(windows / run_directory.METRICS_FILE)
