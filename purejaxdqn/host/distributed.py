"""The processes of a multi-host run: start-up through `jax.distributed` (JAX's own engine),
and what the processes must agree on (process 0's decisions, the run directory, barriers).

Every process runs the same program on the global mesh (algorithm/parallel.py); only process 0
writes the run files, every process its own shards of each checkpoint.
"""

from __future__ import annotations

import socket
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from purejaxdqn.config import ConfigError


def fetch(tree):
    """Host copies of (small) global arrays, gathered from every process when multi-host."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


MAX_PROCESSES = 65_536  # --num-processes
MAX_TIMEOUT_S = 86_400  # --distributed-timeout: a day
DEFAULT_TIMEOUT_S = 300  # seconds to wait for the processes to join, and for one that stops answering
_distributed = {"timeout_s": DEFAULT_TIMEOUT_S}  # as given to initialize_distributed


def barrier_timeout_s() -> int:
    """How long a multi-host checkpoint save waits for the other processes: half the peer
    timeout, so a dead peer is reported by the waiting process before JAX's heartbeat abort."""
    return max(1, _distributed["timeout_s"] // 2)


def initialize_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None,
                           timeout_s: int = DEFAULT_TIMEOUT_S) -> None:  # fmt: skip
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
