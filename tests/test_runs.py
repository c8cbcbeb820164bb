"""Many runs in one compiled program: independent seeds, hyperparameter sweeps, memory check."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxdqn import Config, cli, make_train
from purejaxdqn.host import memory, run_directory, report, runner

# Short enough that a few low-bit differences between vmapped and single programs cannot
# flip a greedy action and fork the trajectory; long enough for ~150 updates.
SHORT = Config(
    total_steps=2000, num_envs=4, num_eval_envs=2, buffer_size=400, batch_size=32,
    learning_starts=500, eval_every=1000, widths=(32,), target_update_every=20, num_chunks=2,
)  # fmt: skip


def assert_close_trees(a, b, atol=2e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-4)


def pick(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


@pytest.fixture(scope="module")
def batch_of_three():
    return runner.train_runs(SHORT, *runner.make_runs(SHORT, num_seeds=3))


def test_seed_k_in_a_batch_matches_the_single_run_of_seed_k(batch_of_three):
    """Run k of a vmapped batch equals the single (unvmapped) run of seed k, within tolerance."""
    single = runner.train_runs(SHORT.replace(seed=2), *runner.make_runs(SHORT.replace(seed=2)))
    batched = batch_of_three.state
    assert batch_of_three.runs[2]["seed"] == 2
    assert_close_trees(pick(batched.learner.params, 2), pick(single.state.learner.params, 0))
    np.testing.assert_array_equal(batched.replay.data.action[2], single.state.replay.data.action[0])
    np.testing.assert_allclose(batch_of_three.eval_mean[2], single.eval_mean[0], atol=1e-4)


def test_seeds_in_a_batch_are_independent(batch_of_three):
    """Each seed has its own network init, env RNG, exploration noise and replay buffer."""
    state = batch_of_three.state
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.array_equal(state.replay.data.obs[i], state.replay.data.obs[j])
            assert not np.array_equal(state.replay.data.action[i], state.replay.data.action[j])
            first_layer = jax.tree.leaves(state.learner.params)[1]
            assert not np.allclose(first_layer[i], first_layer[j])
    keys = jax.random.key_data(state.key)
    assert len({tuple(np.asarray(k).ravel()) for k in keys}) == 3


def test_user_vmap_of_make_train_matches_runner(batch_of_three):
    """`jax.vmap(make_train(config))` over keys is the same program family as the runner's."""
    train = jax.jit(jax.vmap(make_train(SHORT), in_axes=(0, None)))
    keys = jax.vmap(jax.random.key)(jnp.arange(3, dtype=jnp.uint32))
    state = train(keys, SHORT.hparams())
    assert_close_trees(state.learner.params, batch_of_three.state.learner.params)


def test_swept_setting_matches_a_single_run_with_that_setting():
    """A run inside an lr x gamma sweep equals the single run configured with its values."""
    runs, settings = runner.make_runs(SHORT, num_seeds=2, sweep={"lr": [1e-3, 3e-4], "gamma": [0.9, 0.99]})
    assert len(runs) == 8 and len(settings) == 4
    swept = runner.train_runs(SHORT, runs, settings)
    target = next(r for r in runs if r["lr"] == 3e-4 and r["gamma"] == 0.9 and r["seed"] == SHORT.seed + 1)
    alone_config = SHORT.replace(lr=3e-4, gamma=0.9, seed=SHORT.seed + 1)
    alone = runner.train_runs(alone_config, *runner.make_runs(alone_config))
    assert_close_trees(pick(swept.state.learner.params, target["run"]), pick(alone.state.learner.params, 0))
    assert [row["label"] for row in swept.table] == [
        "lr=0.001, gamma=0.9", "lr=0.001, gamma=0.99", "lr=0.0003, gamma=0.9", "lr=0.0003, gamma=0.99",
    ]  # fmt: skip
    assert sum(row["best"] for row in swept.table) == 1


def test_iqm_and_table_against_numpy_reference():
    """IQM drops floor(n/4) values at each end; the table's stats match NumPy on random data."""
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 5, 8, 10, 17):
        x = rng.normal(size=n) * 100
        s = np.sort(x)
        k = n // 4
        assert report.iqm(x) == pytest.approx(s[k : n - k].mean())
    runs, settings = runner.make_runs(SHORT, num_seeds=5, sweep={"lr": [1e-3, 1e-4]})
    evals = rng.uniform(0, 500, size=(len(runs), 6))
    finals = evals[:, -1]
    rows = report.summarize(runs, evals, settings)
    for row, values, last in zip(rows, (finals[:5], finals[5:]), (evals[:5, 3:], evals[5:, 3:])):
        assert row["mean"] == pytest.approx(values.mean()) and row["std"] == pytest.approx(values.std())
        assert row["min"] == values.min() and row["max"] == values.max() and row["seeds"] == 5
        assert report.LAST_K == 3 and row["last_k_mean"] == pytest.approx(last.mean())
    assert report.summarize(runs, evals[:, :2], settings)[0]["last_k_mean"] == pytest.approx(evals[:5, :2].mean())
    assert rows[int(np.argmax([report.iqm(finals[:5]), report.iqm(finals[5:])]))]["best"]
    for row, values in zip(rows, (finals[:5], finals[5:])):
        assert row["se"] == pytest.approx(values.std(ddof=1) / np.sqrt(5)) and row["last_k"] == 3
    assert report.summarize(runs, evals[:, :2], settings)[0]["last_k"] == 2
    assert "last 2: mean of each seed's last 2 evals" in report.format_table(report.summarize(runs, evals[:, :2], settings))


def test_the_sweep_table_stars_a_best_setting_only_when_it_clearly_leads():
    """'*' only when every setting has 2+ seeds and the best mean leads each other's by more than
    2 standard errors of the difference (NumPy's ddof=1 SE); otherwise the last line says why."""
    runs, settings = runner.make_runs(SHORT, num_seeds=4, sweep={"lr": [1e-3, 1e-4]})
    base = np.array([[100.0], [102.0], [98.0], [100.0]])  # mean 100, SE 0.816
    table = lambda a, b: report.format_table(report.summarize(runs, np.concatenate([a, b]), settings))  # noqa: E731
    clear = table(base, base + 2 * np.hypot(0.8165, 0.8165) + 0.1)
    assert clear.count("*") == 2 and clear.splitlines()[2].startswith("* lr=0.0001")
    close = table(base, base + 2 * np.hypot(0.8165, 0.8165) - 0.1)
    assert "*" not in close and "within 2 standard errors" in close.splitlines()[-1]
    one_seed_runs, one_seed_settings = runner.make_runs(SHORT, num_seeds=1, sweep={"lr": [1e-3, 1e-4]})
    single = report.format_table(report.summarize(one_seed_runs, np.array([[0.0], [500.0]]), one_seed_settings))
    assert "*" not in single and "one seed per setting" in single
    alone_runs, alone = runner.make_runs(SHORT, num_seeds=3)
    assert "*" not in report.format_table(report.summarize(alone_runs, np.array([[1.0], [2.0], [9.0]]), alone))


def test_memory_estimate_and_refusal():
    """Replay dominates the per-run estimate; too many runs for the room is refused with numbers."""
    config = SHORT.replace(buffer_size=100_000)
    trainer_state = jax.eval_shape(runner.make_trainer(config).init, jax.random.key(0), config.hparams())
    per_run = memory.state_bytes(trainer_state)
    replay_bytes = memory.state_bytes(trainer_state.replay)
    assert replay_bytes == 100_000 * (2 * 4 * 4 + 4 + 4 + 1 + 1) + 8  # obs+next_obs f32x4, action, reward, 2 flags, counters
    assert replay_bytes / per_run > 0.95
    memory.check(per_run, 10, available=10**12)
    with pytest.raises(memory.OutOfMemoryError, match=r"at most \d+ runs would fit"):
        memory.check(per_run, 1000, available=2 * 2**30)


def test_cli_refuses_runs_that_do_not_fit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 300 * 2**20)
    out = tmp_path / "run"
    assert cli.main(["--num-seeds", "64", "--buffer-size", "1000000", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "64 runs need about" in err and "would fit" in err
    assert not out.exists()


SWEEP_ERRORS = [
    (["--sweep", "widths=64,128"], "experiments/sweep_static.py"),
    (["--sweep", "batch_size=32,64"], "cannot be vmapped"),
    (["--sweep", "num_envs=4,8"], "cannot be vmapped"),
    (["--sweep", "nonsense=1,2"], "unknown setting"),
    (["--sweep", "lr"], "NAME=V1,V2"),
    (["--sweep", "lr=1e-3", "--sweep", "lr=3e-4"], "given twice"),
    (["--sweep", "lr=1e-3,3e-4", "--lr", "1e-3"], "contradicts --lr"),
    (["--sweep", "lr=1e-3,abc"], "--sweep lr"),
    (["--sweep", "lr=1e-3,-1"], "--sweep lr=-1"),
    (["--sweep", "gamma=0.99,1.5"], "--sweep gamma=1.5"),
    (["--num-seeds", "0"], "--num-seeds"),
]


@pytest.mark.parametrize("argv,text", SWEEP_ERRORS, ids=[" ".join(a) for a, _ in SWEEP_ERRORS])
def test_bad_sweeps_one_line_exit_2(argv, text, capsys, monkeypatch):
    monkeypatch.setattr(runner, "prepare", lambda *a, **k: pytest.fail("training started"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and text in err, err


def test_cli_seeds_times_sweep_writes_table_plot_and_per_run_rows(tmp_path, capsys):
    """--num-seeds 2 --sweep lr=a,b: 4 runs in one program, a table, a PNG, rows naming each run."""
    out = tmp_path / "sweep"
    argv = ["--num-seeds", "2", "--sweep", "lr=1e-3,3e-4", "--output-dir", str(out), "--total-steps", "2000",
            "--num-envs", "4", "--learning-starts", "500", "--batch-size", "32", "--buffer-size", "400",
            "--eval-every", "1000", "--num-chunks", "2", "--widths", "16", "--num-eval-envs", "2"]  # fmt: skip
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "4 runs (2 settings x 2 seeds)" in text and "IQM" in text and "lr=0.0003" in text
    assert (out / run_directory.CURVES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = run_directory.read_jsonl(out / run_directory.METRICS_FILE)
    assert len(metrics) == 2 * 4
    assert {(m["lr"], m["seed"]) for m in metrics} == {(1e-3, 0), (1e-3, 1), (3e-4, 0), (3e-4, 1)}
    evals = run_directory.read_jsonl(out / run_directory.EVALS_FILE)
    assert len(evals) == 2 * 4 and all("lr" in e and "run" in e for e in evals)


def test_run_options_drive_the_command_line_checkpoint_options():
    """RunOptions is the one source of the checkpoint cadence: the command line's options, their
    defaults and the cadence saved in config.json all come from its fields."""
    from purejaxdqn import RunOptions
    from purejaxdqn.host.run_options import CADENCE_FIELDS, cadence_defaults

    parser = cli.train_parser()
    for field in CADENCE_FIELDS:
        action = next(a for a in parser._actions if field.metadata["option"] in a.option_strings)
        assert f"(default: {field.default:g})" in action.help
    assert cadence_defaults() == {"every": 1, "min_interval_s": 60.0, "keep": 3}
    options = RunOptions().with_cadence({"every": 4, "min_interval_s": 0.0, "keep": 2})
    assert (options.checkpoint_every, options.checkpoint_min_interval_s, options.keep_checkpoints) == (4, 0.0, 2)
    assert options.cadence() == {"every": 4, "min_interval_s": 0.0, "keep": 2}
    assert not RunOptions().writing and not RunOptions(output_dir=Path("x"), write_outputs=False).writing


def test_keep_best_holds_the_parameters_of_the_best_eval_and_changes_nothing_else():
    """With keep_best, state.best is the online parameters at the highest-mean eval (the first
    of ties), its env step and mean; the run itself (evals, parameters) is bit-identical to the
    same run without it. Evals fall on chunk ends here, so each chunk's end parameters are the
    ones evaluated."""
    from purejaxdqn.algorithm.loop import make_trainer

    config = SHORT.replace(total_steps=3000, eval_every=500, num_chunks=6, keep_best=True)
    trainer = make_trainer(config)
    run_chunk = jax.jit(trainer.run_chunk)
    state = trainer.init(jax.random.key(7), config.hparams())
    params_after = []
    for _ in range(config.num_chunks):
        state = run_chunk(state, config.hparams())
        params_after.append(state.learner.params)
    means = np.asarray(state.evals.mean)
    assert len(means) == 6 and np.isfinite(means).all()
    best = int(np.argmax(means))
    assert float(state.best.mean) == means[best] and int(state.best.step) == int(state.evals.step[best])
    for x, y in zip(jax.tree.leaves(state.best.params), jax.tree.leaves(params_after[best])):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    plain = jax.jit(make_trainer(config.replace(keep_best=False)).train)(jax.random.key(7))
    assert plain.best is None and np.array_equal(np.asarray(plain.evals.mean), means)
    for x, y in zip(jax.tree.leaves(plain.learner.params), jax.tree.leaves(state.learner.params)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
