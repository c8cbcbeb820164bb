"""The static chunk (config.loop 'static'): its schedule replays exactly the env steps, update
rounds and evaluations of the per-step rule, and the trainer built on it computes bit for bit
what the branching step computes (masked warm-up rounds included)."""

from __future__ import annotations

import random

import jax
import numpy as np
import pytest

from purejaxdqn.algorithm.loop import make_trainer
from purejaxdqn.config import (
    PRESETS,
    Config,
    ConfigError,
    from_preset,
    schedule,
    validate,
)


def expand(plan: schedule.Schedule) -> list[tuple[int, bool]]:
    """A schedule back to per-env-step (update rounds, evaluates) events, by plain loops."""
    events = []
    for repeats, blocks in plan.runs:
        for _ in range(repeats):
            for block in blocks:
                for n, pattern in block.runs:
                    for _ in range(n):
                        for seg in pattern:
                            events += [(0, False)] * (seg.steps - 1) + [(seg.rounds, False)]
                if block.has_eval:
                    events[-1] = (events[-1][0], True)
    return events


def per_step_rule(num_envs, iterations, update_every, eval_every):
    """The branching step's rule, written out: step i covers env steps (i*E, (i+1)*E]."""
    out = []
    for i in range(iterations):
        lo, hi = i * num_envs, (i + 1) * num_envs
        rounds = sum(1 for s in range(lo + 1, hi + 1) if s % update_every == 0)
        out.append((rounds, any(s % eval_every == 0 for s in range(lo + 1, hi + 1))))
    return out


def test_the_schedule_replays_the_per_step_rule_on_random_settings():
    rng = random.Random(0)
    checked = 0
    while checked < 300:
        envs, upd = rng.randint(1, 24), rng.randint(1, 40)
        ev = envs * rng.randint(1, 6) + rng.randint(0, envs)
        iters = rng.randint(1, 300)
        plan = schedule.static_schedule(envs, iters, upd, ev)
        steps = envs * iters
        if steps % upd or (steps % ev and ev % steps):
            assert plan is None
            continue
        assert plan is None or plan.eval_at_end == (steps % ev != 0)
        if plan is None:  # divisible, but over MAX_SEGMENTS distinct segments
            assert len(set(per_step_rule(envs, iters, upd, ev))) > 1
            continue
        assert expand(plan) == per_step_rule(envs, iters, upd, ev), (envs, iters, upd, ev)
        assert plan.num_segments <= schedule.MAX_SEGMENTS
        checked += 1


def test_compress_round_trips_and_prefers_the_shortest_pattern():
    rng = random.Random(1)
    for _ in range(200):
        seq = [rng.choice("ab") for _ in range(rng.randint(1, 12))] * rng.randint(1, 5)
        runs = schedule.compress(seq)
        assert [x for n, pattern in runs for _ in range(n) for x in pattern] == seq
    assert schedule.compress(["a"] * 7) == ((7, ("a",)),)
    assert schedule.compress(["a", "b"] * 3 + ["a"]) == ((3, ("a", "b")), (1, ("a",)))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_compiles_the_static_chunk(name):
    config = from_preset(name)
    assert schedule.uses_static_loop(config), schedule.why_not_static(config)


def test_loop_static_is_refused_in_one_line_where_chunks_differ():
    config = from_preset("reference").replace(num_chunks=7)  # 7143 iterations: not whole eval intervals
    assert not schedule.uses_static_loop(config)
    validate(config)  # 'auto' falls back to the branching step
    with pytest.raises(ConfigError) as err:
        validate(config.replace(loop="static"))
    assert err.value.option == "--loop" and "--eval-every 25000" in err.value.message
    with pytest.raises(ConfigError, match="--unroll"):
        validate(config.replace(unroll=-1))


def _leaves(state):
    return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
            for x in jax.tree.leaves(state)]  # fmt: skip


def _chunked(config: Config, key=3):
    trainer = make_trainer(config)
    hp = config.hparams()
    state, step = jax.jit(trainer.init)(jax.random.key(key), hp), jax.jit(trainer.run_chunk)
    for _ in range(config.num_chunks):
        state = step(state, hp)
    return state


BASE = Config(total_steps=4000, num_chunks=4, eval_every=500, learning_starts=300, buffer_size=1000, widths=(16,),
              num_eval_envs=2)  # fmt: skip
SCHEDULES = {  # one per kind of schedule: 1 round per step, several, 2-3 alternating, rounds every 1-2 steps
    "one-round-per-step": BASE,
    "4-per-round-alternating": BASE.replace(update_every=4, gradient_steps=4),
    "rounds-every-1-or-2-steps": BASE.replace(update_every=16, gradient_steps=8, total_steps=4800, eval_every=600),
    "8-rounds-per-step": BASE.replace(num_envs=8, update_every=1, total_steps=3200, eval_every=400, learning_starts=301),
    "prioritized-3-step-best": BASE.replace(prioritized=True, n_step=3, keep_best=True, learning_starts=305),
    "c51-two-evals-per-chunk": BASE.replace(distributional=True, update_every=3, total_steps=3000, num_chunks=2),
    # chunks shorter than an eval interval: the eval after every other chunk, and at the run's end
    "eval-after-every-other-chunk": BASE.replace(eval_every=2000),
    "eval-after-chunk-2-and-the-end": BASE.replace(total_steps=3000, num_chunks=3, eval_every=2000, keep_best=True),
    # learning_starts past the first chunk (1000 env steps): it runs without updates, the next one masks some
    "warm-up-chunk": BASE.replace(learning_starts=1300),
    "warm-up-chunk-prioritized-short-chunks": BASE.replace(learning_starts=1100, prioritized=True, eval_every=2000),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_static_and_branching_chunks_are_bit_identical(name):
    """The whole state after every chunk: learner, replay, priorities, evals, stats, keys."""
    config = SCHEDULES[name]
    static = _chunked(config.replace(loop="static", unroll=1))  # unrolled, XLA may round differently
    branching = _chunked(config.replace(loop="branching"))
    assert int(static.learner.updates) > 0 and np.isfinite(np.asarray(static.evals.mean)).all()
    for a, b in zip(_leaves(static), _leaves(branching), strict=True):
        np.testing.assert_array_equal(a, b)


def test_unroll_computes_the_same_run_and_one_whole_run_the_same_bits():
    """Unrolling changes no step of the schedule (counters, transitions, eval steps equal;
    parameters to float rounding: XLA may fuse the unrolled body differently); `train` in one
    scan gives the chunked run's bits."""
    config = SCHEDULES["4-per-round-alternating"].replace(loop="static", unroll=1)
    chunked = _chunked(config)
    unrolled = _chunked(config.replace(unroll=3))
    whole = jax.jit(make_trainer(config).train)(jax.random.key(3))
    assert int(chunked.learner.updates) == int(unrolled.learner.updates) > 0
    np.testing.assert_array_equal(chunked.evals.step, unrolled.evals.step)
    np.testing.assert_array_equal(chunked.replay.data.obs[:20], unrolled.replay.data.obs[:20])
    for a, b in zip(jax.tree.leaves(chunked.learner.params), jax.tree.leaves(unrolled.learner.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(_leaves(chunked._replace(stats=None)), _leaves(whole._replace(stats=None)), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name, starts", [("4-per-round-alternating", (300, 301, 777)), ("warm-up-chunk", (1300, 300, 2500))])
def test_swept_learning_starts_masks_the_same_rounds_as_the_branching_step(name, starts):
    """learning_starts is traced: vmapped over three values, each run matches its own branching
    run (with a warm-up chunk compiled, its branch taken per run under vmap)."""
    config = SCHEDULES[name]
    starts = np.array(starts, np.int32)

    def runs(loop):
        c = config.replace(loop=loop, unroll=1)
        trainer = make_trainer(c)
        hp = jax.vmap(lambda s: c.hparams()._replace(learning_starts=s))(starts)
        keys = jax.vmap(lambda _: jax.random.key(3))(starts)
        state = jax.jit(jax.vmap(trainer.init))(keys, hp)
        step = jax.jit(jax.vmap(trainer.run_chunk))
        for _ in range(c.num_chunks):
            state = step(state, hp)
        return state

    static, branching = runs("static"), runs("branching")
    assert len(set(np.asarray(static.learner.updates).tolist())) == 3
    for a, b in zip(_leaves(static), _leaves(branching), strict=True):
        np.testing.assert_array_equal(a, b)


def test_where_the_two_programs_round_differently_they_still_agree_to_float_rounding():
    """7 envs, rounds every 1-2 steps, a target period of 7: here XLA compiles the two layouts'
    arithmetic differently (last-bit differences in the parameters), but the schedule is the
    same: every counter, transition and eval step is equal, and parameters agree to ~1e-5."""
    config = Config(total_steps=4200, num_envs=7, num_eval_envs=3, buffer_size=700, batch_size=32,
                    learning_starts=350, eval_every=700, widths=(32,), target_update_every=7,
                    eps_decay_steps=2000, num_chunks=1)  # fmt: skip
    static = jax.jit(make_trainer(config.replace(loop="static", unroll=1)).train)(jax.random.key(0))
    branching = jax.jit(make_trainer(config.replace(loop="branching")).train)(jax.random.key(0))
    assert int(static.learner.updates) == int(branching.learner.updates) == 4200 // 10 - 350 // 10 + 1
    np.testing.assert_array_equal(static.evals.step, branching.evals.step)
    np.testing.assert_array_equal(static.replay.data.obs[:50], branching.replay.data.obs[:50])  # the first env steps
    for a, b in zip(jax.tree.leaves(static.learner.params), jax.tree.leaves(branching.learner.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_the_default_unroll_is_the_backends_for_one_run_per_device_and_1_for_several():
    from purejaxdqn.algorithm import loop

    config = from_preset("reference")
    one = loop.DEFAULT_UNROLL.get(jax.default_backend(), 1)
    assert loop.layout(config) == {"loop": "static", "unroll": one}
    assert loop.layout(config, runs_per_device=4) == {"loop": "static", "unroll": 1}
    assert loop.layout(config.replace(unroll=3), runs_per_device=4)["unroll"] == 3  # the user's own stays
    assert loop.layout(config.replace(loop="branching"))["unroll"] == 1
