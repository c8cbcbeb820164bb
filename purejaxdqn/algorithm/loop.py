"""The training loop: collect -> store -> sample -> update -> target update, as one `lax.scan`.

`make_trainer(config)` closes over the static settings and returns pure functions of
`(key, hparams)` / `(state, hparams)`:

- `train(key, hparams)`: the whole run in one scan; jit it, vmap it over keys and hparams.
- `init(key, hparams)` and `run_chunk(state, hparams)`: the same run cut into
  `config.num_chunks` equal scans, so a host loop can log between them. Chunking never changes
  the result: the chunk boundary only resets the per-chunk statistics.

Each vectorized env step of all `num_envs` envs, top to bottom:
  1. act epsilon-greedily on the current observations,
  2. step the envs and write the transition row to replay (next_obs = final observation),
  3. run the gradient updates whose env-step boundary this step crossed,
  4. evaluate greedily when an eval boundary was crossed (and at the very end).

Two layouts of the same algorithm (`config.loop`), bit-identical in what they compute:
- *static*: the chunk is straight-line scans fixed at compile time (config/schedule.py):
  segments of env steps, each followed by its update rounds, and evaluations between them.
  No `lax.cond` and no loop with a traced trip count runs per env step (on a GPU each would
  copy a predicate to the host and wait); chunks shorter than an eval interval end in one
  `lax.cond` for the evaluation that may be due. Update rounds before the traced
  `learning_starts` are computed and masked out.
- *branching*: one scan iteration per env step, deciding 3. and 4. with `lax.cond` (or a
  loop of traced length); for chunks whose layouts differ (config/schedule.py), and as the
  A/B baseline.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.algorithm import acting, frame_replay
from purejaxdqn.algorithm import learner as learner_lib
from purejaxdqn.algorithm import replay as replay_lib
from purejaxdqn.algorithm.updates import ChunkStats, make_updates, window_add
from purejaxdqn.algorithm.evaluation import make_evaluate
from purejaxdqn.algorithm.networks import QNetwork, make_network
from purejaxdqn.algorithm.schedules import linear_epsilon, multiples_crossed
from purejaxdqn.config import Config, ConfigError, HParams, check_hparams
from purejaxdqn.config import schedule as schedule_lib
from purejaxdqn.envs import VecEnv, env_from_config, is_host_id


class EvalLog(NamedTuple):
    """Every evaluation of the run, in order; slot i is filled at eval i."""

    step: jax.Array  # [num_evals] int32 env step of each eval
    mean: jax.Array  # [num_evals] mean eval return
    min: jax.Array  # [num_evals] min eval return


class BestParams(NamedTuple):
    """With `keep_best`: the online parameters at the best evaluation so far (highest mean
    return; the earliest of ties) and when that was."""

    params: Any
    step: jax.Array  # int32 env step of that evaluation (0: none yet)
    mean: jax.Array  # its mean return (-inf: none yet)


class TrainState(NamedTuple):
    """Everything a run is. `env_steps` is shared by runs vmapped together; the rest is per run."""

    env_steps: jax.Array  # int32 scalar: env steps taken (summed over envs)
    learner: learner_lib.LearnerState
    replay: replay_lib.ReplayState
    env_state: Any
    obs: jax.Array  # [num_envs, ...] observations to act on next
    key: jax.Array
    episode_return: jax.Array  # [num_envs] return of each env's running episode
    episode_length: jax.Array  # [num_envs] int32
    stats: ChunkStats
    evals: EvalLog
    best: BestParams | None = None  # only with config.keep_best


def run_axes(state: TrainState) -> TrainState:
    """vmap axes for a batch of runs: per-run leaves on axis 0; the counters every run shares
    (`env_steps`, the replay write pointer and fill level) unbatched.

    Unbatched counters keep the eval `lax.cond` a real branch and replay writes a
    `dynamic_update_slice` (not a scatter) under vmap.
    """
    axes = jax.tree.map(lambda _: 0, state)
    return axes._replace(env_steps=None, replay=axes.replay._replace(row=None, filled=None))


class StepKeys(NamedTuple):
    """What one env step leaves for the updates and the evaluation after it."""

    before: jax.Array  # int32: env steps before it
    update_key: jax.Array
    eval_key: jax.Array


# The static chunk's loop unroll (`config.unroll` 0) per backend for one run per device, as
# measured (BENCHMARKS.md, "#19: the static chunk"): on the 2-core CPU unroll 2 ran the reference
# workload ~20% faster than 1 (4 costs more than it gains), but 4 vmapped runs per device ~10%
# slower ("The 8-seed ratio on 2026-12-04"), so several runs per device get 1. A backend not
# measured yet (the GPU: gpu_suite.py's loop items decide it) gets 1.
DEFAULT_UNROLL = {"cpu": 2}


def layout(config: Config, runs_per_device: int = 1) -> dict:
    """The loop layout `config` compiles on this backend for `runs_per_device` vmapped runs:
    'static' or 'branching', and the static chunk's unroll (`config.unroll`, or the default)."""
    static = schedule_lib.uses_static_loop(config)
    default = DEFAULT_UNROLL.get(jax.default_backend(), 1) if runs_per_device == 1 else 1
    return {"loop": "static" if static else "branching", "unroll": (config.unroll or default) if static else 1}


def repeat(f: Callable, carry, n: int, *, unroll: int = 1, indexed: bool = False):
    """`carry = f(carry)` `n` times (`f(carry, i)` with `indexed`): a call where n is 1 (no
    loop at all), else a `lax.scan` of static length."""
    if n == 0:
        return carry
    if n == 1:
        return f(carry, jnp.int32(0)) if indexed else f(carry)
    body = (lambda x, i: (f(x, i), None)) if indexed else (lambda x, _: (f(x), None))
    xs = jnp.arange(n, dtype=jnp.int32) if indexed else None
    return jax.lax.scan(body, carry, xs, length=n, unroll=min(unroll, n))[0]


class Trainer(NamedTuple):
    config: Config
    venv: VecEnv
    network: QNetwork
    init: Callable[[jax.Array, HParams], TrainState]
    run_chunk: Callable[[TrainState, HParams], TrainState]
    train: Callable[..., TrainState]
    restart_envs: Callable[[TrainState], TrainState]

    @property
    def num_evals(self) -> int:
        return num_evals(self.config)


def num_evals(config: Config) -> int:
    """Eval points of a run: one per `eval_every` boundary crossed, plus one at the end unless
    the last vectorized step itself crosses a boundary (then that eval is the final one)."""
    total, every = config.actual_total_steps, config.eval_every
    last_step_crosses = total // every > (total - config.num_envs) // every
    return total // every + (not last_step_crosses)


def stored_row(config: Config, obs: jax.Array, action: jax.Array, res) -> tuple[replay_lib.Transition, jax.Array | None]:
    """The row replay stores of a step from `obs` (`res`: its StepResult), and whether it is a
    transition at all (None: every one is). What replay learns from, not what the stats count:
    rewards clipped to their sign with `clip_rewards`, a lost life the TD target's end with
    `episodic_life`, and an ALE reset step (an ended env's restart, its action ignored) no
    transition."""
    reward = jnp.sign(res.reward) if config.clip_rewards else res.reward
    terminated = res.terminated | res.life_lost if config.episodic_life else res.terminated
    row = replay_lib.Transition(obs, action, reward, res.next_obs, terminated, res.truncated & ~terminated)
    return row, None if res.reset_step is None else ~res.reset_step


def make_trainer(config: Config, data_axis: str | None = None, data_size: int = 1, model_parallel: bool = False,
                 runs_per_device: int = 1) -> Trainer:  # fmt: skip
    """Build the pure init/chunk/train functions for the static settings in `config`.

    With `data_axis` (a mesh axis of size `data_size`, inside `jax.shard_map`) one run is
    split data-parallel: each device steps `num_envs / data_size` envs, keeps its own replay
    shard, samples `batch_size / data_size` transitions and gradients are averaged across the
    axis, so parameters, optimizer state and target network stay identical on every replica.
    Counters and statistics stay global. With `model_parallel` (inside a shard_map whose
    "model" axis is automatic) the learner's hidden layers are kept split over that axis
    (`parallel.tensor_parallel`); the values computed are the same. `runs_per_device`: how many
    runs the caller vmaps on each device (it picks the default unroll, `layout`).
    """
    from purejaxdqn.algorithm.parallel import tensor_parallel
    from purejaxdqn.config import validate

    validate(config)  # the Python API refuses bad settings like the command line does
    if is_host_id(config.env_id):
        raise ConfigError("--env-id", f"{config.env_id} steps on the host, outside a compiled program: train it with "
                          "purejaxdqn.train_on_host(config) or the command line (the actor-learner)")  # fmt: skip
    c = config
    local_envs = c.num_envs // data_size
    venv = env_from_config(c, local_envs)
    network = make_network(c, venv.num_actions)
    apply_fn = network.apply
    update = learner_lib.make_update(apply_fn, c, axis_name=data_axis, mask_fn=venv.action_mask)
    replay = replay_lib.make_replay(
        c.buffer_rows, c.batch_size // data_size, c.n_step, c.prioritized, c.priority_eps, c.actual_total_steps, data_axis,
        frame_replay.layout_for(c, venv.spec),
    )  # fmt: skip
    eval_venv = env_from_config(c, c.num_eval_envs // data_size, role="eval")
    evaluate = make_evaluate(apply_fn, eval_venv, c.num_eval_envs // data_size, c.eval_epsilon, axis_name=data_axis)
    n_evals = num_evals(c)
    total_steps = c.actual_total_steps
    chunk_schedule = schedule_lib.chunk_schedule(c) if schedule_lib.uses_static_loop(c) else None
    has_warm_chunk = multiples_crossed(0, c.chunk_steps, c.update_every, c.learning_starts, xp=np) == 0
    unroll = layout(c, runs_per_device)["unroll"]

    def placed(tree):
        """Parameter trees (the learner state, the best parameters) laid out on the mesh's
        model axis (unchanged without one)."""
        return tensor_parallel(tree, len(c.widths)) if model_parallel else tree

    one_update, learn, with_learning = make_updates(c, update, replay, placed)

    def local(key: jax.Array) -> jax.Array:
        """A key of this data shard's own (envs, exploration, sampling differ per shard)."""
        return key if data_axis is None else jax.random.fold_in(key, jax.lax.axis_index(data_axis))

    def global_sum(x):
        return x if data_axis is None else jax.lax.psum(x, data_axis)

    def init(key: jax.Array, hp: HParams) -> TrainState:
        net_key, env_key, run_key = jax.random.split(key, 3)
        obs, env_state = venv.reset(local(env_key))
        params = network.init(net_key, obs)
        stored_obs = obs.astype(venv.obs_dtype)
        example = replay_lib.Transition(
            obs=stored_obs,
            action=jnp.zeros(local_envs, jnp.int32),
            reward=jnp.zeros(local_envs, jnp.float32),
            next_obs=stored_obs,
            terminated=jnp.zeros(local_envs, bool),
            truncated=jnp.zeros(local_envs, bool),
        )
        learner = placed(learner_lib.init(params, c, hp))
        return TrainState(
            env_steps=jnp.int32(0),
            learner=learner,
            replay=replay.init(example),
            env_state=env_state,
            obs=obs,
            key=run_key,
            episode_return=jnp.zeros(local_envs, jnp.float32),
            episode_length=jnp.zeros(local_envs, jnp.int32),
            stats=ChunkStats.fresh(c.log_windows),
            evals=EvalLog(
                step=jnp.zeros(n_evals, jnp.int32),
                mean=jnp.full(n_evals, jnp.nan, jnp.float32),
                min=jnp.full(n_evals, jnp.nan, jnp.float32),
            ),
            best=BestParams(learner.params, jnp.int32(0), jnp.float32(-jnp.inf)) if c.keep_best else None,
        )

    def act(params, obs, env_steps, hp: HParams, explore_key, action_key) -> jax.Array:
        """1. Epsilon-greedy actions on the current observations."""
        epsilon = linear_epsilon(env_steps, hp.eps_start, hp.eps_end, hp.eps_decay_steps)
        q_values = apply_fn(params, obs)
        return acting.epsilon_greedy(explore_key, action_key, q_values, epsilon, venv.action_mask(obs)).astype(jnp.int32)

    def step_and_store(state: TrainState, action: jax.Array, env_key):
        """2. Step the envs, store the transition row, count finished episodes."""
        res = venv.step(env_key, state.env_state, action)
        row, valid = stored_row(c, state.obs, action, res)
        episode_return = state.episode_return + res.reward
        episode_length = state.episode_length + (1 if valid is None else valid)  # a reset step is no step of the game
        done = res.terminated | res.truncated
        add = partial(window_add, c, state.env_steps + c.num_envs)
        stats = state.stats._replace(
            episodes=add(state.stats.episodes, global_sum(done.sum(dtype=jnp.int32))),
            return_sum=add(state.stats.return_sum, global_sum(jnp.where(done, episode_return, 0.0).sum())),
            length_sum=add(state.stats.length_sum, global_sum(jnp.where(done, episode_length, 0).sum(dtype=jnp.int32))),
        )
        return state._replace(
            env_steps=state.env_steps + c.num_envs,
            replay=replay.add(state.replay, row, valid),
            env_state=res.env_state,
            obs=res.obs,
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
            stats=stats,
        )

    def env_step(state: TrainState, hp: HParams) -> tuple[TrainState, StepKeys]:
        """1.-2. for one vectorized env step; returns the counter before it and the keys its
        updates and evaluation use."""
        key, explore_key, action_key, env_key, update_key, eval_key = jax.random.split(state.key, 6)
        explore_key, action_key, env_key, update_key, eval_key = map(
            local, (explore_key, action_key, env_key, update_key, eval_key)
        )
        before = state.env_steps
        action = act(state.learner.params, state.obs, before, hp, explore_key, action_key)
        state = step_and_store(state._replace(key=key), action, env_key)
        return state, StepKeys(before, update_key, eval_key)

    def learn_rounds(state: TrainState, rounds: int, keys: StepKeys, hp: HParams) -> TrainState:
        """3. (static) The `rounds` update rounds the last env step crossed, `gradient_steps`
        updates each, in a scan of static length. Rounds whose boundary is below
        `learning_starts` (traced) come first and are masked; the active ones use the keys the
        branching step gives them (fold_in 0, 1, ...)."""
        g = c.gradient_steps
        inactive = rounds - multiples_crossed(keys.before, state.env_steps, c.update_every, hp.learning_starts)

        def body(carry, u):
            key = jax.random.fold_in(keys.update_key, jnp.maximum(u - inactive * g, 0))
            return one_update(state, carry, key, hp, active=u // g >= inactive), None

        carry = (state.learner, state.replay.priorities, state.stats)
        carry = repeat(lambda x, u: body(x, u)[0], carry, rounds * g, indexed=True)
        return with_learning(state, carry)

    def record_eval(state: TrainState, eval_index, eval_key) -> TrainState:
        """4. Greedy evaluation of the online parameters into eval slot `eval_index`."""
        after, params = state.env_steps, state.learner.params
        mean, minimum = evaluate(params, eval_key)
        evals = EvalLog(
            step=state.evals.step.at[eval_index].set(after),
            mean=state.evals.mean.at[eval_index].set(mean),
            min=state.evals.min.at[eval_index].set(minimum),
        )
        best = state.best
        if best is not None:
            better = mean > best.mean
            best = placed(jax.tree.map(lambda new, old: jnp.where(better, new, old), BestParams(params, after, mean), best))
        return state._replace(evals=evals, best=best)

    def maybe_evaluate(state: TrainState, before, eval_key) -> TrainState:
        """4. (branching; static: once, after a chunk shorter than an eval interval) Evaluate
        when this step crossed an eval boundary, and at the end
        (eval_every >= num_envs, so one step crosses at most one boundary)."""
        after = state.env_steps
        crossed = after // c.eval_every > before // c.eval_every
        eval_index = jnp.where(crossed, after // c.eval_every - 1, n_evals - 1)
        def evaluated(logs):
            done = record_eval(state._replace(evals=logs[0], best=logs[1]), eval_index, eval_key)
            return done.evals, done.best

        # Only the logs go through the branch (not the replay buffer).
        evals, best = jax.lax.cond(crossed | (after == total_steps), evaluated, lambda logs: logs, (state.evals, state.best))
        return state._replace(evals=evals, best=best)

    def iteration(state: TrainState, hp: HParams) -> TrainState:
        """(branching) One vectorized env step of the algorithm, top to bottom."""
        state, keys = env_step(state, hp)
        # Updates for every update boundary this step crossed (none before learning_starts).
        num_updates = multiples_crossed(keys.before, state.env_steps, c.update_every, hp.learning_starts) * c.gradient_steps
        state = learn(state, num_updates, hp, keys.update_key)
        return maybe_evaluate(state, keys.before, keys.eval_key)

    def segment(carry, seg: schedule_lib.Segment, hp: HParams, learning: bool):
        """(static) `seg.steps` env steps, then the update rounds of the last one (none in a
        warm-up chunk: `learning` False); the carry is the state and the last env step's keys
        (its evaluation's key, where one follows)."""
        state, keys = repeat(lambda x: env_step(x[0], hp), carry, seg.steps)
        return (learn_rounds(state, seg.rounds, keys, hp) if learning else state), keys

    def eval_block(carry, block: schedule_lib.EvalBlock, hp: HParams, learning: bool):
        """(static) The segments up to an evaluation, then the evaluation; the carry is the state
        and the last env step's keys."""
        for repeats, pattern in block.runs:
            def body(x, pattern=pattern):
                for seg in pattern:
                    x = segment(x, seg, hp, learning)
                return x
            carry = repeat(body, carry, repeats, unroll=unroll)
        state, keys = carry
        if block.has_eval:
            state = record_eval(state, state.env_steps // c.eval_every - 1, keys.eval_key)
        return state, keys

    def static_chunk(state: TrainState, hp: HParams, learning: bool = True) -> TrainState:
        """(static) One chunk as its schedule lays it out; where chunks are shorter than an eval
        interval, the evaluation its last env step is due (one branch per chunk)."""
        carry = (state, StepKeys(state.env_steps, state.key, state.key))  # keys: overwritten by the first step
        for repeats, blocks in chunk_schedule.runs:
            def body(x, blocks=blocks):
                for block in blocks:
                    x = eval_block(x, block, hp, learning)
                return x
            carry = repeat(body, carry, repeats)
        state, keys = carry
        return maybe_evaluate(state, keys.before, keys.eval_key) if chunk_schedule.eval_at_end else state

    def chunk_iterations(state: TrainState, hp: HParams) -> TrainState:
        """`config.iterations_per_chunk` env steps, as `config.loop` lays them out. A static
        chunk wholly before `learning_starts` (traced) skips its update rounds (one branch per
        chunk) instead of computing and masking them all; the branch is compiled only where the
        config's own `learning_starts` leaves its first chunk without updates."""
        if chunk_schedule is None:
            return repeat(lambda s: iteration(s, hp), state, c.iterations_per_chunk)
        if not has_warm_chunk:
            return static_chunk(state, hp)
        end = state.env_steps + c.chunk_steps
        warm = multiples_crossed(state.env_steps, end, c.update_every, hp.learning_starts) == 0
        return jax.lax.cond(warm, partial(static_chunk, learning=False), static_chunk, state, hp)

    def run_chunk(state: TrainState, hp: HParams) -> TrainState:
        """One chunk, with fresh per-chunk statistics."""
        state = chunk_iterations(state._replace(stats=ChunkStats.fresh(c.log_windows)), hp)
        finite = jnp.all(jnp.array([jnp.isfinite(x).all() for x in jax.tree.leaves(state.learner.params)]))
        return state._replace(stats=state.stats._replace(params_finite=finite))

    def restart_envs(state: TrainState) -> TrainState:
        """A restored run's envs started afresh, for an env whose state a checkpoint cannot hold
        (`spec.external_state`, the ALE's emulators): new episodes from a reset, and replay cut
        where the old ones broke off. Everything else is the checkpoint's."""
        key, env_key = jax.random.split(state.key)
        obs, env_state = venv.reset(local(env_key))
        return state._replace(
            key=key, env_state=env_state, obs=obs, replay=replay.cut(state.replay),
            episode_return=jnp.zeros_like(state.episode_return), episode_length=jnp.zeros_like(state.episode_length),
        )  # fmt: skip

    def train(key: jax.Array, hp: HParams | None = None) -> TrainState:
        """The whole run: every chunk in one scan (statistics summed over the run). `hp`
        defaults to `config.hparams()`; one given is checked like `--sweep` values where it is
        concrete (`check_hparams`)."""
        if hp is None:
            hp = c.hparams()
        else:
            check_hparams(c, hp)
        return repeat(lambda s: chunk_iterations(s, hp), init(key, hp), c.num_chunks)

    return Trainer(config=c, venv=venv, network=network, init=init, run_chunk=run_chunk, train=train,
                   restart_envs=restart_envs)  # fmt: skip


def make_train(config: Config) -> Callable[..., TrainState]:
    """A pure `train(key, hparams=None) -> TrainState` for `config`: jit and vmap it freely."""
    return make_trainer(config).train
