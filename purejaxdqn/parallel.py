"""Several devices and hosts: a two-axis device mesh and `jax.shard_map` over it.

- axis "runs": independent runs (vmapped seeds x settings) split across devices; no
  communication.
- axis "data": one run split data-parallel: each device steps its own slice of the envs, keeps
  its own replay shard and samples its own share of the batch; gradients are averaged across
  the axis (see `learner.make_update`), so parameters stay identical on every replica.
- axis "model": the Q-network's hidden dense layers split tensor-parallel (kernels by columns,
  then rows, alternating). The shard_map is manual over runs and data only; "model" is left to
  XLA's partitioner, which follows the sharding constraints of `tensor_parallel` and inserts
  the collectives.

Across hosts the same program runs on the global mesh through `jax.distributed` (every
process runs this code; only process 0 writes the run files, every process its own shards of
each checkpoint).
"""

from __future__ import annotations

import socket
import time
from typing import NamedTuple

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from purejaxdqn.config import Config, ConfigError

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
    config: Config, num_runs: int, num_devices: int, runs: int | None = None, data: int | None = None,
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


def device_state_bytes(one_state, mesh_shape: MeshShape, num_hidden: int) -> int:
    """Bytes of one run's state (`jax.eval_shape` of init) held by each device of its mesh:
    the env-axis leaves (`state_specs`) split over "data", the hidden layers of the learner's
    parameter trees (`model_spec`) over "model", everything else whole."""
    from purejaxdqn.memory import leaf_bytes

    batched_specs = state_specs(one_state)

    def device_bytes(path, x, spec):
        split = mesh_shape.data if DATA in tuple(spec) else 1
        if path and getattr(path[0], "name", None) in ("learner", "best") and model_spec(path, num_hidden) is not None:
            split *= mesh_shape.model
        return leaf_bytes(x) // split

    sizes = jax.tree_util.tree_map_with_path(device_bytes, one_state, batched_specs)
    return sum(jax.tree.leaves(sizes))


def state_specs(state) -> object:
    """PartitionSpecs for a batch of TrainStates (leading run axis on per-run leaves).

    Leaves with an env axis (envs, observations, replay columns, running episode stats) are split
    over "data" as well, and so is each shard's own prioritized-replay tree; everything else of a run is replicated over "data". The counters every
    run shares are replicated everywhere.
    """
    runs_only = jax.tree.map(lambda _: P(RUNS), state)
    env_axis = lambda tree: jax.tree.map(lambda _: P(RUNS, DATA), tree)  # noqa: E731
    return runs_only._replace(
        env_steps=P(),
        replay=runs_only.replay._replace(
            data=jax.tree.map(lambda _: P(RUNS, None, DATA), state.replay.data), row=P(), filled=P(),
            # each data shard keeps its own priority tree, side by side along the node axis
            priorities=None if state.replay.priorities is None else runs_only.replay.priorities._replace(nodes=P(RUNS, DATA)),
        ),
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


def fetch(tree):
    """Host copies of (small) global arrays, gathered from every process when multi-host."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


_distributed = {"timeout_s": 300}  # as given to initialize_distributed


def barrier_timeout_s() -> int:
    """How long a multi-host checkpoint save waits for the other processes: half the peer
    timeout, so a dead peer is reported by the waiting process before JAX's heartbeat abort."""
    return max(1, _distributed["timeout_s"] // 2)


def initialize_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None,
                           timeout_s: int = 300) -> None:  # fmt: skip
    """Join a multi-host run through `jax.distributed.initialize` (JAX's own engine).

    Call before anything touches a device. All three settings or none; checked first.
    """
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if not any(given):
        return
    if not all(given):
        raise ConfigError(
            "--coordinator-address/--num-processes/--process-id",
            "a multi-host run needs all three (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)",
        )
    if num_processes < 1:
        raise ConfigError("--num-processes", f"must be a positive integer, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ConfigError("--process-id", f"{process_id} is not in [0, {num_processes})")
    if ":" not in coordinator:
        raise ConfigError("--coordinator-address", f"expected HOST:PORT, got {coordinator!r}")
    if process_id != 0:
        wait_for_coordinator(coordinator, timeout_s)
    # A process that sends no heartbeat for timeout_s counts as dead: JAX then aborts the others
    # (SIGABRT). Checkpoint barriers give up after half that (`barrier_timeout_s`), so a process
    # waiting in one for a dead peer fails with a Python error and its one line first.
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id,
        initialization_timeout=timeout_s, heartbeat_timeout_seconds=timeout_s,
    )  # fmt: skip
    _distributed["timeout_s"] = timeout_s
    if jax.process_count() != num_processes:
        raise ConfigError("--num-processes", f"{num_processes} given but {jax.process_count()} processes joined")


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Wait until process 0's coordinator accepts connections; ConfigError after `timeout_s`.

    jax.distributed.initialize aborts the whole process (SIGABRT, a C++ stack trace) when the
    coordinator never answers; checking first turns that into one line. (Process 0 itself cannot
    know ahead whether its peers will come: there jax's abort after the timeout remains.)
    """
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=min(5.0, timeout_s)):
                return
        except (OSError, ValueError):
            if time.monotonic() >= deadline:
                raise ConfigError("--coordinator-address", f"no coordinator answered at {address} within "
                                  f"{timeout_s} s (--distributed-timeout); is process 0 running?") from None  # fmt: skip
            time.sleep(0.2)


def is_main_process() -> bool:
    return jax.process_index() == 0


def multi_host() -> bool:
    """Whether this is one process of several (never starts JAX's backends by itself)."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def failed_collective(err: BaseException) -> bool:
    """Whether `err` is a collective or barrier with the other processes of a multi-host run that
    failed, i.e. one of them died or stopped answering. JAX (0.10) raises a failed barrier as
    JaxRuntimeError, and a failed gloo (CPU) collective as a ValueError naming Gloo."""
    return multi_host() and (isinstance(err, jax.errors.JaxRuntimeError) or (isinstance(err, ValueError) and "Gloo" in str(err)))


def main_value(value):
    """Process 0's `value` (a number or bool), on every process: decisions that make processes
    enter a collective or a barrier (e.g. whether a checkpoint is due after some seconds) must
    be the same everywhere, or they deadlock."""
    if not multi_host():
        return value
    return type(value)(multihost_utils.broadcast_one_to_all(np.asarray(value)))


def sync(name: str) -> None:
    """Wait until every process gets here (nothing to do in a single process)."""
    if multi_host():
        multihost_utils.sync_global_devices(name)


def same_run_dir(own: str | None, option: str) -> str:
    """The run directory of a multi-host run: process 0's. `own` is what this process was given
    (None: take process 0's); a process given another path raises ConfigError on every process
    (gathered, so all refuse together and none waits for the others)."""
    text = (own or "").encode()
    length = int(np.max(multihost_utils.process_allgather(np.int32(len(text)))))
    padded = np.frombuffer(text.ljust(length, b"\0"), np.uint8)  # process 0 always names one: length > 0
    paths = [bytes(row).rstrip(b"\0").decode() for row in multihost_utils.process_allgather(padded)]
    main = paths[0]
    for index, path in enumerate(paths[1:], 1):
        if path and path != main:
            raise ConfigError(option, f"process {index} names {path} but process 0 {main}: every process of a "
                              "multi-host run writes into one run directory, at the same path on every host")  # fmt: skip
    return main
