"""Several devices: a three-axis device mesh and `jax.shard_map` over it.

- axis "runs": independent runs (vmapped seeds x settings) split across devices; no
  communication.
- axis "data": one run split data-parallel: each device steps its own slice of the envs, keeps
  its own replay shard and samples its own share of the batch; gradients are averaged across
  the axis (see `learner.make_update`), so parameters stay identical on every replica.
- axis "model": the Q-network's hidden dense layers split tensor-parallel (kernels by columns,
  then rows, alternating). The shard_map is manual over runs and data only; "model" is left to
  XLA's partitioner, which follows the sharding constraints of `tensor_parallel` and inserts
  the collectives.

Across hosts the same program runs on the global mesh through `jax.distributed`
(host/distributed.py starts it and holds what the processes agree on).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from purejaxdqn.config import Config, ConfigError
from purejaxdqn.envs import is_atari_id

RUNS = "runs"
DATA = "data"
MODEL = "model"


class MeshShape(NamedTuple):
    runs: int  # devices along the runs axis
    data: int  # devices along the data-parallel axis
    model: int = 1  # devices along the tensor-parallel axis

    @property
    def size(self) -> int:
        return self.runs * self.data * self.model

    def as_dict(self) -> dict:
        """For config.json and summary.json: "model" only when the axis is used, so runs
        without it record the same mesh as before the axis existed."""
        return {"runs": self.runs, "data": self.data, **({"model": self.model} if self.model > 1 else {})}


def choose_mesh(
    config: Config, num_runs: int, num_devices: int, runs: int | None = None, data: int | None = None, *,
    auto_data: bool = True, model: int = 1,
) -> MeshShape:  # fmt: skip
    """The mesh to use, checked. Unset axes are chosen automatically: as many devices as divide
    the runs go on the runs axis, and (with `auto_data`) as many of the rest as divide the envs,
    batch and eval envs go on the data axis. CPU host devices share one memory and talk through
    it slowly, so on a CPU the data axis is left to the user (`auto_data=False`). The model
    axis is never chosen automatically. Raises ConfigError naming the option."""
    for name, value in (("--mesh-runs", runs), ("--mesh-data", data), ("--mesh-model", model)):
        if value is not None and value <= 0:
            raise ConfigError(name, f"must be a positive integer, got {value}")
    if any(w % model for w in config.widths):
        raise ConfigError("--mesh-model", f"every hidden width must divide by {model} devices, got --widths "
                          f"{','.join(map(str, config.widths))}")  # fmt: skip
    if is_atari_id(config.env_id):  # one set of emulators, outside the program: never split (cli/plan.py refuses a mesh)
        runs, data = 1, 1
    if runs is None:
        budget = max(1, num_devices // ((data or 1) * model))
        runs = max(d for d in _divisors(budget) if num_runs % d == 0)
    if data is None and not auto_data:
        data = 1
    if data is None:
        data = max(d for d in _divisors(max(1, num_devices // (runs * model))) if _data_divisible(config, d))
    shape = MeshShape(runs, data, model)
    if shape.size > num_devices:
        mesh = f"{runs} x {data}" + (f" x {model}" if model > 1 else "")
        raise ConfigError(
            "--mesh-runs/--mesh-data" + ("/--mesh-model" if model > 1 else ""),
            f"a {mesh} mesh needs {shape.size} devices but only {num_devices} are available",
        )
    if num_runs % runs:
        raise ConfigError("--mesh-runs", f"{num_runs} runs do not split evenly over {runs} devices")
    for option, value in (("--num-envs", config.num_envs), ("--batch-size", config.batch_size),
                          ("--num-eval-envs", config.num_eval_envs)):  # fmt: skip
        if value % data:
            raise ConfigError(option, f"{value} is not divisible by the data-parallel axis (--mesh-data {data})")
    return shape


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _data_divisible(config: Config, d: int) -> bool:
    return config.num_envs % d == 0 and config.batch_size % d == 0 and config.num_eval_envs % d == 0


def make_mesh(shape: MeshShape) -> Mesh:
    """A (runs, data, model) mesh over the first `shape.size` devices (global devices when
    multi-host); model devices are neighbours, as their collectives run every layer.

    Axis types are Auto, so jit may reshard inputs itself (jax 0.10's default is Explicit).
    """
    devices = np.array(jax.devices()[: shape.size]).reshape(shape.runs, shape.data, shape.model)
    return Mesh(devices, (RUNS, DATA, MODEL), axis_types=(AxisType.Auto,) * 3)


def model_spec(path, num_hidden: int) -> P | None:
    """The "model"-axis layout of the parameter leaf at `path` (in any parameter tree:
    parameters, target, Adam moments), None where it stays replicated: Megatron-style, hidden
    dense layer 0 split by output columns, layer 1 by input rows, and so on alternating, so each
    pair needs one all-reduce; column-split layers split their bias too. Convolution and head
    stay replicated."""
    names = [getattr(k, "key", None) for k in path]
    layer = next((int(n[6:]) for n in names if isinstance(n, str) and n.startswith("Dense_")), None)
    if layer is None or layer >= num_hidden or names[-1] not in ("kernel", "bias"):
        return None
    columns = layer % 2 == 0
    if names[-1] == "bias":
        return P(MODEL) if columns else None
    return P(None, MODEL) if columns else P(MODEL, None)


def tensor_parallel(tree, num_hidden: int):
    """Constrain every parameter tree in `tree` to its `model_spec` layout. Call inside the
    shard_map (the "model" axis left automatic)."""

    def constrain(path, x):
        spec = model_spec(path, num_hidden)
        return x if spec is None else jax.lax.with_sharding_constraint(x, spec)

    return jax.tree_util.tree_map_with_path(constrain, tree)


def state_specs(state) -> object:
    """PartitionSpecs for a batch of TrainStates (leading run axis on per-run leaves).

    Leaves with an env axis (envs, observations, replay columns, running episode stats) are split
    over "data" as well, and so is each shard's own prioritized-replay tree; everything else of a run is replicated over "data". The counters every
    run shares are replicated everywhere.
    """
    runs_only = jax.tree.map(lambda _: P(RUNS), state)
    env_axis = lambda tree: jax.tree.map(lambda _: P(RUNS, DATA), tree)  # noqa: E731
    replay = runs_only.replay._replace(
        data=jax.tree.map(lambda _: P(RUNS, None, DATA), state.replay.data), row=P(), filled=P(),
        # each data shard keeps its own priority tree, side by side along the node axis
        priorities=None if state.replay.priorities is None else runs_only.replay.priorities._replace(nodes=P(RUNS, DATA)),
    )
    if hasattr(replay, "final"):  # the frames layout's per-column ring and flags
        replay = replay._replace(final=P(RUNS, None, DATA), final_next=P(RUNS, DATA), next_first=P(RUNS, DATA))
    return runs_only._replace(
        env_steps=P(),
        replay=replay,
        env_state=env_axis(state.env_state),
        obs=P(RUNS, DATA),
        episode_return=P(RUNS, DATA),
        episode_length=P(RUNS, DATA),
    )


def shard(fn, mesh: Mesh, in_specs, out_specs):
    """`jax.shard_map` without varying-axis tracking: the training loop's carries start from
    constants, and the learner averages gradients pmap-style (`learner.make_update`). Manual
    over runs and data; a used "model" axis is left to XLA (see `tensor_parallel`)."""
    manual = {RUNS, DATA} if mesh.shape[MODEL] > 1 else set(mesh.axis_names)
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, axis_names=manual, check_vma=False)


def hparam_specs(hp_axes) -> object:
    """Swept hyperparameters (vmap axis 0) are split over runs; shared ones are replicated."""
    return jax.tree.map(lambda a: P() if a is None else P(RUNS), hp_axes, is_leaf=lambda a: a is None)


def to_global(x, mesh: Mesh, spec) -> jax.Array:
    """A host array (identical on every process) as a global array with this sharding."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, NamedSharding(mesh, spec), lambda index: x[index])
