"""The actor-learner for environments that step on the host (gymnasium:ID): the parameter
server, done with JAX (Ape-X's actors, central replay and learner; Sebulba's threads).

- N `Actor`s, each with its own host vector env of E = num_envs / N envs and the jitted
  policy on the actors' device, collect blocks of T rows and put them on a bounded queue
  (`queue_size`); an actor whose queue is full waits, which holds the actors at most
  `queue_size` + 1 blocks ahead of the learner.
- The learner (the main thread) takes one block from every actor, ingests the rows into the
  on-device replay with the updates they are due (algorithm/ingest.py) and publishes its
  parameters to the `ParameterServer` every `publish_every` updates; an actor reads the newest
  parameters at every step, never waiting for the learner.
- `host_loop` 'sync' runs the same actors and learner in one thread, one after the other.

Evaluation plays `num_eval_envs` episodes on a host env of its own. Checkpoints hold the
learner's state (parameters, optimizer, replay, RNG, counters); a resumed run restarts the
actors' envs with new episodes (the interrupted ones count as truncated at the resume point)
and new exploration streams, so it continues the run but does not repeat it bit for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.algorithm import acting
from purejaxdqn.algorithm import ingest as ingest_lib
from purejaxdqn.algorithm.replay import Transition
from purejaxdqn.algorithm.schedules import linear_epsilon
from purejaxdqn.config import Config
from purejaxdqn.envs import host as host_envs
from purejaxdqn.host import checkpointing, interrupts, memory, run_directory, runner
from purejaxdqn.host.progress import ProgressBar
from purejaxdqn.host.run_options import RunOptions

POLL_S = 0.05  # how often a waiting thread looks at the stop flag and the other side's errors
JOIN_S = 10.0  # how long the learner waits for an actor to stop at the end


def actor_device():
    """Where the actors' policy runs: the last CPU device (the command line splits a CPU into
    one device per core; the learner's replay and updates stay on the default device)."""
    return jax.devices("cpu")[-1]


class ActorError(RuntimeError):
    """An actor or its env raised (or stopped): the message names the actor and the error."""


class ParameterServer:
    """The newest published parameters, on the actors' device, and their version (the
    learner's update count when published). Neither side waits for the other: publishing
    starts a copy onto the actors' device (the learner's own buffers are donated to its next
    step) and returns; an actor takes the newest copy that is ready (copies finish in order)."""

    def __init__(self, device, params, version: int):
        self.device, self._lock = device, threading.Lock()
        self._current = (jax.block_until_ready(self._copy(params)), version)
        self._pending: list[tuple[Any, int]] = []  # published, oldest first

    def _copy(self, params):
        return jax.device_put(params, self.device, may_alias=False)

    def publish(self, params, version: int) -> None:
        copy = self._copy(params)
        with self._lock:
            self._pending.append((copy, version))

    def latest(self) -> tuple[Any, int]:
        """The newest parameters that are ready, and their version (never waits)."""
        with self._lock:
            while self._pending and all(leaf.is_ready() for leaf in jax.tree.leaves(self._pending[0][0])):
                self._current = self._pending.pop(0)
            return self._current

    def newest(self) -> tuple[Any, int]:
        """The newest parameters published, waited for ('sync', and the evaluation)."""
        with self._lock:
            if self._pending:
                self._current = (jax.block_until_ready(self._pending[-1][0]), self._pending[-1][1])
                self._pending.clear()
            return self._current


class ActorBlock(NamedTuple):
    rows: Transition  # numpy leaves [T, E, ...]
    versions: np.ndarray  # [T] int: the parameter version each row's actions came from
    td: np.ndarray | None = None  # [T, E] |TD error| under the actor's parameters (--actor-priorities)


class Actor:
    """Actor `index`: steps its env with the newest parameters, `block_rows` rows per block."""

    def __init__(self, index: int, env, policy, server: ParameterServer, config: Config, hp, stop: threading.Event,
                 seed: int, first_step: int, actor_td=None):  # fmt: skip
        self.index, self.env, self.policy, self.server, self.stop = index, env, policy, server, stop
        self.actor_td, self.gamma = actor_td, np.float32(hp.gamma)  # actor_td: the priorities' function, or None
        self.env_id, self.rows, self.total_envs = config.env_id, config.block_rows, config.num_envs
        self.waits = config.host_loop == "sync"  # for the learner's newest parameters: the synchronous loop
        self.queue: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self.error: BaseException | None = None
        self.epsilon = _epsilon_schedule(config, hp, index)
        self.rng = np.random.default_rng(seed)
        self.t = first_step // config.num_envs  # vectorized steps so far (of every actor: they move together)
        self.obs = env.reset(seed)
        self.thread = threading.Thread(target=self._run, name=f"purejaxdqn-actor-{index}", daemon=True)

    def collect(self) -> ActorBlock:
        """The next block: `rows` steps of the env, each with the newest parameters."""
        spec, e = self.env.spec, self.env.num_envs
        obs = np.empty((self.rows, e, *spec.obs_shape), spec.obs_dtype)
        rows = Transition(obs, np.empty((self.rows, e), np.int32), np.empty((self.rows, e), np.float32), np.empty_like(obs),
                          np.empty((self.rows, e), bool), np.empty((self.rows, e), bool))  # fmt: skip
        versions = np.empty(self.rows, np.int64)
        for r in range(self.rows):
            params, versions[r] = self.server.newest() if self.waits else self.server.latest()
            greedy = np.asarray(self.policy(params, self.obs))
            epsilon = self.epsilon(self.t * self.total_envs)
            action = acting.epsilon_greedy_host(self.rng, greedy, epsilon, spec.num_actions)
            step = self.env.step(action)
            for leaf, value in zip(rows, (self.obs, action, step.reward, step.next_obs, step.terminated, step.truncated)):
                leaf[r] = value
            self.obs, self.t = step.obs, self.t + 1
        td = None if self.actor_td is None else np.asarray(self.actor_td(params, rows, self.gamma))
        return ActorBlock(rows, versions, td)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                block = self.collect()
                while not self.stop.is_set():
                    with contextlib.suppress(queue.Full):
                        self.queue.put(block, timeout=POLL_S)
                        break
        except BaseException as err:  # noqa: BLE001 (handed to the learner, which names it)
            self.error = err
            self.stop.set()

    def take(self) -> ActorBlock:
        """(the learner) This actor's next block; ActorError if it failed or stopped."""
        while True:
            try:
                return self.queue.get(timeout=POLL_S)
            except queue.Empty:
                self.check()
                if self.stop.is_set():
                    raise ActorError(f"actor {self.index} stopped") from None

    def check(self) -> None:
        if self.error is not None:
            raise ActorError(f"actor {self.index} ({self.env_id}) failed: {type(self.error).__name__}: "
                             f"{checkpointing.one_line(self.error)}") from self.error  # fmt: skip


def _epsilon_schedule(config: Config, hp, actor: int):
    """An actor's epsilon at an env step: the run's schedule, or Ape-X's fixed one."""
    if config.apex_epsilons:
        fixed = ingest_lib.apex_epsilon(actor, config.actors)
        return lambda steps: fixed
    start, end, decay = float(hp.eps_start), float(hp.eps_end), int(hp.eps_decay_steps)
    return lambda steps: float(linear_epsilon(steps, start, end, decay, xp=np))


def play_on_host(greedy, env, seed: int, epsilon: float) -> np.ndarray:
    """The return of one episode per env of `env`, epsilon-greedy with `epsilon` around
    `greedy(obs) -> actions` (the evaluation, and load_policy's `play` of a host run)."""
    rng = np.random.default_rng(seed)
    act = lambda obs: acting.epsilon_greedy_host(rng, np.asarray(greedy(obs)), epsilon, env.spec.num_actions)  # noqa: E731
    return host_envs.episode_returns(env, act, seed, env.spec.max_episode_steps)


def evaluate(policy, env, params, seed: int, epsilon: float) -> tuple[float, float]:
    """(mean, min) return of one episode per env of `env`, epsilon-greedy with `epsilon`."""
    returns = play_on_host(lambda obs: policy(params, obs), env, seed, epsilon)
    return float(returns.mean()), float(returns.min())


def seed_of(config: Config, *parts: int) -> int:
    """A seed of its own for each actor and each resumed segment (and the evaluation)."""
    # Below 2**30: ale-py takes int32 seeds, and env i of a vector env is seeded seed + i.
    return int(np.random.SeedSequence([config.seed, *parts]).generate_state(1)[0]) >> 2


EVAL_STREAM = 1 << 20  # seed_of(config, EVAL_STREAM, k): evaluation k's envs (no actor has that index)


class Compiled(NamedTuple):
    """The learner's compiled functions (runner.Training reads `compile_s`)."""

    program: ingest_lib.Program
    ingest: Any
    train: Any
    init: Any
    start_chunk: Any
    end_chunk: Any
    record_eval: Any
    policy: Any  # the actors' greedy network (on their device)
    eval_policy: Any  # the same for the evaluation's envs
    actor_td: Any  # --actor-priorities: the actors' |TD error| of a block (else None)
    abstract_state: ingest_lib.LearnerState
    hp: Any
    compile_s: float


def train_on_host(config: Config, options: RunOptions | None = None) -> runner.RunResult:
    """Train `config` (a host env: `gymnasium:ID`) with the actor-learner, driven as `options`
    say (runner.train_runs' options: output dir, checkpoints, resume, sinks; default: write
    nothing); one run, seed `config.seed`."""
    from purejaxdqn.config import validate

    validate(config)
    runs, settings = runner.make_runs(config)
    with prepare(config, runs, settings, options) as training:
        return training.train()


def prepare(config: Config, runs: list[dict], settings: list[dict] | None = None, options: RunOptions | None = None,
            available_memory: int | None = None) -> "ActorLearnerTraining":  # fmt: skip
    """Like runner.prepare for a host env: the memory check, then the run directory."""
    t_begin = time.perf_counter()
    options = options or RunOptions()
    batch = runner.Batch(config, runs, [{}] if settings is None else settings, runner.parallel.MeshShape(1, 1))
    spec = host_envs.host_spec(config.env_id, config.time_limit)
    abstract = jax.eval_shape(ingest_lib.make_program(config, spec).init, jax.random.key(0), config.hparams())
    estimate = memory.check(memory.state_bytes(abstract), 1, available_memory)
    run_dir = runner._open_run_dir(batch, options) if options.output_dir is not None else None
    return ActorLearnerTraining(batch, options, run_dir, abstract, estimate, t_begin, spec=spec)


@dataclasses.dataclass
class ActorLearnerTraining(runner.Training):
    """A prepared actor-learner run: the runner's Training with its own compile, start and
    chunk loop (threads); the summary, curves and result are the runner's."""

    spec: Any = None
    lags: list = dataclasses.field(default_factory=list)  # each block's (mean, max) policy lag over its rows, in updates

    def _compile(self, progress: ProgressBar) -> Compiled:
        c, t0 = self.batch.config, time.perf_counter()
        progress.status(f"compiling the learner ({c.env_id}) ...")
        program = ingest_lib.make_program(c, self.spec)
        hp = c.hparams()
        abstract = self.one_state
        rows = c.block_rows
        block = jax.tree.map(lambda x: jax.ShapeDtypeStruct((rows, *x.shape[1:]), x.dtype), abstract.replay.data)
        td = [jax.ShapeDtypeStruct(block.reward.shape, np.float32)] if c.actor_priorities else []
        ingest = jax.jit(_with_token(program.ingest), donate_argnums=0).lower(abstract, block, hp, *td).compile()
        train = jax.jit(program.train, donate_argnums=0).lower(abstract, hp).compile() if c.rate_limit == "free" else None
        aot = lambda f, *args: jax.jit(f).lower(*args).compile()  # noqa: E731
        on_actors = jax.sharding.SingleDeviceSharding(actor_device())
        params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=on_actors), abstract.learner.params)
        obs = lambda n: jax.ShapeDtypeStruct((n, *self.spec.obs_shape), self.spec.obs_dtype, sharding=on_actors)  # noqa: E731
        scalar = jax.ShapeDtypeStruct((), np.float32)
        compiled = Compiled(
            program, ingest, train, aot(program.init, jax.random.key(0), hp), aot(program.start_chunk, abstract),
            aot(program.end_chunk, abstract), aot(program.record_eval, abstract, jax.ShapeDtypeStruct((), np.int32), scalar, scalar),
            aot(program.greedy, params, obs(c.num_envs // c.actors)), aot(program.greedy, params, obs(c.num_eval_envs)),
            aot(program.actor_td, params, _actor_block(block, c.num_envs // c.actors, on_actors), scalar) if td else None,
            abstract, hp, time.perf_counter() - t0,
        )  # fmt: skip
        progress.note(f"compiled the learner in {compiled.compile_s:.1f} s ({c.actors} actors, {c.host_loop}, "
                      f"blocks of {rows} steps)")  # fmt: skip
        return compiled

    def _initial_state(self, compiled: Compiled) -> ingest_lib.LearnerState:
        if self.start_chunk:
            saved = checkpointing.restore(self.run_dir.path, self.start_chunk, _with_run_axis(compiled.abstract_state, abstract=True))
            state = _cut_episodes(_drop_run_axis(saved))
        else:
            state = compiled.init(jax.random.key(self.batch.runs[0]["seed"]), compiled.hp)
        if self.run_dir is not None:
            if self.run_dir.resumed:
                self.run_dir.drop_rows_after(int(state.env_steps))
            self.run_dir.add_segment(compiled.compile_s)
        return jax.block_until_ready(state)

    def _run_chunks(self, compiled: Compiled, state, progress: ProgressBar, init_s: float):
        b, timers = self.batch, runner.Timers()
        c = b.config
        saves = runner.ChunkSaves(self, timers, saved=_with_run_axis)  # checkpoints laid out as one run's
        learner = Learner(compiled, c, state, self.spec, self.start_chunk)  # the envs made (not run time)
        t_run = time.perf_counter() - init_s
        logger = runner.ChunkLogger(b, self.run_dir.path if self.writing else None, self._tracking(), timers,
                                    int((np.asarray(state.evals.step) > 0).sum()))  # fmt: skip
        try:
            with logger, learner, interrupts.held_to_chunk_end():
                for chunk in range(self.start_chunk, c.num_chunks):
                    t_chunk = time.perf_counter()
                    lag = learner.run_chunk()
                    s = learner.state  # only the logs' arrays are fetched (not the replay), as one run's
                    logs = jax.tree.map(lambda x: x[None], jax.device_get((s.learner.updates, s.stats, s.evals)))
                    out = runner.ChunkOutputs(jax.device_get(s.env_steps), *logs)
                    chunk_s = time.perf_counter() - t_chunk
                    latest = logger.log(chunk, out, chunk_s=chunk_s, env_steps_per_s=c.chunk_steps / chunk_s,
                                        policy_lag_mean=lag[0], policy_lag_max=lag[1])  # fmt: skip
                    runner._stop_if_nonfinite(out.stats, b.runs, chunk)
                    progress.update(int(out.env_steps), c.chunk_steps / chunk_s, latest)
                    saves.after_chunk(chunk, learner.state)
                    interrupts.raise_pending()
        finally:
            saves.finish()
        self.lags = learner.lags
        run_s = time.perf_counter() - t_run - timers.save_s - timers.log_s
        return _with_run_axis(learner.state), run_s, timers

    def _tracking(self):
        """The sinks, without the end-of-training video (it plays a JAX env)."""
        spec = self.options.tracking
        return spec._replace(video=False) if spec is not None else None

    def _summary(self, evals, final_updates, timing: dict, timers: runner.Timers) -> dict:
        summary = super()._summary(evals, final_updates, timing, timers)
        c, lags = self.batch.config, np.asarray(self.lags, np.float64).reshape(-1, 2)
        summary.update(loop="actor-learner", unroll=None, actors=c.actors, host_loop=c.host_loop, rate_limit=c.rate_limit,
                       block_rows=c.block_rows,
                       policy_lag_mean=float(lags[:, 0].mean()) if lags.size else None,
                       policy_lag_max=float(lags[:, 1].max()) if lags.size else None)  # fmt: skip
        return summary


def _actor_block(block, envs: int, sharding):
    """The shapes of one actor's block (its `envs` columns of the learner's), on the actors' device."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct((x.shape[0], envs, *x.shape[2:]), x.dtype, sharding=sharding), block)


def _with_token(ingest):
    """`ingest` that also returns a token: a copy of the env step counter (the state is donated
    to the next call), to wait for the call by."""

    def ingest_with_token(state, block, hp, td=None):
        state = ingest(state, block, hp, td)
        return state, state.env_steps + 0

    return ingest_with_token


def _with_run_axis(state: ingest_lib.LearnerState, abstract: bool = False) -> ingest_lib.LearnerState:
    """The state as a batch of one run (a leading axis on each leaf but the shared env step
    counter), as the runner's logs, summary and checkpoints (load_policy) lay a run out;
    `abstract`: of shapes (jax.ShapeDtypeStruct) only."""
    add = (lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype)) if abstract else (lambda x: x[None])
    return jax.tree.map(add, state)._replace(env_steps=state.env_steps)


def _drop_run_axis(state: ingest_lib.LearnerState) -> ingest_lib.LearnerState:
    return jax.tree.map(lambda x: x[0], state._replace(env_steps=None))._replace(env_steps=state.env_steps)


@jax.jit
def _cut_episodes(state: ingest_lib.LearnerState) -> ingest_lib.LearnerState:
    """A restored state whose actors restart their envs: the newest replay row ends each env's
    episode as a truncation (n-step windows stop there and bootstrap), and the running
    episodes' returns are dropped."""
    r = state.replay
    last = (r.row - 1) % r.data.truncated.shape[0]
    cut = r.data.truncated.at[last].set(jnp.where(r.filled > 0, ~r.data.terminated[last], r.data.truncated[last]))
    return state._replace(replay=r._replace(data=r.data._replace(truncated=cut)),
                          episode_return=jnp.zeros_like(state.episode_return),
                          episode_length=jnp.zeros_like(state.episode_length))  # fmt: skip


class Learner:
    """The learner's side of a run: its state, the actors it takes blocks from, publishing and
    evaluation. A context: it starts the actors' threads ('async') and stops them on exit."""

    def __init__(self, compiled: Compiled, config: Config, state, spec, start_chunk: int):
        self.compiled, self.config, self.state, self.spec = compiled, config, state, spec
        self.hp, c = compiled.hp, config
        self.stop = threading.Event()
        self.updates = int(state.learner.updates)
        self.server = ParameterServer(actor_device(), state.learner.params, self.updates)
        self.published = self.updates
        self.steps = steps = int(state.env_steps)
        per_actor = c.num_envs // c.actors
        self.actors: list[Actor] = []
        self.eval_env = None
        try:
            for i in range(c.actors):
                env = host_envs.make_host_env(c.env_id, per_actor, c.time_limit)
                self.actors.append(Actor(i, env, compiled.policy, self.server, c, self.hp, self.stop, seed_of(c, i, start_chunk),
                                         steps, compiled.actor_td))  # fmt: skip
            self.eval_env = host_envs.make_host_env(c.env_id, c.num_eval_envs, c.time_limit)
        except Exception as err:
            self._close_envs()
            raise ActorError(f"actor {len(self.actors)} ({c.env_id}) failed to start its env: {type(err).__name__}: "
                             f"{checkpointing.one_line(err)}") from err  # fmt: skip
        self.evals_done = int((np.asarray(state.evals.step) > 0).sum())
        self.lags: list[tuple[float, float]] = []
        self.in_flight = None  # the previous ingest's token (its env step counter)

    def __enter__(self) -> "Learner":
        if self.config.host_loop == "async":
            for actor in self.actors:
                actor.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for actor in self.actors:
            if actor.thread.is_alive():
                actor.thread.join(JOIN_S)
        self._close_envs()
        if exc[0] is None:
            for actor in self.actors:
                actor.check()

    def _close_envs(self) -> None:
        for env in [a.env for a in self.actors] + [self.eval_env]:
            with contextlib.suppress(Exception):
                if env is not None:
                    env.close()

    def next_blocks(self) -> list[ActorBlock]:
        """One block of every actor: taken from its queue, or ('sync') collected here."""
        if self.config.host_loop == "async":
            try:
                return [a.take() for a in self.actors]
            except ActorError:
                for actor in self.actors:  # the one that failed, rather than the one waited for
                    actor.check()
                raise
        blocks = []
        for actor in self.actors:
            try:
                blocks.append(actor.collect())
            except Exception as err:
                actor.error = err
                actor.check()
        return blocks

    def run_chunk(self) -> tuple[float, float]:
        """One chunk of blocks; returns its rows' (mean, max) policy lag in updates."""
        c = self.config
        self.state = self.compiled.start_chunk(self.state)
        lags = []
        for _ in range(c.iterations_per_chunk // c.block_rows):
            lags.append(self.ingest(self.next_blocks()))
            if c.rate_limit == "free":
                self.train_while_waiting()
            self.publish()
            self.evaluate_if_due()
        self.state = self.compiled.end_chunk(self.state)
        self.lags += lags
        return float(np.mean([m for m, _ in lags])), float(max(x for _, x in lags))

    def ingest(self, blocks: list[ActorBlock]) -> tuple[float, float]:
        """The actors' blocks side by side (actor i's envs in columns i*E ...) into replay with
        the updates they are due; returns the rows' (mean, max) policy lag: the updates the
        synchronous loop would have done before each row's step ('free': the learner has done)
        minus those of the parameters that chose its actions."""
        c = self.config
        if len(blocks) == 1:
            rows, versions, td = blocks[0]
        else:
            rows = Transition(*[np.concatenate(leaf, axis=1) for leaf in zip(*(b.rows for b in blocks))])
            versions = np.min([b.versions for b in blocks], axis=0)
            td = None if blocks[0].td is None else np.concatenate([b.td for b in blocks], axis=1)
        before = self.steps
        ls = int(self.hp.learning_starts)
        if c.rate_limit == "held":
            starts = before + c.num_envs * np.arange(len(versions))
            lag = ingest_lib.updates_due(c, 0, starts, ls) - versions
            self.updates += int(ingest_lib.updates_due(c, before, before + c.num_envs * len(versions), ls))
        else:
            lag = self.updates - versions
        self.state, token = self.compiled.ingest(self.state, rows, self.hp, *([] if td is None else [td]))
        if self.in_flight is not None:  # the learner runs at most one block ahead of its device
            self.in_flight.block_until_ready()
        self.in_flight = token
        self.steps = before + c.num_envs * len(versions)
        return float(np.mean(lag)), float(np.max(lag))

    def train_while_waiting(self) -> None:
        """('free') An update round, then more until every actor has a block waiting (or one
        failed): the learner updates at its own pace, the actors step at theirs."""
        while True:
            self.state = self.compiled.train(self.state, self.hp)
            if self.steps >= int(self.hp.learning_starts):
                self.updates += ingest_lib.updates_per_train(self.config)
            for a in self.actors:
                a.check()
            if self.stop.is_set() or all(a.queue.qsize() for a in self.actors):
                return

    def publish(self, now: bool = False) -> None:
        """The learner's parameters to the actors, every `publish_every` updates (or `now`)."""
        if self.updates - self.published >= self.config.publish_every or (now and self.updates != self.published):
            self.server.publish(self.state.learner.params, self.updates)
            self.published = self.updates

    def evaluate_if_due(self) -> None:
        """An evaluation after each block that crossed an eval point (and after the last)."""
        c, steps = self.config, self.steps
        before = steps - c.num_envs * c.block_rows
        crossed = steps // c.eval_every > before // c.eval_every
        if not (crossed or steps == c.actual_total_steps):
            return
        index = steps // c.eval_every - 1 if crossed else len(self.state.evals.step) - 1
        self.publish(now=True)  # the learner's newest parameters are evaluated (and the actors get them)
        params, _ = self.server.newest()
        mean, minimum = evaluate(self.compiled.eval_policy, self.eval_env, params, seed_of(c, EVAL_STREAM, index), c.eval_epsilon)
        self.state = self.compiled.record_eval(self.state, index, mean, minimum)
