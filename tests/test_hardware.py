"""Start-up settings (purejaxdqn/hardware.py): host devices per core and the persistent
compilation cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys


TINY = [
    "--total-steps", "2000", "--num-envs", "4", "--learning-starts", "400", "--batch-size", "32",
    "--buffer-size", "400", "--eval-every", "1000", "--num-chunks", "2", "--widths", "8",
    "--num-eval-envs", "2", "--no-progress",
]  # fmt: skip


def _cli(args, tmp_path, **env):
    return subprocess.run(
        [sys.executable, "-m", "purejaxdqn.train", *TINY, *args], cwd=tmp_path, capture_output=True, text=True,
        timeout=600, env={**os.environ, **env},
    )  # fmt: skip


def test_runs_split_over_cpu_cores_by_default_and_can_be_turned_off(tmp_path):
    """On a CPU the command splits independent runs over host devices and says so; with
    --cpu-devices 1 it keeps one device. Both give each seed's run (same seeds, same table)."""
    env = {"XLA_FLAGS": "", "PUREJAXDQN_CACHE_DIR": "off"}
    split = _cli(["--num-seeds", "2", "--cpu-devices", "2", "--output-dir", str(tmp_path / "a")], tmp_path, **env)
    assert split.returncode == 0, split.stderr
    assert "runs split over 2 host devices" in split.stdout
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["mesh"] == {"runs": 2, "data": 1}
    one = _cli(["--num-seeds", "2", "--cpu-devices", "1", "--output-dir", str(tmp_path / "b")], tmp_path, **env)
    assert one.returncode == 0, one.stderr
    assert "host devices" not in one.stdout
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["mesh"] == {"runs": 1, "data": 1}
    bad = _cli(["--cpu-devices", "0", "--output-dir", str(tmp_path / "c")], tmp_path, **env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--cpu-devices" in bad.stderr
    assert not (tmp_path / "c").exists()


def test_compilation_cache_is_written_where_asked_and_can_be_turned_off(tmp_path):
    """--compilation-cache DIR fills DIR (and a rerun still trains); 'off' writes no cache; the
    PUREJAXDQN_CACHE_DIR variable moves the default."""
    cache = tmp_path / "cache"
    first = _cli(["--compilation-cache", str(cache), "--output-dir", str(tmp_path / "a")], tmp_path)
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in cache.iterdir())
    assert entries, "no compiled program was cached"
    again = _cli(["--compilation-cache", str(cache), "--output-dir", str(tmp_path / "b")], tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["final_eval_return_mean"] == json.loads(
        (tmp_path / "b" / "summary.json").read_text()
    )["final_eval_return_mean"]  # a cached program gives the same run
    moved = tmp_path / "moved"
    by_env = _cli(["--output-dir", str(tmp_path / "c")], tmp_path, PUREJAXDQN_CACHE_DIR=str(moved))
    assert by_env.returncode == 0, by_env.stderr
    assert moved.is_dir() and any(moved.iterdir())
    off = _cli(["--compilation-cache", "off", "--output-dir", str(tmp_path / "d")], tmp_path,
               PUREJAXDQN_CACHE_DIR=str(tmp_path / "never"))  # fmt: skip
    assert off.returncode == 0, off.stderr
    assert not (tmp_path / "never").exists()
