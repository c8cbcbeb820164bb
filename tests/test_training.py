"""The training loop as a whole: chunk invariance, the pure train function, and learning."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from purejaxdqn import Config, from_preset, make_train
from purejaxdqn.host import runner

# 7 envs do not divide the update (10), eval (700) or target intervals: crossing-based checks.
SMALL = Config(
    total_steps=7 * 600, num_envs=7, num_eval_envs=3, buffer_size=700, batch_size=32,
    learning_starts=350, eval_every=700, widths=(32,), update_every=10, target_update_every=7,
    eps_decay_steps=2000,
)  # fmt: skip


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("loop, chunks", [("branching", (1, 20, 600)), ("static", (1, 2, 3))])
def test_one_chunk_or_many_give_identical_results(loop, chunks):
    """Cutting the run into chunks changes nothing, bit for bit, in either loop layout (the
    static one needs chunks of whole eval intervals: 700 env steps here)."""
    config = SMALL.replace(loop=loop)
    results = [runner.train_runs(config.replace(num_chunks=n), *runner.make_runs(config)) for n in chunks]
    base = jax.device_get(results[0].state)
    assert int(base.env_steps) == 4200
    for other in results[1:]:
        state = jax.device_get(other.state)
        assert leaves_equal(base.learner, state.learner)
        assert leaves_equal(base.replay, state.replay)
        assert leaves_equal(base.evals, state.evals)
        assert np.array_equal(jax.random.key_data(base.key), jax.random.key_data(state.key))
        assert leaves_equal(base.env_state, state.env_state) and leaves_equal(base.obs, state.obs)


def test_train_function_matches_chunked_run_and_counts_intervals():
    """`make_train(config)` (one scan) equals the chunked runner; update/eval counts are exact."""
    chunked = jax.device_get(runner.train_runs(SMALL.replace(num_chunks=20), *runner.make_runs(SMALL)).state)
    state = jax.device_get(jax.jit(make_train(SMALL))(jax.random.key(SMALL.seed)))
    assert leaves_equal(jax.tree.map(lambda x: x[0], chunked.learner), state.learner)
    assert leaves_equal(jax.tree.map(lambda x: x[0], chunked.evals), state.evals)
    # Updates at every multiple of 10 in [350, 4200]: 386, though 7 never divides 10.
    assert int(state.learner.updates) == 4200 // 10 - 350 // 10 + 1
    # Evals at every multiple of 700 up to 4200: 6, each at the step that crossed it.
    np.testing.assert_array_equal(state.evals.step, [700, 1400, 2100, 2800, 3500, 4200])
    assert np.isfinite(state.evals.mean).all()


def test_different_seeds_differ():
    """Two seeds are two different runs (no key hard-coded inside train)."""
    train = jax.jit(make_train(SMALL))
    a = jax.device_get(train(jax.random.key(0)))
    b = jax.device_get(train(jax.random.key(1)))
    assert not leaves_equal(a.learner.params, b.learner.params)
    assert not np.array_equal(a.replay.data.obs, b.replay.data.obs)


@pytest.mark.slow
def test_cartpole_preset_solves_on_at_least_4_of_5_unseen_seeds():
    """The CartPole preset on 5 seeds it was not tuned on (tuning used 0-9, the learning suite
    reports 1000-1009): eval >= 475 at the end on >= 4, and no collapse on >= 4 (the mean of
    the last 3 evals >= 400). Measured when the preset was chosen: final returns 500, 500,
    491, 488, 361; last-3 means 500, 444, 497, 461, 374."""
    config = from_preset("cartpole", seed=2000)
    assert config.actual_total_steps <= 300_000
    result = runner.train_runs(config, *runner.make_runs(config, num_seeds=5))
    final = result.eval_mean[:, -1]
    print("final eval returns of seeds 2000-2004:", final)
    assert (final >= 475).sum() >= 4, result.eval_mean
    assert (result.eval_mean[:, -3:].mean(axis=1) >= 400).sum() >= 4, result.eval_mean
