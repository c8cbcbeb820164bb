"""Action masks against a NumPy reference: masked greedy and random actions, masked bootstrap
(max, Double DQN's online argmax, C51's expected-value argmax), on random Q-values and masks,
rows that allow nothing included; and a masked family's training never stores an action its
observation's mask disallows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxdqn.algorithm import acting, losses


def random_case(seed: int, rows: int = 64, actions: int = 7):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(rows, actions)).astype(np.float32)
    q[rng.random((rows, actions)) < 0.2] = 0.5  # ties
    mask = rng.random((rows, actions)) < 0.4
    mask[:3] = False  # rows that allow nothing (a family's final state): every action allowed
    mask[3] = True
    return q, mask


def np_allowed(mask):
    return np.where(mask.any(-1, keepdims=True), mask, True)


def np_masked_argmax(values, mask):
    """First allowed action of the largest value, in plain Python."""
    allowed = np_allowed(mask)
    out = []
    for v, a in zip(values, allowed):
        best = None
        for i in range(len(v)):
            if a[i] and (best is None or v[i] > v[best]):
                best = i
        out.append(best)
    return np.array(out)


@pytest.mark.parametrize("seed", range(4))
def test_masked_greedy_is_the_first_allowed_argmax(seed):
    q, mask = random_case(seed)
    assert np.array_equal(np.asarray(acting.greedy(jnp.asarray(q), jnp.asarray(mask))), np_masked_argmax(q, mask))


def test_masked_random_actions_are_allowed_and_uniform_over_the_allowed():
    rows, actions = 6, 5
    mask = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [0, 1, 1, 0, 0], [1, 0, 0, 0, 1]], bool)
    draws = jax.vmap(lambda k: acting.random_action(k, (rows,), actions, jnp.asarray(mask)))(jax.random.split(jax.random.key(0), 4000))
    draws = np.asarray(draws)
    allowed = np_allowed(mask)
    for r in range(rows):
        counts = np.bincount(draws[:, r], minlength=actions)
        assert (counts[~allowed[r]] == 0).all()
        expected = 4000 / allowed[r].sum()
        assert np.all(np.abs(counts[allowed[r]] - expected) < 5 * np.sqrt(expected))


@pytest.mark.parametrize("epsilon", [0.0, 0.3, 1.0])
def test_masked_epsilon_greedy_never_picks_a_disallowed_action(epsilon):
    q, mask = random_case(7, rows=256)
    explore_key, action_key = jax.random.split(jax.random.key(1))
    action = np.asarray(acting.epsilon_greedy(explore_key, action_key, jnp.asarray(q), epsilon, jnp.asarray(mask)))
    assert np_allowed(mask)[np.arange(len(action)), action].all()
    explore = np.asarray(jax.random.uniform(explore_key, (256,))) < epsilon
    assert np.array_equal(action[~explore], np_masked_argmax(q, mask)[~explore])


def test_no_mask_is_the_unmasked_rule_draw_for_draw():
    q, _ = random_case(3)
    k1, k2 = jax.random.split(jax.random.key(5))
    plain = jnp.where(jax.random.uniform(k1, (64,)) < 0.5, jax.random.randint(k2, (64,), 0, 7), jnp.argmax(q, -1))
    assert np.array_equal(np.asarray(acting.epsilon_greedy(k1, k2, jnp.asarray(q), 0.5)), np.asarray(plain))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("double", [False, True])
def test_masked_bootstrap_value_is_numpy(seed, double):
    """max over allowed Q_target; Double DQN: Q_target at the allowed argmax of Q_online."""
    q_target, mask = random_case(seed)
    q_online = np.random.default_rng(seed + 100).normal(size=q_target.shape).astype(np.float32)
    got = losses.bootstrap_value(jnp.asarray(q_target), jnp.asarray(q_online) if double else None, jnp.asarray(mask))
    if double:
        want = q_target[np.arange(len(q_target)), np_masked_argmax(q_online, mask)]
    else:
        want = np.where(np_allowed(mask), q_target, -np.inf).max(-1)
    assert np.isfinite(np.asarray(got)).all()
    np.testing.assert_array_equal(np.asarray(got), want)


def _batch(obs_dim, actions, rows, seed):
    """A replay batch whose next observations close with a random mask (the protocol's layout)."""
    from purejaxdqn.algorithm.replay import Batch

    rng = np.random.default_rng(seed)
    mask = rng.random((rows, actions)) < 0.5
    mask[0] = False
    obs = rng.normal(size=(rows, obs_dim)).astype(np.float32)
    next_obs = np.concatenate([rng.normal(size=(rows, obs_dim - actions)), mask], axis=1).astype(np.float32)
    terminated = rng.random(rows) < 0.3
    return Batch(
        obs=jnp.asarray(obs), action=jnp.asarray(rng.integers(0, actions, rows), jnp.int32),
        reward=jnp.asarray(rng.normal(size=rows), jnp.float32), next_obs=jnp.asarray(next_obs),
        discount=jnp.asarray(np.where(terminated, 0.0, 0.99), jnp.float32), weight=None, index=None,
    ), mask  # fmt: skip


@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("distributional", [False, True])
def test_the_learner_bootstraps_only_from_allowed_actions(double, distributional):
    """The loss with the family's mask equals the loss with Q-values of disallowed next actions
    pushed to -1e9 (a reference that never needs the mask inside the learner)."""
    from purejaxdqn.algorithm import learner as learner_lib
    from purejaxdqn.algorithm.networks import make_network
    from purejaxdqn.config import Config
    from purejaxdqn.envs import EnvSpec, action_mask

    actions, obs_dim = 5, 12
    config = Config(double_dqn=double, distributional=distributional, widths=(16,))
    spec = EnvSpec(actions, (obs_dim,), np.float32, 100, masked=True)
    batch, mask = _batch(obs_dim, actions, 32, seed=int(double) + 2 * int(distributional))
    network = make_network(config, actions)
    params = network.init(jax.random.key(0), batch.obs)
    state = learner_lib.init(params, config, config.hparams())
    masked_loss = learner_lib.make_gradients(network.apply, config, mask_fn=lambda o: action_mask(spec, o))(state, batch, config.hparams())[0]

    allowed = jnp.asarray(np_allowed(mask))
    next_obs = batch.next_obs

    def penalized(params, obs, method=None):
        out = network.apply(params, obs, method=method) if method else network.apply(params, obs)
        if obs is not next_obs:
            return out
        pad = allowed if out.ndim == 2 else allowed[..., None]
        if distributional and out.ndim == 3:  # logits: a disallowed action's mean sinks to v_min
            return jnp.where(pad, out, jnp.where(jnp.arange(out.shape[-1]) == 0, 1e9, -1e9))
        return jnp.where(pad, out, -1e9)

    reference = learner_lib.make_gradients(penalized, config)(state, batch, config.hparams())[0]
    np.testing.assert_allclose(float(masked_loss), float(reference), rtol=1e-6)
