"""The RL math against plain NumPy references: TD targets, losses, schedules, interval counts,
target-network updates and one full gradient update."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxdqn.algorithm import learner, losses, schedules
from purejaxdqn.config import Config
from purejaxdqn.algorithm.networks import QNetwork
from purejaxdqn.algorithm.replay import Transition, one_step_batch

GAMMAS = (0.0, 0.5, 0.9, 0.99, 1.0)


# ----------------------------------------------------------------------------- references
def np_bootstrap(next_q_target, next_q_online):
    """max_a Q_target(s', a), or Double DQN: Q_target(s', argmax_a Q_online(s', a))."""
    out = np.empty(next_q_target.shape[0], np.float64)
    for i in range(next_q_target.shape[0]):
        if next_q_online is None:
            out[i] = max(next_q_target[i])
        else:
            out[i] = next_q_target[i][int(np.argmax(next_q_online[i]))]
    return out


def np_td_target(reward, terminated, gamma, next_value):
    out = np.empty(reward.shape[0], np.float64)
    for i in range(reward.shape[0]):
        out[i] = reward[i] if terminated[i] else reward[i] + gamma * next_value[i]
    return out


def np_huber(x, delta):
    return np.array([0.5 * v * v if abs(v) <= delta else delta * (abs(v) - 0.5 * delta) for v in x])


def brute_multiples(before, after, every, start):
    """Count k * every (k >= 1, k * every >= start) in (before, after], one k at a time."""
    return sum(1 for k in range(1, after // every + 2) if before < k * every <= after and k * every >= start)


def random_batch(rng, n=64, num_actions=4):
    """Random q-values, rewards and a mix of terminated / truncated / ordinary rows.

    Online and target q-values are drawn independently, so their argmaxes differ on most rows.
    """
    next_q_target = rng.normal(size=(n, num_actions)).astype(np.float32)
    next_q_online = rng.normal(size=(n, num_actions)).astype(np.float32)
    reward = rng.normal(size=n).astype(np.float32)
    kind = rng.integers(0, 3, size=n)  # 0 ordinary, 1 terminated, 2 truncated (not terminated)
    terminated = kind == 1
    truncated = kind == 2
    return next_q_target, next_q_online, reward, terminated, truncated


# ------------------------------------------------------------------------ TD targets
@pytest.mark.parametrize("num_actions", [2, 3, 6])
@pytest.mark.parametrize("double", [False, True])
def test_td_target_matches_numpy(num_actions, double):
    """r + gamma (1 - terminated) V(s') equals the NumPy loop for max and Double DQN values."""
    rng = np.random.default_rng(100 + num_actions)
    for gamma in GAMMAS:
        nqt, nqo, r, term, trunc = random_batch(rng, 64, num_actions)
        online = nqo if double else None
        value = losses.bootstrap_value(jnp.asarray(nqt), None if online is None else jnp.asarray(online))
        target = np.asarray(losses.td_target(jnp.asarray(r), jnp.asarray(term), jnp.float32(gamma), value))
        ref_value = np_bootstrap(nqt, online)
        np.testing.assert_array_equal(np.asarray(value), ref_value.astype(np.float32))  # a pick: exact
        np.testing.assert_allclose(target, np_td_target(r, term, gamma, ref_value), rtol=1e-6, atol=1e-6)


def test_terminated_rows_do_not_bootstrap_truncated_rows_do():
    """Terminated: target == reward bit for bit; truncated-not-terminated: r + gamma V(s')."""
    rng = np.random.default_rng(1)
    nqt, _, r, term, trunc = random_batch(rng, 64, 4)
    nqt = nqt + 10.0  # V(s') far from zero, so a missing/extra bootstrap is obvious
    assert term.any() and trunc.any()
    for gamma in GAMMAS[1:]:
        value = losses.bootstrap_value(jnp.asarray(nqt), None)
        target = np.asarray(losses.td_target(jnp.asarray(r), jnp.asarray(term), jnp.float32(gamma), value))
        np.testing.assert_array_equal(target[term], r[term])
        v = nqt.max(axis=1).astype(np.float64)
        np.testing.assert_allclose(target[trunc], r[trunc] + gamma * v[trunc], rtol=1e-6)
        assert np.all(np.abs(target[trunc] - r[trunc]) > 1.0)


def test_double_dqn_takes_argmax_from_online_and_value_from_target():
    """Where online and target argmaxes differ, the value is Q_target at the online argmax."""
    rng = np.random.default_rng(2)
    n, a = 64, 5
    nqt = rng.normal(size=(n, a)).astype(np.float32)
    nqo = rng.normal(size=(n, a)).astype(np.float32)
    # Force disagreement on every row: the online argmax is the target's argmin.
    for i in range(n):
        nqo[i, int(np.argmin(nqt[i]))] = 10.0
    assert np.all(nqo.argmax(1) != nqt.argmax(1))
    got = np.asarray(losses.bootstrap_value(jnp.asarray(nqt), jnp.asarray(nqo)))
    np.testing.assert_array_equal(got, nqt.min(axis=1))  # target's value at online's choice
    assert np.all(got != nqo.max(axis=1))  # not the online value
    assert np.all(got != nqt.max(axis=1))  # not the plain max


# ------------------------------------------------------------------------ losses
@pytest.mark.parametrize("delta", [0.1, 0.5, 1.0, 3.0])
def test_huber_matches_numpy(delta):
    """Huber is 0.5 x^2 inside |x| <= delta and delta (|x| - delta/2) outside."""
    rng = np.random.default_rng(int(delta * 10))
    x = np.concatenate([rng.uniform(-delta, delta, 50), rng.uniform(delta, 5 * delta, 25),
                        -rng.uniform(delta, 5 * delta, 25), [0.0, delta, -delta]]).astype(np.float32)  # fmt: skip
    got = np.asarray(losses.huber(jnp.asarray(x), jnp.float32(delta)))
    np.testing.assert_allclose(got, np_huber(x.astype(np.float64), delta), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["huber", "mse"])
def test_td_loss_matches_numpy(kind):
    """td_loss is mean Huber for 'huber' and 0.5 mean(x^2) for 'mse'."""
    rng = np.random.default_rng(3)
    for delta in (0.5, 1.0, 2.0):
        x = (3 * rng.normal(size=64)).astype(np.float32)
        got = float(losses.td_loss(jnp.asarray(x), kind, jnp.float32(delta)))
        x64 = x.astype(np.float64)
        ref = np_huber(x64, delta).mean() if kind == "huber" else 0.5 * np.mean(x64**2)
        np.testing.assert_allclose(got, ref, rtol=1e-6)


# ------------------------------------------------------------------------ schedules
def np_epsilon(step, start, end, decay):
    frac = min(max(step / decay, 0.0), 1.0)
    return start + frac * (end - start)


@pytest.mark.parametrize("start,end,decay", [(1.0, 0.05, 1000), (0.5, 0.0, 7), (0.1, 0.9, 300)])
def test_linear_epsilon_matches_numpy(start, end, decay):
    """Linear decay from start to end over decay steps, then held (also for start < end)."""
    steps = [0, 1, decay // 3, decay // 2, decay - 1, decay, decay + 1, 10 * decay]
    for step in steps:
        got = float(schedules.linear_epsilon(jnp.int32(step), jnp.float32(start), jnp.float32(end), jnp.int32(decay)))
        np.testing.assert_allclose(got, np_epsilon(step, start, end, decay), rtol=1e-6, atol=1e-7)
    assert float(schedules.linear_epsilon(jnp.int32(0), start, end, decay)) == pytest.approx(start)
    assert float(schedules.linear_epsilon(jnp.int32(10 * decay), start, end, decay)) == pytest.approx(end)


def test_multiples_crossed_matches_brute_force():
    """Crossing counts equal a brute-force count for random envs, periods and starts (jit+vmap)."""
    rng = np.random.default_rng(4)
    crossed = jax.jit(jax.vmap(schedules.multiples_crossed))
    before, after, every, start, expected = [], [], [], [], []
    for _ in range(2000):
        n = int(rng.integers(1, 40))
        e = int(rng.integers(1, 60))  # often e < n and often n does not divide e
        s = int(rng.integers(0, 500))  # mostly not a multiple of e
        b = int(rng.integers(0, 200)) * n
        before.append(b), after.append(b + n), every.append(e), start.append(s)
        expected.append(brute_multiples(b, b + n, e, s))
    got = crossed(*(jnp.asarray(v, jnp.int32) for v in (before, after, every, start)))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    assert max(expected) > 1  # some steps cross several multiples (every < num_envs)


@pytest.mark.parametrize("num_envs,every,start,total", [(7, 10, 0, 7000), (7, 10, 33, 7000), (7, 10, 350, 7000),
                                                        (3, 10, 25, 999), (16, 5, 12, 1600), (10, 10, 0, 1000),
                                                        (4, 10, 200, 2000), (1, 4, 3, 101)])  # fmt: skip
def test_whole_run_update_rounds_equal_multiples_in_range(num_envs, every, start, total):
    """Summed over a run, crossings count every multiple of `every` in [start, T] exactly once."""
    T = (total // num_envs) * num_envs
    steps = np.arange(0, T + 1, num_envs)
    got = np.asarray(jax.jit(schedules.multiples_crossed)(steps[:-1], steps[1:], every, start)).sum()
    expected = sum(1 for m in range(every, T + 1, every) if m >= start)
    assert got == expected
    if (num_envs, every, start) == (7, 10, 0):
        naive = sum(1 for s in steps[1:] if s % every == 0)  # fires only at multiples of 70
        assert naive == T // 70 and got == T // 10


# ------------------------------------------------------------------------ learner
def tiny_problem(seed=0, n=32, obs_dim=3, num_actions=3, widths=(8,)):
    rng = np.random.default_rng(seed)
    network = QNetwork(num_actions=num_actions, widths=widths)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    batch = Transition(
        obs=jnp.asarray(obs),
        action=jnp.asarray(rng.integers(0, num_actions, n), jnp.int32),
        reward=jnp.asarray(rng.normal(size=n), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(n, obs_dim)), jnp.float32),
        terminated=jnp.asarray(rng.random(n) < 0.3),
        truncated=jnp.asarray(rng.random(n) < 0.2),
    )
    params = network.init(jax.random.key(seed), batch.obs)
    return network, params, batch


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_hard_target_update_every_k_updates():
    """tau=1: target == online bitwise right after every k-th update, unchanged in between."""
    k = 3
    config = Config(target_update_every=k, tau=1.0, lr=1e-2, loss="mse")
    hp = config.hparams()
    network, params, batch = tiny_problem(1)
    update = jax.jit(learner.make_update(network.apply, config))
    state = learner.init(params, config, hp)
    prev_target = leaves(state.target_params)
    for i in range(1, 3 * k + 2):
        state, _ = update(state, one_step_batch(batch, hp.gamma), hp)
        assert int(state.updates) == i
        online, target = leaves(state.params), leaves(state.target_params)
        assert any(not np.array_equal(o, t) for o, t in zip(online, prev_target))  # online moved
        if i % k == 0:
            assert all(np.array_equal(o, t) for o, t in zip(online, target)), i
        else:
            assert all(np.array_equal(p, t) for p, t in zip(prev_target, target)), i
        prev_target = target


def test_polyak_target_update_matches_numpy():
    """tau=0.5, period 1: target <- 0.5 online + 0.5 target after every update."""
    config = Config(target_update_every=1, tau=0.5, lr=1e-2, loss="huber")
    hp = config.hparams()
    network, params, batch = tiny_problem(2)
    update = jax.jit(learner.make_update(network.apply, config))
    state = learner.init(params, config, hp)
    for _ in range(4):
        old_target = leaves(state.target_params)
        state, _ = update(state, one_step_batch(batch, hp.gamma), hp)
        for o, t_old, t_new in zip(leaves(state.params), old_target, leaves(state.target_params)):
            np.testing.assert_allclose(t_new, 0.5 * o + 0.5 * t_old, rtol=1e-6, atol=1e-7)
        assert any(not np.array_equal(a, b) for a, b in zip(old_target, leaves(state.target_params)))


def np_loss_and_bias_grad(q, next_q_target, next_q_online, batch, gamma, kind, delta):
    """NumPy DQN loss and its gradient w.r.t. the output-layer bias (dq/db_a = 1 for action a)."""
    reward = np.asarray(batch.reward, np.float64)
    terminated = np.asarray(batch.terminated)
    action = np.asarray(batch.action)
    value = np_bootstrap(next_q_target, next_q_online)
    target = np_td_target(reward, terminated, gamma, value)
    n = len(reward)
    err = np.array([q[i, action[i]] - target[i] for i in range(n)])
    if kind == "mse":
        loss, dloss = 0.5 * np.mean(err**2), err / n
    else:
        loss, dloss = np_huber(err, delta).mean(), np.clip(err, -delta, delta) / n
    grad_b = np.zeros(q.shape[1])
    for i in range(n):
        grad_b[action[i]] += dloss[i]
    return loss, grad_b


@pytest.mark.parametrize("double,kind", [(False, "mse"), (True, "huber")])
def test_gradient_update_matches_numpy(double, kind):
    """One update: loss and output-bias gradient match NumPy; Adam's first step is -lr g/(|g|+eps)."""
    config = Config(double_dqn=double, loss=kind, max_grad_norm=1e9, lr=1e-3, gamma=0.9, huber_delta=0.5)
    hp = config.hparams()
    network, params, batch = tiny_problem(3, widths=(8, 8))
    # Target net differs from the online net, so swapping them would change the result.
    target_params = network.init(jax.random.key(99), batch.obs)
    state = learner.init(params, config, hp)._replace(target_params=target_params)

    q = np.asarray(network.apply(params, batch.obs), np.float64)
    nqt = np.asarray(network.apply(target_params, batch.next_obs), np.float64)
    nqo = np.asarray(network.apply(params, batch.next_obs), np.float64) if double else None
    if double:
        assert np.any(nqt.argmax(1) != nqo.argmax(1))
    ref_loss, ref_grad_b = np_loss_and_bias_grad(q, nqt, nqo, batch, 0.9, kind, 0.5)

    loss, q_mean, _, grads = jax.jit(learner.make_gradients(network.apply, config))(state, one_step_batch(batch, hp.gamma), hp)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5)
    a = np.asarray(batch.action)
    np.testing.assert_allclose(float(q_mean), np.mean(q[np.arange(len(a)), a]), rtol=1e-5)
    out_layer = sorted(grads["params"])[-1]  # Dense_2: the output layer
    np.testing.assert_allclose(np.asarray(grads["params"][out_layer]["bias"]), ref_grad_b, rtol=1e-4, atol=1e-7)

    new_state, metrics = jax.jit(learner.make_update(network.apply, config))(state, one_step_batch(batch, hp.gamma), hp)
    np.testing.assert_allclose(float(metrics.loss), ref_loss, rtol=1e-5)
    for p_old, g, p_new in zip(leaves(params), leaves(grads), leaves(new_state.params)):
        g = g.astype(np.float64)
        expected = p_old - 1e-3 * g / (np.abs(g) + config.adam_eps)
        np.testing.assert_allclose(p_new, expected, rtol=1e-5, atol=1e-8)
    assert int(new_state.updates) == 1


def test_rmsprop_matches_the_minatar_papers_numpy_formula():
    """--optimizer rmsprop is PyTorch's centered RMSprop(alpha=0.95, eps=0.01), the MinAtar
    paper's: eps added after the square root, averages starting from 0."""
    rng = np.random.default_rng(3)
    config = Config(optimizer="rmsprop", max_grad_norm=0.0)
    hp = config.hparams()._replace(lr=jnp.float32(2.5e-3))
    params = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}
    opt = learner.make_optimizer(config, hp)
    state, p = opt.init(params), params
    ref = {k: v.astype(np.float64) for k, v in params.items()}
    sq = {k: np.zeros_like(v) for k, v in ref.items()}
    mean = {k: np.zeros_like(v) for k, v in ref.items()}
    for _ in range(4):
        grads = {k: rng.normal(scale=rng.uniform(0.01, 3.0), size=v.shape).astype(np.float32) for k, v in params.items()}
        updates, state = opt.update(grads, state, p)
        p = jax.tree.map(lambda a, b: a + b, p, updates)
        for k, g in grads.items():
            sq[k] = 0.95 * sq[k] + 0.05 * g.astype(np.float64) ** 2
            mean[k] = 0.95 * mean[k] + 0.05 * g
            ref[k] = ref[k] - 2.5e-3 * g / (np.sqrt(sq[k] - mean[k] ** 2) + 0.01)
    for k in ref:
        np.testing.assert_allclose(np.asarray(p[k]), ref[k], rtol=1e-5, atol=1e-6)


def test_nstep_needs_a_complete_window_before_the_first_update():
    """With n-step returns and many envs the first update must not come before any window is
    complete (it would sample never-written rows): such a learning_starts is refused."""
    from purejaxdqn.config import ConfigError, from_preset, validate

    with pytest.raises(ConfigError) as err:
        validate(from_preset("breakout,rainbow", num_envs=4096))
    assert err.value.option == "--learning-starts" and "8192" in err.value.message
    validate(from_preset("breakout,rainbow", num_envs=4096, learning_starts=8193, buffer_size=100_000 * 4))


def test_final_eval_is_recorded_when_the_last_step_crosses_an_eval_boundary():
    """num_envs not dividing eval_every, and the last vectorized step crossing a boundary: the
    eval log has no empty (NaN) slot and its last entry is the end of the run."""
    from purejaxdqn.algorithm.loop import make_trainer, num_evals

    config = Config(num_envs=64, total_steps=3000, num_chunks=1, eval_every=1000, learning_starts=500,
                    batch_size=32, buffer_size=640, widths=(8,), num_eval_envs=2)  # fmt: skip
    assert config.actual_total_steps == 3008 and num_evals(config) == 3
    state = jax.jit(make_trainer(config).train)(jax.random.key(0))
    assert np.isfinite(np.asarray(state.evals.mean)).all()
    assert list(np.asarray(state.evals.step)) == [1024, 2048, 3008]


# ----------------------------------------------------------------------------- evaluation
class _ActionCounter:
    """A gymnax-like env whose reward is 1 for action 1 and 0 for action 0; episodes end by
    the time limit only, so an episode's return counts the steps that took action 1."""

    def __init__(self, limit):
        self.limit = limit

    def reset(self, key, params):
        return jnp.zeros(1), jnp.int32(0)

    def step(self, key, t, action, params):
        t = t + 1
        return jnp.zeros(1), t, (action == 1).astype(jnp.float32), jnp.bool_(False), t >= self.limit, {"final_observation": jnp.zeros(1)}


@pytest.mark.parametrize("epsilon", [0.0, 0.01, 0.3, 1.0])
def test_eval_epsilon_takes_random_actions_at_the_rate_asked(epsilon):
    """The greedy action is 0; a random action is 1 half the time, so a step takes action 1
    with probability epsilon / 2 (binomial check over 200 episodes x 100 steps), and the
    episodes of this deterministic env differ only when epsilon > 0."""
    from purejaxdqn.algorithm.evaluation import make_episode_returns
    from purejaxdqn.envs import EnvSpec, VecEnv
    from purejaxdqn.envs.gymnax_adapter import GymnaxAdapter

    episodes, limit = 200, 100
    venv = VecEnv(GymnaxAdapter(_ActionCounter(limit), None, EnvSpec(2, (1,), jnp.float32, limit)), episodes)
    prefers_0 = lambda params, obs: jnp.broadcast_to(jnp.array([1.0, 0.0]), (obs.shape[0], 2))  # noqa: E731
    returns = np.asarray(jax.jit(make_episode_returns(prefers_0, venv, episodes, epsilon))(None, jax.random.key(3)))
    p, n = epsilon / 2, episodes * limit
    assert abs(returns.sum() / n - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12
    assert (np.unique(returns).size > 1) == (epsilon > 0)
