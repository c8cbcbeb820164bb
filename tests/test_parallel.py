"""Several devices and hosts, on the CPU: forced host devices and two local processes.

Multi-device checks live in tests/check_parallel.py and run in their own pytest process, since
the device count must be forced before jax starts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from purejaxdqn import cli, outputs, runner

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
        cwd=ROOT, env=env_with_devices(8), capture_output=True, text=True, timeout=900,
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
    summary = json.loads((out / outputs.SUMMARY_FILE).read_text())
    assert summary["mesh"] == {"runs": 1, "data": 4}
    assert summary["final_eval_return_mean"][0] >= 475, summary["final_eval_return_mean"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_localhost_run_one_program(tmp_path):
    """Two processes x 2 devices = one 4-device data-parallel run; only process 0 writes, and
    its metrics match the same run in one process with 4 devices."""
    port = free_port()
    outs = [tmp_path / f"p{i}" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "purejaxdqn.train", *TINY, "--mesh-data", "4", "--output-dir", str(outs[i]),
             "--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
             "--distributed-timeout", "120"],
            cwd=tmp_path, env=env_with_devices(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        results = [p.communicate(timeout=420) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (stdout, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr[-3000:]
    assert "2 process(es)" in results[0][0] and "final greedy eval" not in results[1][0]
    assert (outs[0] / outputs.SUMMARY_FILE).exists() and not outs[1].exists()
    summary = json.loads((outs[0] / outputs.SUMMARY_FILE).read_text())
    assert summary["processes"] == 2 and summary["mesh"] == {"runs": 1, "data": 4}

    single = tmp_path / "single"
    proc = train_cli([*TINY, "--mesh-data", "4", "--output-dir", str(single)], 4, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    multi_rows = outputs.read_jsonl(outs[0] / outputs.METRICS_FILE)
    single_rows = outputs.read_jsonl(single / outputs.METRICS_FILE)
    for a, b in zip(multi_rows, single_rows):
        assert a["env_steps"] == b["env_steps"] and a["updates"] == b["updates"]
        assert a["episodes"] == b["episodes"]  # gathered from both hosts' envs
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)


def test_missing_peer_aborts_instead_of_hanging(tmp_path):
    """Process 0 of 2 whose peer never starts gives up after the timeout (non-zero exit)."""
    proc = subprocess.run(
        [sys.executable, "-m", "purejaxdqn.train", *TINY, "--coordinator-address", f"127.0.0.1:{free_port()}",
         "--num-processes", "2", "--process-id", "0", "--distributed-timeout", "5", "--output-dir", str(tmp_path / "x")],
        cwd=tmp_path, env=env_with_devices(1), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode != 0
    assert not (tmp_path / "x" / outputs.SUMMARY_FILE).exists()


BAD = [
    (["--mesh-data", "2"], "needs 2 devices but only 1"),
    (["--mesh-runs", "0"], "--mesh-runs"),
    (["--num-processes", "2"], "needs all three"),
    (["--coordinator-address", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "--process-id"),
    (["--coordinator-address", "nohost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
]


@pytest.mark.parametrize("argv,text", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_mesh_and_host_options(argv, text, capsys, monkeypatch):
    monkeypatch.setattr(runner, "train_runs", lambda *a, **k: pytest.fail("training started"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and text in err, err


def test_envs_not_divisible_by_data_axis_is_refused(tmp_path):
    proc = train_cli([*TINY, "--mesh-data", "4", "--num-envs", "10"], 4, tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--num-envs: 10 is not divisible" in proc.stderr
