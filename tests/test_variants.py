"""The DQN family wired into replay, learner and loop: n-step sampling across the ring's
wraparound, prioritized replay bookkeeping, the C51 learner loss, MinAtar networks, sticky
actions, presets and the CLI. The pure math is in test_variants_math.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxdqn import Config, cli, from_preset
from purejaxdqn.algorithm import distributional, learner, prioritized, replay
from purejaxdqn.host import memory, runner
from purejaxdqn.envs import make_vec_env
from purejaxdqn.algorithm.loop import make_trainer
from purejaxdqn.algorithm.networks import QNetwork
from test_variants_math import np_c51_project  # the NumPy C51 projection reference

NUM_ENVS, ROWS = 3, 11


def random_stream(seed: int, steps: int, p_term=0.15, p_trunc=0.1):
    """A chronological stream of `steps` rows of transitions with random episode ends."""
    rng = np.random.default_rng(seed)
    shape = (steps, NUM_ENVS)
    ids = np.arange(steps * NUM_ENVS, dtype=np.float32).reshape(shape)
    terminated = rng.random(shape) < p_term
    truncated = (rng.random(shape) < p_trunc) & ~terminated
    return {
        "obs": np.stack([ids, -ids], -1),
        "action": rng.integers(0, 4, shape).astype(np.int32),
        "reward": rng.normal(size=shape).astype(np.float32),
        "next_obs": np.stack([ids + 0.5, ids], -1),
        "terminated": terminated,
        "truncated": truncated,
    }


def fill(stream, rows=ROWS, prioritized_replay=False, n_step=1):
    example = replay.Transition(**{k: jnp.asarray(v[0]) for k, v in stream.items()})
    state = replay.init(example, rows, prioritized_replay)

    def body(s, row):
        return replay.add(s, replay.Transition(*row), n_step), None

    rows_seq = replay.Transition(**{k: jnp.asarray(v) for k, v in stream.items()})
    return jax.jit(lambda s, r: jax.lax.scan(body, s, r)[0])(state, rows_seq)


def nstep_reference(stream, t, env, gamma, n):
    """Plain NumPy: the n-step item starting at stream time t (float64 loop)."""
    ret, k = 0.0, 0
    for i in range(n):
        ret += gamma**i * float(stream["reward"][t + i, env])
        k = i + 1
        if stream["terminated"][t + i, env] or stream["truncated"][t + i, env]:
            break
    last = t + k - 1
    discount = 0.0 if stream["terminated"][last, env] else gamma**k
    return ret, discount, stream["next_obs"][last, env], stream["obs"][t, env]


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("steps", [7, 11, 29])  # partly filled, exactly full, wrapped around twice
def test_nstep_samples_match_numpy_reference_across_wraparound(n, steps):
    stream = random_stream(steps * 10 + n, steps)
    state = fill(stream, n_step=n)
    gamma = 0.9
    batch = jax.jit(replay.sample_batch, static_argnums=(2, 4))(state, jax.random.key(n), 512, gamma, n)
    filled = min(steps, ROWS)
    first_time = steps - filled  # stream time held by the oldest row
    seen_times = set()
    for j in range(512):
        row, env = divmod(int(batch.index[j]), NUM_ENVS)
        t = first_time + (row - (steps - filled)) % ROWS  # ring row -> stream time
        assert t <= steps - n, "sampled a start whose n-step window is not complete"
        ret, discount, next_obs, obs = nstep_reference(stream, t, env, gamma, n)
        np.testing.assert_allclose(float(batch.reward[j]), ret, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(float(batch.discount[j]), discount, rtol=1e-5)
        np.testing.assert_array_equal(np.asarray(batch.next_obs[j]), next_obs)
        np.testing.assert_array_equal(np.asarray(batch.obs[j]), obs)
        assert int(batch.action[j]) == stream["action"][t, env]
        seen_times.add(t)
    assert seen_times == set(range(first_time, steps - n + 1)), "not every complete window is sampled"


@pytest.mark.parametrize("n", [1, 3])
def test_prioritized_rows_enter_at_max_priority_once_their_window_is_complete(n):
    for steps in (5, 11, 26):
        state = fill(random_stream(steps, steps), prioritized_replay=True, n_step=n)
        leaves = np.asarray(prioritized.leaves(state.priorities))[: ROWS * NUM_ENVS].reshape(ROWS, NUM_ENVS)
        filled, newest = min(steps, ROWS), (steps - 1) % ROWS
        waiting = {(newest - i) % ROWS for i in range(n - 1)}
        for row in range(ROWS):
            ready = row < filled if steps < ROWS else True
            expected = 1.0 if ready and row not in waiting else 0.0
            assert (leaves[row] == expected).all(), (steps, row)
        assert float(prioritized.total(state.priorities)) == leaves.sum()


def test_prioritized_sampling_follows_the_priorities_and_weights_match_numpy():
    state = fill(random_stream(3, 30), prioritized_replay=True)
    rng = np.random.default_rng(0)
    p = rng.uniform(0.1, 3.0, ROWS * NUM_ENVS).astype(np.float32)
    p[::4] = 0.05
    state = state._replace(priorities=prioritized.set(state.priorities, jnp.arange(p.size), jnp.asarray(p)))
    sample = jax.jit(replay.sample_batch, static_argnums=(2, 4))
    counts = np.zeros(p.size)
    for i in range(40):
        batch = sample(state, jax.random.key(i), 1000, 0.99, 1, 0.4)
        counts += np.bincount(np.asarray(batch.index), minlength=p.size)
        expected_w = (p[np.asarray(batch.index)] / p.sum() * p.size) ** -0.4
        np.testing.assert_allclose(np.asarray(batch.weight), expected_w / expected_w.max(), rtol=1e-4)
    freq = counts / counts.sum()
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.004)


def tiny_batch(seed, n=16, obs_dim=3, actions=3, weights=False):
    rng = np.random.default_rng(seed)
    return replay.Batch(
        obs=jnp.asarray(rng.normal(size=(n, obs_dim)), jnp.float32),
        action=jnp.asarray(rng.integers(0, actions, n), jnp.int32),
        reward=jnp.asarray(rng.normal(size=n) * 3, jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(n, obs_dim)), jnp.float32),
        discount=jnp.asarray(np.where(rng.random(n) < 0.3, 0.0, 0.9**3), jnp.float32),
        weight=jnp.asarray(rng.uniform(0.1, 1.0, n), jnp.float32) if weights else None,
        index=jnp.arange(n),
    )


@pytest.mark.parametrize("double", [True, False])
@pytest.mark.parametrize("weights", [False, True])
def test_c51_loss_matches_numpy_reference(double, weights):
    config = Config(distributional=True, num_atoms=11, v_min=-5.0, v_max=5.0, double_dqn=double, dueling=True)
    net = QNetwork(num_actions=3, widths=(8,), dueling=True, num_atoms=11, v_min=-5.0, v_max=5.0)
    batch = tiny_batch(1, weights=weights)
    params = net.init(jax.random.key(0), batch.obs)
    target_params = net.init(jax.random.key(1), batch.obs)
    state = learner.LearnerState(params, target_params, None, jnp.int32(0))
    loss, q_mean, signal, _ = jax.jit(learner.make_gradients(net.apply, config))(state, batch, config.hparams())

    z = np.linspace(-5.0, 5.0, 11)
    softmax = lambda x: np.exp(x - x.max(-1, keepdims=True)) / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)  # noqa: E731
    logits = np.asarray(net.apply(params, batch.obs, method="logits"), np.float64)
    next_t = np.asarray(net.apply(target_params, batch.next_obs, method="logits"), np.float64)
    next_o = np.asarray(net.apply(params, batch.next_obs, method="logits"), np.float64)
    items = []
    for i in range(len(batch.action)):
        chooser = next_o[i] if double else next_t[i]
        best = int(np.argmax((softmax(chooser) * z).sum(-1)))
        target = np_c51_project(softmax(next_t[i, best])[None], [float(batch.reward[i])], [float(batch.discount[i])], z)[0]
        log_p = logits[i, int(batch.action[i])] - np.log(np.exp(logits[i, int(batch.action[i])]).sum())
        items.append(-(target * log_p).sum())
    items = np.array(items)
    w = np.ones_like(items) if batch.weight is None else np.asarray(batch.weight)
    np.testing.assert_allclose(float(loss), (w * items).mean(), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(signal), items, rtol=1e-4)
    q = (softmax(logits) * z).sum(-1)
    np.testing.assert_allclose(float(q_mean), q[np.arange(len(q)), np.asarray(batch.action)].mean(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(net.apply(params, batch.obs)), q, rtol=1e-4, atol=1e-6)


def test_weighted_td_loss_matches_numpy():
    config = Config(loss="huber", huber_delta=1.0, double_dqn=False)
    net = QNetwork(num_actions=3, widths=(8,))
    batch = tiny_batch(2, weights=True)
    params = net.init(jax.random.key(0), batch.obs)
    target_params = net.init(jax.random.key(1), batch.obs)
    state = learner.LearnerState(params, target_params, None, jnp.int32(0))
    loss, _, signal, _ = jax.jit(learner.make_gradients(net.apply, config))(state, batch, config.hparams())
    q = np.asarray(net.apply(params, batch.obs), np.float64)[np.arange(16), np.asarray(batch.action)]
    target = np.asarray(batch.reward) + np.asarray(batch.discount) * np.asarray(net.apply(target_params, batch.next_obs)).max(-1)
    td = q - target
    huber = np.where(np.abs(td) <= 1.0, 0.5 * td**2, np.abs(td) - 0.5)
    np.testing.assert_allclose(float(loss), (np.asarray(batch.weight) * huber).mean(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(signal), np.abs(td), rtol=1e-5, atol=1e-6)


def test_minatar_conv_network_and_compact_observations():
    venv = make_vec_env("Breakout-MinAtar", 2)
    config = from_preset("breakout")
    trainer = make_trainer(config)
    params = jax.eval_shape(trainer.init, jax.random.key(0), config.hparams()).learner.params["params"]
    assert params["Conv_0"]["kernel"].shape == (3, 3, venv.obs_shape[-1], 16)
    assert params["Dense_0"]["kernel"].shape == (8 * 8 * 16, 128)
    big = config.replace(buffer_size=1_000_000)
    state = jax.eval_shape(make_trainer(big).init, jax.random.key(0), big.hparams())
    obs_bytes = state.replay.data.obs.size * state.replay.data.obs.dtype.itemsize
    assert state.replay.data.obs.dtype == jnp.uint8 and obs_bytes == 1_000_000 * int(np.prod(venv.obs_shape))
    as_float = 2 * obs_bytes * 4  # obs and next_obs as float32
    assert memory.state_bytes(state) < 0.3 * as_float


def test_full_action_set_and_sticky_actions():
    assert make_vec_env("Breakout-MinAtar", 2).num_actions == 3
    assert make_vec_env("Breakout-MinAtar", 2, full_action_set=True).num_actions == 6
    venv = make_vec_env("Breakout-MinAtar", 20_000, sticky_actions=0.25)
    obs, state = venv.reset(jax.random.key(0))
    assert (np.asarray(state.last_action) == 0).all()
    res = jax.jit(venv.step)(jax.random.key(1), state, jnp.ones(20_000, jnp.int32))
    executed = np.asarray(res.env_state.last_action)
    ended = np.asarray(res.terminated | res.truncated)
    repeated = (executed[~ended] == 0).mean()  # the agent asked for 1; 0 is the sticky no-op
    assert abs(repeated - 0.25) < 0.02
    assert set(np.unique(executed[~ended])) <= {0, 1}


def test_presets_stack_and_default_per_env():
    assert cli.make_plan(["--env-id", "Breakout-MinAtar"]).preset == "breakout"
    parsed = cli.make_plan(["--env-id", "Freeway-MinAtar", "--preset", "rainbow"])
    assert parsed.preset == "freeway,rainbow"
    c = parsed.config
    assert c.torso == "conv" and c.n_step == 3 and c.prioritized and c.distributional and c.dueling and c.double_dqn
    c = cli.make_plan(["--preset", "space-invaders,original", "--n-step", "2"]).config
    assert c.env_id == "SpaceInvaders-MinAtar" and c.full_action_set and c.sticky_actions == 0.1 and c.n_step == 2
    c = cli.make_plan(["--preset", "freeway,original,minatar-paper"]).config
    assert (c.optimizer, c.lr, c.num_envs, c.double_dqn, c.max_grad_norm) == ("rmsprop", 2.5e-4, 1, False, 0.0)
    assert c.full_action_set and c.torso == "conv" and c.total_steps == 1_000_000


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--torso", "conv"], "--torso"),
        (["--full-action-set"], "--full-action-set"),
        (["--n-step", "0"], "--n-step"),
        (["--n-step", "2000", "--buffer-size", "10000"], "--n-step"),
        (["--distributional", "--num-atoms", "1"], "--num-atoms"),
        (["--distributional", "--v-min", "5", "--v-max", "5"], "--v-min"),
        (["--priority-beta", "1.5"], "--priority-beta"),
        (["--sticky-actions", "1"], "--sticky-actions"),
        (["--preset", "breakout", "--env-id", "CartPole-v1"], "--preset"),
        (["--preset", "nope"], "--preset"),
    ],
)
def test_bad_variant_options_are_one_clear_line(argv, option, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and option in err and "Traceback" not in err


TINY_RAINBOW = Config(
    env_id="Breakout-MinAtar", torso="conv", widths=(32,), num_envs=4, num_eval_envs=2, total_steps=4 * 200,
    buffer_size=400, batch_size=16, learning_starts=100, update_every=1, eval_every=400, n_step=3,
    prioritized=True, distributional=True, dueling=True, num_atoms=11,
)  # fmt: skip


def test_rainbow_chunks_are_invariant_and_seeds_in_a_batch_match_single_runs():
    one = runner.train_runs(TINY_RAINBOW.replace(num_chunks=1), *runner.make_runs(TINY_RAINBOW))
    four = runner.train_runs(TINY_RAINBOW.replace(num_chunks=4), *runner.make_runs(TINY_RAINBOW))
    a, b = jax.device_get(one.state), jax.device_get(four.state)
    for x, y in zip(jax.tree.leaves((a.learner, a.replay)), jax.tree.leaves((b.learner, b.replay))):
        np.testing.assert_array_equal(x, y)
    assert int(a.learner.updates[0]) == 701  # one per env step from step 100 to 800
    batch = runner.train_runs(TINY_RAINBOW, *runner.make_runs(TINY_RAINBOW.replace(seed=0), num_seeds=2))
    single = runner.train_runs(TINY_RAINBOW.replace(seed=1), *runner.make_runs(TINY_RAINBOW.replace(seed=1)))
    for x, y in zip(jax.tree.leaves(jax.device_get(batch.state.learner.params)), jax.tree.leaves(jax.device_get(single.state.learner.params))):
        np.testing.assert_allclose(x[1], y[0], rtol=2e-4, atol=2e-5)
    tree = jax.device_get(batch.state.replay.priorities)
    assert np.isfinite(tree.nodes).all() and (tree.max_priority > 0).all()
    assert not np.array_equal(tree.nodes[0], tree.nodes[1])  # each run has its own priorities


def test_rainbow_trains_from_the_cli(tmp_path):
    out = tmp_path / "run"
    argv = ["--preset", "breakout,rainbow", "--total-steps", "1600", "--num-envs", "4", "--num-eval-envs", "2",
            "--buffer-size", "800", "--learning-starts", "200", "--eval-every", "800", "--num-chunks", "2",
            "--widths", "32", "--num-atoms", "11", "--output-dir", str(out), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    assert (out / "summary.json").exists() and (out / "checkpoints").is_dir()


@pytest.mark.parametrize("features,kernel,stride,size", [(16, 3, 1, 10), (32, 8, 4, 84), (64, 4, 2, 20), (64, 3, 1, 9)])
def test_patch_convolution_equals_flax_conv(features, kernel, stride, size):
    """PatchConv (patches @ kernel) computes what nn.Conv(features, (k, k), (s, s), padding='VALID')
    does: MinAtar's 3x3 and each of the Nature DQN's."""
    import flax.linen as nn

    from purejaxdqn.algorithm.networks import PatchConv

    x = jax.random.uniform(jax.random.key(0), (5, size, size, 4))
    ours = PatchConv(features, kernel, stride)
    params = ours.init(jax.random.key(1), x)
    theirs = nn.Conv(features, (kernel, kernel), (stride, stride), padding="VALID").apply(params, x)
    np.testing.assert_allclose(np.asarray(ours.apply(params, x)), np.asarray(theirs), rtol=1e-5, atol=1e-5)
