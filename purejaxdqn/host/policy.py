"""A trained agent as a plain greedy policy: `load_policy(run_dir)` -> `act(obs) -> action`.

Only the online parameters are read from the newest checkpoint (no replay buffer), and `act`
takes host NumPy observations, one or a batch, so the agent drops into any environment loop.
`play(episodes)` plays fresh episodes of the run's own env on the device and returns their
returns (what `python -m purejaxdqn.evaluate` reports).
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxdqn.algorithm import acting
from purejaxdqn.algorithm.evaluation import make_episode_returns
from purejaxdqn.algorithm.loop import BestParams
from purejaxdqn.algorithm.networks import QNetwork, make_network
from purejaxdqn.config import Config
from purejaxdqn.envs import EnvSpec, action_mask, env_from_config, is_host_id
from purejaxdqn.envs.host import host_spec, make_host_env
from purejaxdqn.host import checkpointing, run_directory
from purejaxdqn.host.report import setting_label
from purejaxdqn.host.run_directory import RunDirError


def describe_run(run: dict | None) -> str:
    """'run 5 (seed 2, lr=0.0003)': a run of a batch by its index, seed and swept values."""
    if run is None:
        return "run ?"
    swept = {k: v for k, v in run.items() if k not in ("run", "seed", "setting")}
    return f"run {run['run']} (seed {run['seed']}{', ' + setting_label(swept) if swept else ''})"


class Policy(NamedTuple):
    config: Config
    params: Any  # online parameters of the chosen run
    network: QNetwork
    spec: EnvSpec  # the run's env: observation shape, action mask
    step: int  # the checkpoint read (chunks done)
    best_eval: tuple[int, float] | None = None  # best=True: (env step, mean return) of that evaluation
    run: dict | None = None  # which run of its directory: {"run", "seed", "setting", and the swept values}

    def __repr__(self) -> str:
        """One line (the parameters themselves are left out: print(policy.params) shows them)."""
        layers = "-".join(map(str, self.config.widths))
        best = f", best eval {self.best_eval[1]:.1f} at step {self.best_eval[0]:,}" if self.best_eval else ""
        return (f"Policy({self.config.env_id}, {describe_run(self.run)}, checkpoint {self.step}, "
                f"{self.config.torso} {layers}, {self.spec.num_actions} actions{best})")  # fmt: skip

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.spec.obs_shape

    def __call__(self, obs) -> np.ndarray | int:
        """Greedy action(s) for one observation or a batch of them (host NumPy in and out);
        never an action the observation's mask disallows (families with masks)."""
        obs = np.asarray(obs)
        single = obs.shape == self.obs_shape
        batch = obs[None] if single else obs
        if batch.shape[1:] != self.obs_shape:
            raise ValueError(f"expected observations of shape {self.obs_shape} or (N, *{self.obs_shape}), got {obs.shape}")
        actions = np.asarray(_greedy_actions(self.network, self.spec, self.params, jnp.asarray(batch)))
        return int(actions[0]) if single else actions

    act = __call__

    def play(self, episodes: int, seed: int = 0, epsilon: float | None = None) -> np.ndarray:
        """Returns of `episodes` fresh episodes in the run's env, played all at once on the
        device (a host env: stepped together on the host), epsilon-greedy at `epsilon`
        (default: the run's eval epsilon)."""
        epsilon = self.config.eval_epsilon if epsilon is None else float(epsilon)
        if is_host_id(self.config.env_id):
            return self._play_on_host(episodes, seed, epsilon)
        return np.asarray(_episode_returns(self.config, self.network, episodes, epsilon)(self.params, jax.random.key(seed)))

    def _play_on_host(self, episodes: int, seed: int, epsilon: float) -> np.ndarray:
        from purejaxdqn.host.actor_learner import play_on_host

        with make_host_env(self.config.env_id, episodes, self.config.time_limit) as env:
            return play_on_host(self, env, seed, epsilon)


# One compile per (run settings, episodes, epsilon), shared by the runs re-played; bounded, so
# a long notebook session that evaluates many runs does not keep every executable alive.
@lru_cache(maxsize=16)
def _episode_returns(config: Config, network: QNetwork, episodes: int, epsilon: float):
    return jax.jit(make_episode_returns(network.apply, env_from_config(config, episodes), episodes, epsilon))


@partial(jax.jit, static_argnums=(0, 1))
def _greedy_actions(network, spec: EnvSpec, params, obs):
    return acting.greedy(network.apply(params, obs), action_mask(spec, obs))


def make_policy(config: Config, params, step: int = 0) -> Policy:
    """The greedy policy of `params` (one run's online parameters; None: to be filled in) for
    `config`'s env, as checkpoint `step`."""
    spec = host_spec(config.env_id, config.time_limit) if is_host_id(config.env_id) else env_from_config(config, 1).spec
    return Policy(config, params, make_network(config, spec.num_actions), spec, step)


def load_policy(run_dir, run: int = 0, step: int | None = None, best: bool = False) -> Policy:
    """The greedy policy of run `run` (index into the batch of runs) at checkpoint `step`
    (default: the newest complete one). With `best` (a run trained with keep_best): the
    parameters of its best evaluation up to that checkpoint instead of the latest ones."""
    record = run_directory.read(run_dir)
    config, num_runs = record.config, len(record.runs)
    if not 0 <= run < num_runs:
        raise RunDirError(f"run {run} is not in this run directory (it has {num_runs} runs)")
    if best and not config.keep_best:
        raise RunDirError(f"{run_dir} was trained without --keep-best: it kept no best-evaluation parameters")
    if step is None:
        step = checkpointing.latest_step(run_dir)
    elif step not in (steps := checkpointing.all_steps(run_dir)):
        raise RunDirError(f"--step {step}: {run_dir} has no such checkpoint (complete ones: {', '.join(map(str, steps)) or 'none'})")
    run_directory.check_unedited(run_dir, step, run_directory.trained_settings(config, record.runs))
    policy = make_policy(config, None, step)._replace(run=record.runs[run])
    one = jax.eval_shape(policy.network.init, jax.random.key(0), jnp.zeros((1, *policy.obs_shape), policy.spec.obs_dtype))
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((num_runs, *x.shape), x.dtype, sharding=device), one
    )
    if not best:
        params = checkpointing.restore_params(run_dir, step, abstract)
        return policy._replace(params=jax.tree.map(lambda x: x[run], params))
    per_run = lambda dtype: jax.ShapeDtypeStruct((num_runs,), dtype, sharding=device)  # noqa: E731
    kept = checkpointing.restore_best(run_dir, step, BestParams(abstract, per_run(jnp.int32), per_run(jnp.float32)))
    if int(kept.step[run]) == 0:
        raise RunDirError(f"checkpoint {step} of {run_dir} comes before run {run}'s first evaluation: no best parameters yet")
    params = jax.tree.map(lambda x: x[run], kept.params)
    return policy._replace(params=params, best_eval=(int(kept.step[run]), float(kept.mean[run])))
