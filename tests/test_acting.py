"""The action functions of algorithm/acting.py against a plain NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxdqn.algorithm import acting


def _q_values(seed, shape, ties):
    """Random Q-values; with `ties`, small integers so rows often share their maximum."""
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 3, shape) if ties else rng.normal(size=shape)
    return q.astype(np.float32)


@pytest.mark.parametrize("shape", [(6,), (1, 3), (64, 4), (5, 7, 2)])
@pytest.mark.parametrize("ties", [False, True])
def test_greedy_is_numpy_argmax_with_first_index_ties(shape, ties):
    q = _q_values(0, shape, ties)
    if ties and shape == (64, 4):
        assert (np.sum(q == q.max(-1, keepdims=True), -1) > 1).any()  # the tie case is exercised
    actions = acting.greedy(jnp.asarray(q))
    assert actions.dtype == jnp.int32 and actions.shape == shape[:-1]
    np.testing.assert_array_equal(np.asarray(actions), np.argmax(q, axis=-1))


@pytest.mark.parametrize("epsilon", [0.0, 0.05, 0.5, 1.0])
def test_epsilon_greedy_is_the_numpy_recomputation_of_the_same_draws(epsilon):
    q = _q_values(1, (256, 5), ties=True)
    for seed in range(3):
        explore_key, action_key = jax.random.split(jax.random.key(seed))
        actions = acting.epsilon_greedy(explore_key, action_key, jnp.asarray(q), epsilon)
        coin = np.asarray(jax.random.uniform(explore_key, (256,)))
        random_action = np.asarray(jax.random.randint(action_key, (256,), 0, 5))
        expected = np.where(coin < epsilon, random_action, np.argmax(q, axis=-1))
        assert actions.dtype == jnp.int32 and actions.shape == (256,)
        np.testing.assert_array_equal(np.asarray(actions), expected)
        # A traced epsilon (as in the training loop's schedule) draws and compares the same.
        jitted = jax.jit(acting.epsilon_greedy)(explore_key, action_key, jnp.asarray(q), jnp.float32(epsilon))
        np.testing.assert_array_equal(np.asarray(jitted), expected)


def test_epsilon_zero_is_greedy():
    q = _q_values(2, (500, 4), ties=True)
    explore_key, action_key = jax.random.split(jax.random.key(7))
    actions = acting.epsilon_greedy(explore_key, action_key, jnp.asarray(q), 0.0)
    np.testing.assert_array_equal(np.asarray(actions), np.asarray(acting.greedy(jnp.asarray(q))))


def test_epsilon_one_is_uniform_over_actions():
    num_actions, n = 6, 30_000
    q = np.zeros((n, num_actions), np.float32)
    q[:, 2] = 1.0  # greedy would always pick action 2
    explore_key, action_key = jax.random.split(jax.random.key(11))
    actions = np.asarray(acting.epsilon_greedy(explore_key, action_key, jnp.asarray(q), 1.0))
    counts = np.bincount(actions, minlength=num_actions)
    assert counts.shape == (num_actions,)  # no action outside [0, num_actions)
    expected = n / num_actions
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 30.0, (counts, chi_square)  # 5 degrees of freedom: p < 1e-5 by chance
