"""Multi-device checks. They need 8 CPU devices, forced before jax starts, so tests/test_parallel.py
runs this file in its own pytest process with XLA_FLAGS=--xla_force_host_platform_device_count=8.
(Not collected by the main run: the file name does not start with test_.)"""

from __future__ import annotations

import functools

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from purejaxdqn import Config
from purejaxdqn.algorithm import learner, parallel
from purejaxdqn.host import memory, runner
from purejaxdqn.host.run_options import RunOptions
from purejaxdqn.algorithm.networks import QNetwork
from purejaxdqn.algorithm.replay import Batch, Transition, one_step_batch

assert jax.device_count() == 8, "run through tests/test_parallel.py (needs 8 forced CPU devices)"

CONFIG = Config(double_dqn=True, loss="huber", max_grad_norm=1e9, lr=1e-3)
BATCH = 64


def random_batch(seed: int, n: int = BATCH) -> Batch:
    rng = np.random.default_rng(seed)
    return one_step_batch(Transition(
        obs=jnp.asarray(rng.normal(size=(n, 4)), jnp.float32),
        action=jnp.asarray(rng.integers(0, 2, n), jnp.int32),
        reward=jnp.asarray(rng.normal(size=n), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(n, 4)), jnp.float32),
        terminated=jnp.asarray(rng.random(n) < 0.2),
        truncated=jnp.zeros(n, bool),
    ), CONFIG.gamma)


@pytest.fixture(scope="module")
def setup():
    net = QNetwork(num_actions=2, widths=(32, 32))
    params = net.init(jax.random.key(0), jnp.zeros((1, 4)))
    state = learner.init(params, CONFIG, CONFIG.hparams())
    # Let the target differ from the online net so Double DQN's two nets both matter.
    state = state._replace(target_params=jax.tree.map(lambda x: x * 0.9, params))
    return net, state


def data_parallel(fn, n: int, batch_spec):
    mesh = parallel.make_mesh(parallel.MeshShape(1, n))
    return jax.jit(parallel.shard(fn, mesh, (P(), batch_spec, P()), P()))


def max_diff(a, b) -> float:
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("n", [2, 4, 8])
def test_split_global_batch_update_equals_single_device_update(setup, n):
    """N devices, each a 1/N slice of one global batch: one update == the single-device update."""
    net, state = setup
    batch, hp = random_batch(1), CONFIG.hparams()
    single, _ = jax.jit(learner.make_update(net.apply, CONFIG))(state, batch, hp)
    dp_update = learner.make_update(net.apply, CONFIG, axis_name=parallel.DATA)
    sharded, _ = data_parallel(lambda s, b, h: dp_update(s, b, h), n, P(parallel.DATA))(state, batch, hp)
    assert max_diff(single.params, sharded.params) < 1e-6
    assert max_diff(single.opt_state, sharded.opt_state) < 1e-6


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_identical_data_gradient_does_not_scale_with_devices(setup, n):
    """Every device fed the same batch: the averaged gradient equals the single-device gradient
    (the shard_map trap would give N times it). Compared on raw gradients, not Adam steps."""
    net, state = setup
    batch, hp = random_batch(2), CONFIG.hparams()
    *_, single = jax.jit(learner.make_gradients(net.apply, CONFIG))(state, batch, hp)
    grads_fn = learner.make_gradients(net.apply, CONFIG, axis_name=parallel.DATA)
    # Replicate the batch: every device sees all of it.
    dp = data_parallel(lambda s, b, h: grads_fn(s, b, h)[3], n, P())(state, batch, hp)
    assert max_diff(single, dp) < 1e-6
    norm = lambda g: float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(g))))  # noqa: E731
    assert norm(dp) == pytest.approx(norm(single), rel=1e-5)


# unroll 1: the static chunk rolled, the smallest program (these checks compare mesh layouts of
# one program; unrolling is tested in test_static_loop.py): unrolling 2 (the CPU default) makes
# each of this file's many programs larger to compile.
SMALL = Config(
    total_steps=8 * 300, num_envs=8, num_eval_envs=4, buffer_size=800, batch_size=32,
    learning_starts=800, eval_every=800, widths=(32,), target_update_every=10, num_chunks=3, unroll=1,
)  # fmt: skip


def test_replicas_hold_bitwise_identical_parameters_after_training():
    """Data-parallel on 4 devices: params, target and Adam state are bit-identical on every replica."""
    result = runner.train_runs(SMALL, *runner.make_runs(SMALL, 2), mesh_shape=parallel.MeshShape(2, 4))
    learner_state = result.state.learner
    assert int(np.asarray(jax.device_get(learner_state.updates)).min()) > 50
    for leaf in jax.tree.leaves((learner_state.params, learner_state.target_params, learner_state.opt_state)):
        # Device (r, d) holds run r's replica d: the 4 data replicas of each run are bitwise equal.
        by_run: dict[int, list] = {}
        for shard in leaf.addressable_shards:
            by_run.setdefault(shard.index[0].start, []).append(np.asarray(shard.data))
        assert sorted(by_run) == [0, 1] and all(len(v) == 4 for v in by_run.values())
        for copies in by_run.values():
            assert all(np.array_equal(copies[0], c) for c in copies[1:])
    assert np.isfinite(result.eval_mean).all()


@pytest.mark.parametrize("layout", ["pairs", "frames"])
def test_prioritized_nstep_c51_shards_keep_own_trees_and_identical_replicas(layout):
    """Rainbow switches on a 2 x 4 mesh, in both replay layouts: each data shard samples from
    its own priority tree, while parameters stay bit-identical on every replica."""
    config = SMALL.replace(n_step=3, prioritized=True, distributional=True, dueling=True, num_atoms=11,
                           replay_layout=layout)  # fmt: skip
    result = runner.train_runs(config, *runner.make_runs(config, 2), mesh_shape=parallel.MeshShape(2, 4))
    for leaf in jax.tree.leaves(result.state.learner.params):
        by_run: dict[int, list] = {}
        for shard in leaf.addressable_shards:
            by_run.setdefault(shard.index[0].start, []).append(np.asarray(shard.data))
        for copies in by_run.values():
            assert all(np.array_equal(copies[0], c) for c in copies[1:])
    nodes = result.state.replay.priorities.nodes
    local = [np.asarray(s.data) for s in nodes.addressable_shards]
    assert local[0].shape == (1, nodes.shape[1] // 4)  # one tree per (run, data shard)
    assert len({c.tobytes() for c in local}) == len(local)  # shards' priorities differ
    for tree in local:  # every tree is consistent: root == sum of its leaves
        leaves = tree[0, tree.shape[1] // 2:]
        np.testing.assert_allclose(tree[0, 1], leaves.sum(), rtol=1e-5)
    assert np.isfinite(result.eval_mean).all()


def test_seeds_split_across_devices_match_one_device():
    """4 seeds on a 4-device runs axis == the same 4 seeds vmapped on one device (tolerance)."""
    one = runner.train_runs(SMALL, *runner.make_runs(SMALL, 4))
    split = runner.train_runs(SMALL, *runner.make_runs(SMALL, 4), mesh_shape=parallel.MeshShape(4, 1))
    assert max_diff(jax.device_get(one.state.learner.params), jax.device_get(split.state.learner.params)) < 2e-4
    np.testing.assert_allclose(one.eval_mean, split.eval_mean, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(jax.device_get(one.state.replay.data.action)),
                                  np.asarray(jax.device_get(split.state.replay.data.action)))  # fmt: skip


def test_data_parallel_counts_are_global():
    """Env steps, updates and episode statistics count all devices' envs, not one shard's."""
    single = runner.train_runs(SMALL, *runner.make_runs(SMALL))
    dp = runner.train_runs(SMALL, *runner.make_runs(SMALL), mesh_shape=parallel.MeshShape(1, 4))
    assert single.summary["updates_per_run"] == dp.summary["updates_per_run"]
    assert int(jax.device_get(dp.state.env_steps)) == SMALL.actual_total_steps
    assert dp.state.replay.data.obs.shape == single.state.replay.data.obs.shape
    stats = jax.device_get(dp.state.stats)
    assert int(stats.episodes[0]) > 0 and float(stats.length_sum[0]) / int(stats.episodes[0]) < 60


def test_mesh_choice_and_refusals():
    """Auto mesh uses the devices sensibly; impossible meshes are refused naming the option."""
    c = SMALL
    assert parallel.choose_mesh(c, num_runs=8, num_devices=8) == parallel.MeshShape(8, 1)
    assert parallel.choose_mesh(c, num_runs=1, num_devices=8) == parallel.MeshShape(1, 4)  # eval envs 4
    assert parallel.choose_mesh(c, num_runs=2, num_devices=8) == parallel.MeshShape(2, 4)
    assert parallel.choose_mesh(c, num_runs=3, num_devices=1) == parallel.MeshShape(1, 1)
    from purejaxdqn.config import ConfigError

    with pytest.raises(ConfigError, match="--num-envs"):
        parallel.choose_mesh(c.replace(num_envs=6), 1, 8, runs=1, data=4)
    with pytest.raises(ConfigError, match="--batch-size"):
        parallel.choose_mesh(c.replace(batch_size=30), 1, 8, runs=1, data=4)
    with pytest.raises(ConfigError, match="needs 16 devices but only 8"):
        parallel.choose_mesh(c, 4, 8, runs=4, data=4)
    with pytest.raises(ConfigError, match="--mesh-runs"):
        parallel.choose_mesh(c, 3, 8, runs=2, data=1)


def test_prioritized_weights_are_normalized_over_the_global_batch():
    """Data-parallel prioritized replay: importance weights of every shard are divided by the max
    weight of the whole (global) batch, as one device with the whole batch would: a NumPy
    reference on shards whose priorities differ by a factor of 100."""
    from purejaxdqn.algorithm import prioritized
    from purejaxdqn.algorithm.replay import init as replay_init
    from purejaxdqn.algorithm.replay import sample_batch

    n, rows, envs, batch, beta = 2, 16, 2, 8, 0.6
    example = Transition(jnp.zeros((envs, 4)), jnp.zeros(envs, jnp.int32), jnp.zeros(envs), jnp.zeros((envs, 4)),
                         jnp.zeros(envs, bool), jnp.zeros(envs, bool))  # fmt: skip
    rng = np.random.default_rng(0)
    shards = []
    for shard in range(n):
        state = replay_init(example, rows, True)._replace(filled=jnp.int32(rows))
        p = rng.uniform(0.5, 1.5, rows * envs) ** (1 + 6 * shard)  # shard 1: skewed priorities
        shards.append(state._replace(priorities=prioritized.set(state.priorities, jnp.arange(rows * envs), p)))
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *shards)

    def local(state, key):
        state = jax.tree.map(lambda x: x[0], state)
        key = jax.random.fold_in(key, jax.lax.axis_index(parallel.DATA))
        b = sample_batch(state, key, batch, 0.99, 1, beta, axis_name=parallel.DATA)
        return b.weight[None], b.index[None]

    mesh = parallel.make_mesh(parallel.MeshShape(1, n))
    fn = jax.jit(parallel.shard(local, mesh, (P(parallel.DATA), P()), (P(parallel.DATA), P(parallel.DATA))))
    weights, index = map(np.asarray, fn(stacked, jax.random.key(0)))
    raw = []
    for shard in range(n):
        leaves = np.asarray(prioritized.leaves(shards[shard].priorities))[: rows * envs]
        prob = leaves[index[shard]] / leaves.sum()
        raw.append((rows * envs * prob) ** -beta)
    expected = np.stack(raw) / np.max(raw)
    np.testing.assert_allclose(weights, expected, rtol=1e-5)
    per_shard = np.stack([r / r.max() for r in raw])  # what each shard alone would give
    assert not np.allclose(weights, per_shard, rtol=1e-3)


RESUME_RUN = [
    "--total-steps", "2400", "--num-envs", "8", "--num-eval-envs", "4", "--buffer-size", "800",
    "--batch-size", "32", "--learning-starts", "800", "--eval-every", "800", "--widths", "32",
    "--target-update-every", "10", "--num-chunks", "3", "--num-seeds", "4", "--no-progress",
    "--checkpoint-every", "1", "--checkpoint-min-interval", "0", "--keep-checkpoints", "3",
]  # fmt: skip


def saved_state(run_dir, step):
    from purejaxdqn.host import checkpointing
    from purejaxdqn.host import run_directory

    saved = run_directory.read(run_dir)
    return jax.device_get(checkpointing.restore(run_dir, step, runner.abstract_state(saved.config, saved.runs)))


def test_resume_regroups_the_runs_axis_but_keeps_the_data_axis(tmp_path, capsys):
    """4 seeds saved on a 2-device runs axis, resumed from checkpoint 1 of 3 on 1 (its network
    split over a 2-device model axis), 2 and 4 devices: the end state equals the uninterrupted
    run's (bit for bit on the same mesh, within float tolerance on another, whose programs vmap
    other batch sizes). Another data axis is refused in one line."""
    import shutil

    from purejaxdqn import cli
    from purejaxdqn.host import run_directory

    whole = tmp_path / "whole"
    assert cli.main([*RESUME_RUN, "--mesh-runs", "2", "--output-dir", str(whole)]) == 0
    end = saved_state(whole, 3)
    for runs, model in ((2, 1), (1, 2), (4, 1)):
        run_dir = tmp_path / f"on{runs}"
        shutil.copytree(whole, run_dir)
        for step in (2, 3):
            shutil.rmtree(run_dir / run_directory.CHECKPOINT_DIR / str(step))
        assert cli.main(["--resume", str(run_dir), "--mesh-runs", str(runs), "--mesh-model", str(model)]) == 0
        summary = json.loads((run_dir / run_directory.SUMMARY_FILE).read_text())
        assert summary["mesh"] == {"runs": runs, "data": 1, **({"model": model} if model > 1 else {})}
        assert summary["resumed_from_chunk"] == 1
        resumed = saved_state(run_dir, 3)
        np.testing.assert_array_equal(np.asarray(resumed.replay.data.action), np.asarray(end.replay.data.action))
        if runs == 2:
            for a, b in zip(jax.tree.leaves(jax.random.key_data(resumed.key)), jax.tree.leaves(jax.random.key_data(end.key))):
                np.testing.assert_array_equal(a, b)
            assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(
                jax.tree.leaves(resumed.learner), jax.tree.leaves(end.learner)))  # fmt: skip
        assert max_diff(resumed.learner.params, end.learner.params) < 2e-4
        np.testing.assert_allclose(resumed.evals.mean, end.evals.mean, atol=1e-3)
    capsys.readouterr()
    assert cli.main(["--resume", str(tmp_path / "on2"), "--mesh-data", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--mesh-data: the run was made with --mesh-data 1" in err, err


WIDE = SMALL.replace(widths=(32, 32), keep_best=True)


def kernel_shard_shapes(params):
    """Per-device shapes of the hidden kernels of a batch of runs' parameters."""
    layers = params["params"]
    return [layers[f"Dense_{i}"]["kernel"].addressable_shards[0].data.shape for i in range(2)]


# Every runs x data x model mesh with a model axis that fits 8 devices (8 envs; 2 runs, 4 on a
# runs axis of 4).
MODEL_MESHES = [(1, 1, 2), (2, 1, 2), (1, 2, 2), (4, 1, 2), (2, 2, 2), (1, 4, 2), (1, 1, 4), (2, 1, 4), (1, 2, 4), (1, 1, 8)]


@functools.cache
def unsharded_run(base, num_runs):
    """The same runs on the (runs, data) mesh without a model axis (shared by the model sizes)."""
    return runner.train_runs(WIDE, *runner.make_runs(WIDE, num_runs), mesh_shape=parallel.MeshShape(*base))


@pytest.mark.parametrize("runs_,data,model", MODEL_MESHES, ids=["x".join(map(str, m)) for m in MODEL_MESHES])
def test_model_axis_shards_hidden_layers_and_matches_the_unsharded_run(runs_, data, model, tmp_path):
    """--mesh-model: hidden kernels (and Adam moments) are split over the model axis, columns
    then rows, and the run gives the unsharded run's losses, evaluations and parameters (float
    tolerance); its checkpoint restores onto one device."""
    from purejaxdqn.host import checkpointing

    base, num_runs = (runs_, data), max(2, runs_)
    runs = runner.make_runs(WIDE, num_runs)
    plain = unsharded_run(base, num_runs)
    split = runner.train_runs(WIDE, *runs, RunOptions(output_dir=tmp_path / "run"), mesh_shape=parallel.MeshShape(*base, model))
    per_device_runs = num_runs // base[0]
    assert kernel_shard_shapes(split.state.learner.params) == [(per_device_runs, 4, 32 // model), (per_device_runs, 32 // model, 32)]
    adam = [s for s in jax.tree.leaves(split.state.learner.opt_state, is_leaf=lambda s: hasattr(s, "mu")) if hasattr(s, "mu")]
    assert kernel_shard_shapes(adam[0].mu) == kernel_shard_shapes(adam[0].nu) == kernel_shard_shapes(split.state.learner.params)
    assert kernel_shard_shapes(split.state.best.params) == kernel_shard_shapes(split.state.learner.params)
    # the memory check's per-device estimate is what a device really holds (shared counters aside)
    held = sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(split.state))
    estimate = memory.device_state_bytes(runner._one_run_state(WIDE), parallel.MeshShape(*base, model), 2) * per_device_runs
    assert 0 <= estimate - held <= 64 * per_device_runs, (estimate, held)
    assert split.state.learner.params["params"]["Dense_2"]["kernel"].addressable_shards[0].data.shape[1:] == (32, 2)
    assert split.summary["mesh"] == {"runs": base[0], "data": base[1], "model": model}
    np.testing.assert_allclose(jax.device_get(split.state.stats.loss_sum), jax.device_get(plain.state.stats.loss_sum), rtol=1e-3)
    np.testing.assert_allclose(split.eval_mean, plain.eval_mean, atol=1e-3)
    assert max_diff(jax.device_get(split.state.learner.params), jax.device_get(plain.state.learner.params)) < 2e-4
    restored = checkpointing.restore(tmp_path / "run", WIDE.num_chunks, runner.abstract_state(WIDE, runs[0]))
    assert max_diff(jax.device_get(restored.learner), jax.device_get(split.state.learner)) == 0
