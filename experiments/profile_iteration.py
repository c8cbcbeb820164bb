"""Where one training iteration's time goes, on this machine.

One iteration = one vectorized env step of all envs (+ the updates it triggers). Each part is
timed alone as a jitted `lax.scan` of N iterations built from the project's own functions
(acting, env step, replay write, sampling, learner update, target update, evaluation, RNG),
min over --repeats, alongside the whole iteration with and without updates. It also counts
the XLA ops of the compiled chunk. With --ab-threefry it times the whole iteration under JAX's
own CPU lowering of its RNG (threefry as a rolled 5-round loop per random call) and under the
unrolled lowering JAX uses on GPUs (same bits): an experiment that reaches into JAX internals.

    python experiments/profile_iteration.py                       # the reference workload
    python experiments/profile_iteration.py --preset cartpole --ab-threefry
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import jax
import jax.numpy as jnp

from purejaxdqn.algorithm import learner as learner_lib
from purejaxdqn.config import from_preset
from purejaxdqn.algorithm.loop import make_trainer
from purejaxdqn.algorithm.schedules import linear_epsilon
from timing import best_seconds

from loop_structure import opcode  # this folder's script (run as `python experiments/...`)


def time_scan(body, carry, n: int, repeats: int) -> float:
    """Seconds per iteration of `lax.scan(body)` over n iterations (compile excluded; min)."""
    fn = jax.jit(lambda c: jax.lax.scan(lambda c, _: (body(c), None), c, None, length=n)[0])
    return _time_compiled(fn.lower(carry).compile(), carry, n, repeats)


def op_counts(compiled) -> dict:
    """Instructions of the optimized HLO by opcode (all computations, loop bodies included)."""
    ops = collections.Counter(op for line in compiled.as_text().splitlines() if (op := opcode(line)))
    return {"hlo_ops": sum(ops.values()), "fusions": ops["fusion"], "while_loops": ops["while"], "dots": ops["dot"]}


def chunk_program(config, hp, n: int, learning: bool):
    """The real chunk (`make_trainer(...).run_chunk`) of n iterations, started past
    learning_starts with a full-enough buffer, or with updates switched off."""
    # learning_starts is traced (taken from `hp`); the static copy only has to pass validation
    c = config.replace(total_steps=n * config.num_envs, num_chunks=1, eval_every=10**9,
                       learning_starts=config.batch_size)  # fmt: skip
    trainer = make_trainer(c)
    hp = hp if learning else hp._replace(learning_starts=jnp.int32(2**30))
    state = jax.jit(trainer.init)(jax.random.key(0), hp)
    state = state._replace(
        env_steps=jnp.int32(config.learning_starts), replay=state.replay._replace(filled=jnp.int32(c.buffer_rows))
    )  # fmt: skip
    return jax.jit(lambda s: trainer.run_chunk(s, hp)), state


def profile(config, n: int, repeats: int) -> dict:
    hp = config.hparams()
    trainer = make_trainer(config)
    venv, apply_fn = trainer.venv, trainer.network.apply
    state = jax.jit(trainer.init)(jax.random.key(0), hp)
    state = state._replace(replay=state.replay._replace(filled=jnp.int32(config.buffer_rows)))
    from purejaxdqn.algorithm import replay as replay_lib

    replay = replay_lib.make_replay(config.buffer_rows, config.batch_size, config.n_step, config.prioritized,
                                    config.priority_eps, config.actual_total_steps)  # fmt: skip
    update = learner_lib.make_update(apply_fn, config)
    gradients = learner_lib.make_gradients(apply_fn, config)
    batch = replay.sample(state.replay, jax.random.key(1), hp, jnp.int32(config.learning_starts))
    us = {}

    def rng(c):  # the iteration's own key splits
        return jax.random.split(c, 6)[0]

    us["rng splits (6 keys)"] = time_scan(rng, state.key, n, repeats)

    def act(c):
        obs, key = c
        key, k1, k2 = jax.random.split(key, 3)
        eps = linear_epsilon(jnp.int32(5000), hp.eps_start, hp.eps_end, hp.eps_decay_steps)
        greedy = jnp.argmax(apply_fn(state.learner.params, obs), axis=-1)
        explore = jax.random.uniform(k1, greedy.shape) < eps
        action = jnp.where(explore, jax.random.randint(k2, greedy.shape, 0, venv.num_actions), greedy)
        return obs + 1e-6 * action[:, None].astype(obs.dtype), key

    us["act (forward + epsilon-greedy)"] = time_scan(act, (state.obs, state.key), n, repeats)

    def env_step(c):
        env_state, key = c
        key, k1, k2 = jax.random.split(key, 3)
        action = jax.random.randint(k1, (venv.num_envs,), 0, venv.num_actions)
        return venv.step(k2, env_state, action).env_state, key

    us["env step (incl. its RNG)"] = time_scan(env_step, (state.env_state, state.key), n, repeats)
    row = replay_lib.Transition(state.obs, jnp.zeros(venv.num_envs, jnp.int32), jnp.ones(venv.num_envs),
                                state.obs, jnp.zeros(venv.num_envs, bool), jnp.zeros(venv.num_envs, bool))  # fmt: skip
    us["replay write"] = time_scan(lambda r: replay.add(r, row), state.replay, n, repeats)

    def sample(c):
        r, key = c
        key, k = jax.random.split(key)
        b = replay.sample(r, k, hp, jnp.int32(config.learning_starts))
        return r._replace(row=r.row + (b.reward.sum() > 1e30).astype(jnp.int32)), key

    us["replay sample (incl. its RNG)"] = time_scan(sample, (state.replay, state.key), n, repeats)

    def grads_only(learner):
        # The target net changes each step, so XLA cannot hoist its forward pass out of the loop:
        # the factor must differ from 1 in float32 (1 - 1e-9 rounds to 1.0, XLA then drops the
        # multiply and hoists the target forward; rows timed that way before 2026-12-04 lack it).
        loss, q_mean, signal, grads = gradients(learner, batch, hp)
        return learner._replace(
            params=jax.tree.map(lambda p, g: p - 1e-9 * g, learner.params, grads),
            target_params=jax.tree.map(lambda t: t * (1 - 2**-20), learner.target_params),
        )

    us["gradients (forward x2 + backward)"] = time_scan(grads_only, state.learner, n, repeats)
    us["update (gradients + Adam + target)"] = time_scan(lambda l: update(l, batch, hp)[0], state.learner, n, repeats)
    evaluate = jax.jit(trainer_eval(trainer, config))
    evaluate(state.learner.params, jax.random.key(0))[0].block_until_ready()
    t0 = time.perf_counter()
    for i in range(repeats):
        jax.block_until_ready(evaluate(state.learner.params, jax.random.key(i)))
    per_eval = (time.perf_counter() - t0) / repeats
    us["eval (amortized per iteration)"] = per_eval / (config.eval_every / config.num_envs)

    full, full_state = chunk_program(config, hp, n, learning=True)
    no_upd, no_upd_state = chunk_program(config, hp, n, learning=False)
    compiled = full.lower(full_state).compile()
    us["WHOLE iteration (one update per step)"] = _time_compiled(compiled, full_state, n, repeats)
    compiled_no = no_upd.lower(no_upd_state).compile()
    us["WHOLE iteration without updates"] = _time_compiled(compiled_no, no_upd_state, n, repeats)
    return {"us_per_iteration": {k: round(v * 1e6, 2) for k, v in us.items()}, **op_counts(compiled),
            "eval_s_each": round(per_eval, 4)}  # fmt: skip


def trainer_eval(trainer, config):
    from purejaxdqn.algorithm.evaluation import make_evaluate

    return make_evaluate(trainer.network.apply, trainer.venv, config.num_eval_envs)


def _time_compiled(compiled, state, n, repeats) -> float:
    """Seconds per iteration of a compiled n-iteration program (after one warm-up call; min)."""
    return best_seconds(compiled, state, repeats=repeats) / n


def ab_threefry(config, n: int, repeats: int) -> dict:
    """The whole iteration with threefry lowered rolled (JAX's CPU default) and unrolled,
    timed alternately, with compile times; also checks both give the same final state."""
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32 as threefry

    rules = {"rolled": threefry._threefry2x32_cpu_lowering_rule, "unrolled": threefry._threefry2x32_lowering_rule}
    hp = config.hparams()
    built, compile_s = {}, {}
    try:
        for name, rule in rules.items():
            fn, state = chunk_program(config, hp, n, learning=True)
            mlir.register_lowering(threefry.threefry2x32_p, rule, platform="cpu")
            t0 = time.perf_counter()
            compiled = fn.lower(state).compile()
            compile_s[name] = time.perf_counter() - t0
            built[name] = (compiled, state, op_counts(compiled)["while_loops"])
    finally:
        mlir.register_lowering(threefry.threefry2x32_p, rules["rolled"], platform="cpu")
    best, outs = {name: float("inf") for name in built}, {}
    for _ in range(repeats):
        for name, (compiled, state, _) in built.items():
            t0 = time.perf_counter()
            outs[name] = jax.block_until_ready(compiled(state))
            best[name] = min(best[name], time.perf_counter() - t0)
    same = all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(outs["rolled"].learner),
                                                           jax.tree.leaves(outs["unrolled"].learner)))  # fmt: skip
    return {
        **{f"{k}_us": round(v / n * 1e6, 2) for k, v in best.items()},
        **{f"{k}_compile_s": round(v, 2) for k, v in compile_s.items()},
        **{f"{k}_while_loops": v[2] for k, v in built.items()},
        "same_result": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="reference")
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ab-threefry", action="store_true", help="also compare the RNG lowerings (A/B)")
    args = parser.parse_args()
    config = from_preset(args.preset)
    print(f"backend {jax.default_backend()}, {jax.devices()[0].device_kind}; preset {args.preset}: "
          f"{config.num_envs} envs, batch {config.batch_size}, widths {config.widths}, double {config.double_dqn}, "
          f"clip {config.max_grad_norm}; {args.iterations} iterations, min of {args.repeats}")  # fmt: skip
    report = profile(config, args.iterations, args.repeats)
    for part, us in report["us_per_iteration"].items():
        print(f"  {part:40s} {us:8.2f} us")
    print(f"  compiled chunk: {report['hlo_ops']} HLO ops, {report['fusions']} fusions, "
          f"{report['while_loops']} while loops, {report['dots']} dots")  # fmt: skip
    if args.ab_threefry:
        report["threefry"] = ab_threefry(config, args.iterations, args.repeats)
        print(f"  threefry A/B: {report['threefry']}")
    print(json.dumps({"preset": args.preset, **report}))


if __name__ == "__main__":
    main()
