"""The actor-learner (host envs): its learner repeats the compiled loop's updates on the same
rows, the rate limiter's counts, the parameter hand-off, and whole runs with their failure
and signal paths."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from purejaxdqn.algorithm import ingest as ingest_lib
from purejaxdqn.algorithm.loop import make_trainer
from purejaxdqn.algorithm.replay import Transition
from purejaxdqn.algorithm.schedules import multiples_crossed
from purejaxdqn.config import Config

SMALL = dict(env_id="CartPole-v1", total_steps=1200, num_envs=4, num_chunks=1, eval_every=600, buffer_size=1200,
             learning_starts=200, batch_size=32, widths=(16,), loop="branching")  # fmt: skip


@pytest.mark.parametrize("changes", [
    dict(),  # one update after some env steps, none after others (a cond)
    dict(update_every=2, gradient_steps=2, n_step=3, prioritized=True),  # several updates per step (a loop), PER, n-step
])  # fmt: skip
def test_the_learner_repeats_the_compiled_loops_updates_on_its_rows(changes):
    """Rows a compiled run collected, ingested block by block, give that run's learner: the
    same updates on the same batches after the same env steps (the sync algorithm, exactly)."""
    config = Config(**{**SMALL, **changes})
    trainer = make_trainer(config)
    final = jax.jit(trainer.train)(jax.random.key(3))
    rows = jax.device_get(final.replay.data)  # the buffer holds the whole run, in order
    assert config.buffer_rows == config.iterations
    program = ingest_lib.make_program(config, trainer.venv.spec)
    state = program.init(jax.random.key(3), config.hparams())
    ingest = jax.jit(program.ingest)
    t = ingest_lib.block_rows(config)
    for start in range(0, config.iterations, t):
        state = ingest(state, jax.tree.map(lambda x: x[start : start + t], rows), config.hparams())
    assert int(state.learner.updates) == int(final.learner.updates) > 0
    assert int(state.env_steps) == int(final.env_steps)
    for ours, theirs in zip(jax.tree.leaves(state.learner), jax.tree.leaves(final.learner)):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-6)
    if config.prioritized:
        np.testing.assert_allclose(np.asarray(state.replay.priorities.nodes), np.asarray(final.replay.priorities.nodes), rtol=1e-5)


def test_updates_due_counts_as_the_compiled_loop():
    config = Config(**{**SMALL, "update_every": 6, "gradient_steps": 3})
    rng = np.random.default_rng(0)
    for _ in range(200):
        before = int(rng.integers(0, 2000))
        after = before + int(rng.integers(0, 50))
        starts = int(rng.integers(0, 1000))
        expected = int(multiples_crossed(before, after, 6, starts)) * 3
        assert ingest_lib.updates_due(config, before, after, starts) == expected


@pytest.mark.parametrize("n,steps,expected", [(2500, 8, 5), (2500, 10, 10), (7, 8, 7), (13, 8, 1), (12, 1, 1)])
def test_block_rows_divide_a_chunk(n, steps, expected):
    config = Config(**{**SMALL, "total_steps": n * 4, "block_steps": steps})
    assert config.iterations_per_chunk == n
    assert ingest_lib.block_rows(config) == expected


def test_apex_epsilons():
    """Ape-X: eps_i = 0.4^(1 + 7 i / (N - 1)), from 0.4 down to 0.4^8."""
    eps = [ingest_lib.apex_epsilon(i, 8) for i in range(8)]
    np.testing.assert_allclose(eps, [0.4 ** (1 + 7 * i / 7) for i in range(8)])
    assert ingest_lib.apex_epsilon(0, 1) == 0.4
