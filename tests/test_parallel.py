"""Several devices and hosts, on the CPU: forced host devices and two local processes.

Multi-device checks live in tests/check_parallel.py and run in their own pytest process, since
the device count must be forced before jax starts.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from test_checkpoint import assert_states_bitwise_equal, full_state, rows_without_timing

from purejaxdqn.host import checkpointing, run_directory, runner
from purejaxdqn import cli

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--total-steps", "4000", "--num-envs", "8", "--learning-starts", "800", "--batch-size", "32",
    "--buffer-size", "800", "--eval-every", "2000", "--num-chunks", "2", "--widths", "16",
    "--num-eval-envs", "4", "--seed", "3",
]  # fmt: skip


def env_with_devices(n: int) -> dict:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "PYTHONUNBUFFERED": "1"}


def train_cli(args, devices: int, cwd, timeout=600, **popen):
    cmd = [sys.executable, "-m", "purejaxdqn.train", *args]
    return subprocess.run(cmd, cwd=cwd, env=env_with_devices(devices), capture_output=True, text=True, timeout=timeout)


def test_multi_device_checks_on_8_forced_cpu_devices():
    """Data-parallel update == single-device update, gradients do not scale with N, replicas stay
    bitwise identical, seeds split across devices == one device (tests/check_parallel.py)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "check_parallel.py")],
        cwd=ROOT, env=env_with_devices(8), capture_output=True, text=True, timeout=2400,
    )  # fmt: skip
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_data_parallel_over_4_devices_solves_cartpole(tmp_path):
    """The cartpole preset, data-parallel over 4 forced CPU devices, ends solved (>= 475)."""
    out = tmp_path / "dp"
    proc = train_cli(["--mesh-data", "4", "--num-envs", "8", "--num-eval-envs", "8", "--output-dir", str(out)], 4, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 (runs) x 4 (data)" in proc.stdout
    summary = json.loads((out / run_directory.SUMMARY_FILE).read_text())
    assert summary["mesh"] == {"runs": 1, "data": 4}
    assert summary["final_eval_return_mean"][0] >= 475, summary["final_eval_return_mean"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_processes(args: list[list[str]], cwd, devices: int = 1, timeout_s: int = 120) -> list[subprocess.Popen]:
    """One `purejaxdqn.train` process per entry of `args` (its own options), joined into one
    multi-host run on localhost (a fresh port)."""
    port = free_port()
    return [
        subprocess.Popen(
            [sys.executable, "-m", "purejaxdqn.train", *own, "--coordinator-address", f"127.0.0.1:{port}",
             "--num-processes", str(len(args)), "--process-id", str(i), "--distributed-timeout", str(timeout_s)],
            cwd=cwd, env=env_with_devices(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i, own in enumerate(args)
    ]


def finish_processes(procs: list[subprocess.Popen], timeout: float = 420) -> list[tuple[str, str]]:
    """(stdout, stderr) of each process once it ends; any still running after `timeout` are killed."""
    try:
        return [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()


def test_two_processes_on_localhost_run_one_program(tmp_path):
    """Two processes x 2 devices = one 4-device data-parallel run; only process 0 writes (process 1,
    given no --output-dir, takes process 0's), and its metrics match the same run in one process
    with 4 devices."""
    out = tmp_path / "multi"
    procs = start_processes([[*TINY, "--mesh-data", "4", "--output-dir", str(out)], [*TINY, "--mesh-data", "4"]],
                            tmp_path, devices=2)  # fmt: skip
    results = finish_processes(procs)
    for p, (stdout, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr[-3000:]
    assert "2 processes" in results[0][0] and "final eval" not in results[1][0]
    assert (out / run_directory.SUMMARY_FILE).exists() and not (tmp_path / "runs").exists()
    summary = json.loads((out / run_directory.SUMMARY_FILE).read_text())
    assert summary["processes"] == 2 and summary["mesh"] == {"runs": 1, "data": 4}

    single = tmp_path / "single"
    proc = train_cli([*TINY, "--mesh-data", "4", "--output-dir", str(single)], 4, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    multi_rows = run_directory.read_jsonl(out / run_directory.METRICS_FILE)
    single_rows = run_directory.read_jsonl(single / run_directory.METRICS_FILE)
    for a, b in zip(multi_rows, single_rows):
        assert a["env_steps"] == b["env_steps"] and a["updates"] == b["updates"]
        assert a["episodes"] == b["episodes"]  # gathered from both hosts' envs
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)


# Two processes with one device each, each holding one of the 2 seeds (the runs axis spans the
# processes), so every per-run leaf of a checkpoint is split between them and a chunk needs no
# collective (quick on 2 cores); a checkpoint after every chunk, so a kill lands mid-run.
MULTI = [
    "--total-steps", "30000", "--num-chunks", "30", "--num-envs", "8", "--learning-starts", "800",
    "--batch-size", "32", "--buffer-size", "800", "--eval-every", "6000", "--widths", "16", "--num-eval-envs", "4",
    "--seed", "3", "--num-seeds", "2", "--mesh-runs", "2", "--checkpoint-every", "1", "--checkpoint-min-interval", "0",
    "--keep-checkpoints", "2", "--no-progress",
]  # fmt: skip


def on_both(*args: str) -> list[list[str]]:
    return [[*MULTI, *args], [*MULTI, *args]]


def wait_for_checkpoint(run_dir: Path, step: int, procs: list[subprocess.Popen], timeout: float = 300) -> None:
    """Poll until checkpoint `step` (or a later one) is complete; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        if (run_dir / "checkpoints").is_dir() and any(
            p.name.isdigit() and int(p.name) >= step for p in (run_dir / "checkpoints").iterdir()
        ):
            return
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint {step} while the run was going: {[p.poll() for p in procs]}")


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """MULTI run to the end by two processes into one run directory."""
    tmp = tmp_path_factory.mktemp("multihost")
    procs = start_processes(on_both("--output-dir", str(tmp / "whole")), tmp, timeout_s=60)
    for p, (_, stderr) in zip(procs, finish_processes(procs)):
        assert p.returncode == 0, stderr[-3000:]
    return tmp / "whole"


def test_two_processes_write_their_shards_into_one_run_directory(two_process_run):
    """Each process writes its own shards of every checkpoint (orbax: one store per process),
    the newest --keep-checkpoints are kept, and the last one restores in one process on one
    device, with each process's seed intact."""
    run_dir = two_process_run
    assert sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir()) == [29, 30]
    state_dir = run_dir / "checkpoints" / "30" / "state"
    assert (state_dir / "ocdbt.process_0").is_dir() and (state_dir / "ocdbt.process_1").is_dir()
    assert json.loads((run_dir / run_directory.CONFIG_FILE).read_text())["processes"] == 2
    step, state = full_state(run_dir)
    assert step == 30 and int(state.env_steps) == 30000
    kernel = np.asarray(jax.tree.leaves(state.learner.params)[-1])
    assert kernel.shape[0] == 2 and not np.array_equal(kernel[0], kernel[1])  # seeds 3 and 4, one per process


def test_two_processes_killed_mid_run_resume_to_the_bit_identical_end(two_process_run, tmp_path):
    """SIGKILL both processes after a random checkpoint; both resumed with --resume: the final
    state equals the uninterrupted run's bit for bit, and so do the logged rows."""
    killed = tmp_path / "killed"
    procs = start_processes(on_both("--output-dir", str(killed)), tmp_path, timeout_s=60)
    wait_for_checkpoint(killed, random.Random().randint(2, 20), procs)
    time.sleep(random.random() * 0.2)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    finish_processes(procs)
    killed_at = checkpointing.latest_step(killed)
    assert killed_at < 30, "the run ended before it was killed"

    procs = start_processes([["--resume", str(killed)], ["--resume", str(killed)]], tmp_path, timeout_s=60)
    results = finish_processes(procs)
    for p, (_, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr[-3000:]
    assert f"resumed from the checkpoint after chunk {killed_at}" in results[0][0]
    (step_a, state_a), (step_b, state_b) = full_state(two_process_run), full_state(killed)
    assert step_a == step_b == 30
    assert_states_bitwise_equal(state_a, state_b)
    for name in (run_directory.METRICS_FILE, run_directory.EVALS_FILE):
        assert rows_without_timing(two_process_run / name) == rows_without_timing(killed / name)


def test_a_lost_process_stops_the_other_with_one_line_and_an_intact_checkpoint(tmp_path):
    """SIGKILL process 1 mid-run: process 0 exits non-zero within --distributed-timeout with one
    line on stderr naming the intact checkpoint, and that checkpoint restores."""
    run_dir = tmp_path / "run"
    procs = start_processes(on_both("--output-dir", str(run_dir)), tmp_path, timeout_s=20)
    wait_for_checkpoint(run_dir, 3, procs)
    procs[1].send_signal(signal.SIGKILL)
    lost = time.monotonic()
    (_, stderr), _ = finish_processes(procs, timeout=60)
    assert procs[0].returncode == cli.EXIT_PEER and time.monotonic() - lost < 20
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert "stopped answering" in stderr and "is intact; continue with" in stderr and "on every process" in stderr, stderr
    step, state = full_state(run_dir)
    assert 3 <= step < 30 and int(state.env_steps) == step * 1000


def test_processes_naming_different_run_directories_are_refused(tmp_path):
    """Every process must name process 0's run directory (or none): one line, exit 2, on both,
    before anything is written."""
    procs = start_processes([[*TINY, "--output-dir", str(tmp_path / "a")], [*TINY, "--output-dir", str(tmp_path / "b")]],
                            tmp_path, timeout_s=60)  # fmt: skip
    for p, (_, stderr) in zip(procs, finish_processes(procs, timeout=120)):
        assert p.returncode == 2 and len(stderr.strip().splitlines()) == 1, stderr[-3000:]
        assert "--output-dir: process 1 names" in stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_missing_peer_aborts_instead_of_hanging(tmp_path):
    """Process 0 of 2 whose peer never starts gives up after the timeout (non-zero exit)."""
    proc = subprocess.run(
        [sys.executable, "-m", "purejaxdqn.train", *TINY, "--coordinator-address", f"127.0.0.1:{free_port()}",
         "--num-processes", "2", "--process-id", "0", "--distributed-timeout", "5", "--output-dir", str(tmp_path / "x")],
        cwd=tmp_path, env=env_with_devices(1), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode != 0
    assert not (tmp_path / "x" / run_directory.SUMMARY_FILE).exists()


BAD = [
    (["--mesh-data", "2"], "needs 2 devices but only 1"),
    (["--mesh-runs", "0"], "--mesh-runs"),
    (["--num-processes", "2"], "needs all three"),
    (["--coordinator-address", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "--process-id"),
    (["--coordinator-address", "nohost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
]


@pytest.mark.parametrize("argv,text", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_mesh_and_host_options(argv, text, capsys, monkeypatch):
    monkeypatch.setattr(runner, "prepare", lambda *a, **k: pytest.fail("training started"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and text in err, err


def test_envs_not_divisible_by_data_axis_is_refused(tmp_path):
    proc = train_cli([*TINY, "--mesh-data", "4", "--num-envs", "10"], 4, tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--num-envs: 10 is not divisible" in proc.stderr
