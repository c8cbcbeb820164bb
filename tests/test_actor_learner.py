"""The actor-learner (host envs): its learner repeats the compiled loop's updates on the same
rows, the rate limiter's counts, the parameter hand-off, and whole runs with their failure
and signal paths."""

from __future__ import annotations

import json

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
    t = config.block_rows
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
    assert config.block_rows == expected


def test_apex_epsilons():
    """Ape-X: eps_i = 0.4^(1 + 7 i / (N - 1)), from 0.4 down to 0.4^8."""
    eps = [ingest_lib.apex_epsilon(i, 8) for i in range(8)]
    np.testing.assert_allclose(eps, [0.4 ** (1 + 7 * i / 7) for i in range(8)])
    assert ingest_lib.apex_epsilon(0, 1) == 0.4


# ---------------------------------------------------------------- host envs of the tests' own
class Countdown:
    """obs = [steps into the episode]; reward 1 per step; the episode ends terminated after
    3 + (its reset seed or the env's draw) % 5 steps, unless a time limit cuts it first."""

    def __init__(self, explode_after: int | None = None):
        import gymnasium

        self.observation_space = gymnasium.spaces.Box(0, 100, (1,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)
        self.explode_after, self.calls, self.t, self.end = explode_after, 0, 0, 3
        self.np_random = np.random.default_rng(0)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.np_random = np.random.default_rng(seed)
        self.t, self.end = 0, 3 + int(self.np_random.integers(0, 5))
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.calls += 1
        if self.explode_after is not None and self.calls > self.explode_after:
            raise RuntimeError("boom: the simulator lost its licence")
        self.t += 1
        return np.array([self.t], np.float32), 1.0, self.t >= self.end, False, {}

    def close(self):
        pass


def _register():
    import gymnasium

    for name, kwargs in (("PureJaxDqnCountdown-v0", {}), ("PureJaxDqnExploding-v0", {"explode_after": 300})):
        if name not in gymnasium.registry:
            gymnasium.register(id=name, entry_point=lambda **kw: _as_env(Countdown(**kw)), max_episode_steps=50, kwargs=kwargs)


def _as_env(countdown):
    import gymnasium

    class Env(gymnasium.Env):
        observation_space, action_space = countdown.observation_space, countdown.action_space

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return countdown.reset(seed=seed, options=options)

        def step(self, action):
            return countdown.step(action)

    return Env()


COUNTDOWN = dict(env_id="gymnasium:PureJaxDqnCountdown-v0", num_envs=4, total_steps=2000, num_chunks=2, eval_every=1000,
                 buffer_size=2000, learning_starts=200, batch_size=32, widths=(16,), num_eval_envs=2, time_limit=5)  # fmt: skip


@pytest.mark.parametrize("loop", ["sync", "async"])
def test_the_stored_transitions_are_the_envs_real_steps(loop):
    """Every stored transition is a real step (obs -> obs + 1: never the reset's jump back to
    0), game overs are terminated, the time limit (5) truncates, and 2 actors' columns each hold
    their own envs' consecutive steps."""
    from purejaxdqn.host import actor_learner

    _register()
    config = Config(**COUNTDOWN, actors=2, host_loop=loop)
    result = actor_learner.prepare(config, [{"run": 0, "seed": 0, "setting": 0}]).train()
    d = jax.device_get(result.state.replay.data)
    obs, next_obs = d.obs[0, ..., 0], d.next_obs[0, ..., 0]  # [rows, envs]
    assert int(result.state.env_steps) == 2000 and obs.shape == (500, 4)
    np.testing.assert_array_equal(next_obs, obs + 1)
    term, trunc = d.terminated[0], d.truncated[0]
    assert not (term & trunc).any() and term.any() and trunc.any()
    np.testing.assert_array_equal(trunc, (next_obs == 5) & ~term)  # the limit, unless the game ended on it
    assert (next_obs[term] <= 7).all()
    ended = term | trunc
    np.testing.assert_array_equal(obs[1:][ended[:-1]], 0)  # after an end: the next episode's first obs
    np.testing.assert_array_equal(obs[1:][~ended[:-1]], next_obs[:-1][~ended[:-1]])  # else the same episode on
    assert result.summary["policy_lag_max"] is not None


@pytest.mark.parametrize("loop", ["sync", "async"])
@pytest.mark.parametrize("rate_limit", ["held", "free"])
def test_the_rate_limiter_holds_the_compiled_loops_update_count(loop, rate_limit):
    """'held': exactly the updates the compiled loop runs for the run's env steps, and the
    actors never more than their queue ahead (the lag bound); 'free': updates run while the
    learner waits, at least one round per block once learning starts (at least one round after each block)."""
    from purejaxdqn.host import actor_learner

    if loop == "sync" and rate_limit == "free":
        pytest.skip("refused (tests/test_bad_inputs.py)")
    _register()
    config = Config(**COUNTDOWN, update_every=2, gradient_steps=3, queue_size=1, host_loop=loop, rate_limit=rate_limit)
    result = actor_learner.prepare(config, [{"run": 0, "seed": 0, "setting": 0}]).train()
    updates = result.summary["updates_per_run"][0]
    held = int(multiples_crossed(0, 2000, 2, 200)) * 3
    rows = config.block_rows
    if rate_limit == "held":
        assert updates == held
        per_block = rows * config.num_envs // 2 * 3
        assert 0 <= result.summary["policy_lag_max"] <= (config.queue_size + 3) * per_block
    else:
        blocks_after_start = (2000 - 200) // (rows * config.num_envs)
        assert updates >= blocks_after_start * ingest_lib.updates_per_train(config)


def test_the_parameter_server_hands_over_the_newest_ready_copy():
    """Published copies are taken in order once ready, never before; the learner's own buffers
    can be deleted (donated) without touching the actors' copy."""
    from purejaxdqn.host.actor_learner import ParameterServer

    device = jax.devices("cpu")[0]
    server = ParameterServer(device, {"w": jax.numpy.zeros(3)}, 0)
    assert server.latest()[1] == 0
    for version in (1, 2, 3):
        own = {"w": jax.numpy.full(3, float(version))}
        server.publish(own, version)
        own["w"].delete()  # what donation does to the learner's buffer
    jax.block_until_ready(server._pending[-1][0])
    params, version = server.latest()
    assert version == 3 and float(params["w"][0]) == 3.0
    server.publish({"w": jax.numpy.full(3, 4.0)}, 4)
    assert server.newest()[1] == 4 and server.latest()[1] == 4


@pytest.mark.parametrize("loop", ["sync", "async"])
def test_an_env_that_raises_ends_the_run_with_one_line(loop, tmp_path, capfd):
    """The env raises in its 301st step: exit status 5, one line naming the actor, the env and
    the error, every thread stopped (no hang), the run directory's earlier chunks intact."""
    import threading

    from purejaxdqn import cli

    _register()
    out, status = tmp_path / "run", []
    argv = ["--env-id", "gymnasium:PureJaxDqnExploding-v0", "--actors", "2", "--host-loop", loop, "--num-envs", "2",
            "--total-steps", "4000", "--num-chunks", "8", "--learning-starts", "200", "--batch-size", "32", "--widths", "16",
            "--eval-every", "500", "--num-eval-envs", "1", "--no-progress", "--output-dir", str(out)]  # fmt: skip
    capfd.readouterr()
    thread = threading.Thread(target=lambda: status.append(cli.main(argv)))
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the run hung"
    err = capfd.readouterr().err.strip().splitlines()
    assert status == [5] and len(err) == 1, err
    assert "actor " in err[0] and "PureJaxDqnExploding-v0" in err[0] and "RuntimeError: boom" in err[0], err[0]
    assert not [t for t in threading.enumerate() if t.name.startswith("purejaxdqn-actor")]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["chunk"] for r in rows] == list(range(len(rows))) and len(rows) < 8


@pytest.mark.parametrize("sig,status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_stops_every_thread_keeps_the_chunk_and_resumes(sig, status, tmp_path):
    """SIGINT/SIGTERM: the chunk in flight finishes and is saved, every thread stops, one line
    and the documented status; `--resume` continues (the learner's state from the checkpoint,
    the actors' envs afresh) and logs every chunk exactly once."""
    import signal
    import subprocess
    import sys
    import time

    from purejaxdqn import cli
    from purejaxdqn.host import checkpointing

    out = tmp_path / "run"
    argv = ["--env-id", "gymnasium:CartPole-v1", "--actors", "2", "--total-steps", "100000", "--num-chunks", "50",
            "--eval-every", "10000", "--learning-starts", "1000", "--widths", "16", "--no-progress", "--output-dir", str(out)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "purejaxdqn.train", *argv], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    metrics, deadline = out / "metrics.jsonl", time.time() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status and len(err.strip().splitlines()) == 1, err[-2000:]
    saved = checkpointing.latest_step(out)
    assert f"checkpoint {saved} (after chunk {saved}) is intact" in err and 2 <= saved < 50
    chunks = lambda: [json.loads(line)["chunk"] for line in metrics.read_text().splitlines()]  # noqa: E731
    assert chunks() == list(range(saved))
    assert cli.main(["--resume", str(out)]) == 0
    assert chunks() == list(range(50))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_chunk"] == saved and summary["updates_per_run"][0] == int(multiples_crossed(0, 100000, 10, 1000))


def test_a_host_run_from_the_command_line_has_every_output(tmp_path, capfd):
    """`--env-id gymnasium:CartPole-v1 --actors 2`: the run directory of any run (config,
    metrics with the policy lag, every eval, summary, curves, TensorBoard), and the evaluate
    command and load_policy read it."""
    from purejaxdqn import cli, evaluate, load_policy
    from purejaxdqn.algorithm.loop import num_evals
    from tiny import HOST_TINY

    out = tmp_path / "run"
    assert cli.main([*HOST_TINY, "--log", "tensorboard", "--output-dir", str(out)]) == 0
    printed = capfd.readouterr().out
    assert "actor-learner: 2 actors (async, rate limit held), policy lag" in printed
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["chunk"] for r in rows] == [0, 1, 2] and all(r["policy_lag_mean"] >= 0 for r in rows)
    evals = (out / "evals.jsonl").read_text().splitlines()
    summary = json.loads((out / "summary.json").read_text())
    assert len(evals) == num_evals(Config(**{**SMALL, "total_steps": 3000, "eval_every": 1000}))
    assert summary["loop"] == "actor-learner" and summary["actors"] == 2 and summary["env_steps_per_run"] == 3000
    assert (out / "curves.png").stat().st_size > 0 and list((out / "tensorboard").rglob("events.*"))
    assert evaluate.main([str(out), "--episodes", "4"]) == 0
    assert "gymnasium:CartPole-v1: 4 epsilon-greedy episodes" in capfd.readouterr().out
    policy = load_policy(out)
    assert policy.play(3).shape == (3,) and policy(np.zeros(4, np.float32)) in (0, 1)


def test_atari_trains_on_the_host(tmp_path):
    """gymnasium:ALE/Breakout-v5 through ale-py's vector env: uint8 4x84x84 stacks stored as
    they come, a tiny run end to end (the MLP torso)."""
    pytest.importorskip("ale_py")
    from purejaxdqn.host import actor_learner

    config = Config(env_id="gymnasium:ALE/Breakout-v5", num_envs=2, total_steps=400, num_chunks=1, eval_every=400,
                    buffer_size=400, learning_starts=100, batch_size=16, widths=(16,), num_eval_envs=1, time_limit=100)  # fmt: skip
    result = actor_learner.train_on_host(config)
    data = result.state.replay.data
    assert data.obs.dtype == np.uint8 and data.obs.shape[-3:] == (4, 84, 84)
    assert result.summary["updates_per_run"][0] == int(multiples_crossed(0, 400, 10, 100))


def test_actor_priorities_are_the_td_errors_of_their_network():
    """--actor-priorities: each new row enters the sum tree at (|TD| + eps)^alpha, |TD| under
    the actor's network (it picks and rates the bootstrap; terminals bootstrap nothing), against
    NumPy on random transitions."""
    from purejaxdqn.algorithm import prioritized
    from purejaxdqn.algorithm.networks import make_network
    from purejaxdqn.envs import EnvSpec

    config = Config(**{**SMALL, "env_id": "gymnasium:CartPole-v1", "prioritized": True, "actor_priorities": True,
                       "priority_alpha": 0.6, "learning_starts": 1000})  # fmt: skip
    spec = EnvSpec(2, (4,), np.float32, 500)
    program, hp = ingest_lib.make_program(config, spec), config.hparams()
    state = program.init(jax.random.key(0), hp)
    rng, t, e = np.random.default_rng(1), config.block_rows, config.num_envs
    block = Transition(rng.normal(size=(t, e, 4)).astype(np.float32), rng.integers(0, 2, (t, e)).astype(np.int32),
                       rng.normal(size=(t, e)).astype(np.float32), rng.normal(size=(t, e, 4)).astype(np.float32),
                       rng.random((t, e)) < 0.3, np.zeros((t, e), bool))  # fmt: skip
    td = np.asarray(program.actor_td(state.learner.params, block, hp.gamma))
    apply = make_network(config, 2).apply
    q = np.asarray(apply(state.learner.params, block.obs.reshape(-1, 4))).reshape(t, e, 2)
    q_next = np.asarray(apply(state.learner.params, block.next_obs.reshape(-1, 4))).reshape(t, e, 2)
    target = block.reward + 0.99 * (1 - block.terminated) * q_next.max(-1)
    expected = np.abs(np.take_along_axis(q, block.action[..., None], -1)[..., 0] - target)
    np.testing.assert_allclose(td, expected, rtol=1e-5, atol=1e-6)
    state = jax.jit(program.ingest)(state, block, hp, td)  # learning_starts not reached: no update moves them
    leaves = np.asarray(prioritized.get(state.replay.priorities, np.arange(t * e)))
    np.testing.assert_allclose(leaves, ((expected + config.priority_eps) ** 0.6).ravel(), rtol=1e-5)
