"""Faults: --overwrite, a locked directory, kills before/during/after saves, SIGINT/SIGTERM, a
full disk. Each ends in one clear line and a run directory that resumes and is never mixed."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

from purejaxdqn.host import checkpointing, run_directory
from purejaxdqn import cli, load_policy

from tiny import TINY

# ~0.1 s per chunk on a 2-core CPU, a checkpoint after every chunk: long enough to stop mid-run.
LONG = [*TINY, "--total-steps", "40000", "--num-chunks", "40", "--eval-every", "4000",
        "--checkpoint-every", "1", "--checkpoint-min-interval", "0", "--keep-checkpoints", "2"]  # fmt: skip


def steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in (run_dir / run_directory.CHECKPOINT_DIR).iterdir() if p.name.isdigit())


def chunks(run_dir: Path) -> list[int]:
    return [row["chunk"] for row in run_directory.read_jsonl(run_dir / run_directory.METRICS_FILE)]


def tree_hash(root: Path) -> dict[str, str]:
    """Every file and directory under root -> its content ('dir' for directories)."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else p.read_bytes().hex() for p in sorted(root.rglob("*"))}


def start(args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "purejaxdqn.train", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting (process exit status {proc.poll()})")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 3-chunk run with a checkpoint after every chunk."""
    run_dir = tmp_path_factory.mktemp("faults") / "run"
    assert cli.main([*TINY, "--checkpoint-min-interval", "0", "--output-dir", str(run_dir)]) == 0
    return run_dir


def test_overwrite_replaces_the_whole_previous_run_checkpoints_included(finished, tmp_path, capsys):
    """A new run into an old directory never leaves the old weights behind for evaluate,
    load_policy or --resume (the old checkpoints 1-3 would shadow the new run's checkpoint 2)."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / "notes.txt").write_text("mine")
    old = load_policy(out).params
    assert cli.main([*TINY, "--num-chunks", "2", "--seed", "1", "--output-dir", str(out), "--overwrite"]) == 0
    assert steps(out) == [2] and load_policy(out).step == 2
    new = load_policy(out).params
    assert not all(np.array_equal(a, b) for a, b in zip(jax_leaves(old), jax_leaves(new)))
    assert chunks(out) == [0, 1] and (out / "notes.txt").read_text() == "mine"
    assert len(run_directory.read_jsonl(out / run_directory.SEGMENTS_FILE)) == 1


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_a_save_that_orbax_skips_or_that_fails_is_an_error(tmp_path, monkeypatch):
    """orbax returns False (and writes nothing) for a step not newer than the newest there."""
    from typing import NamedTuple

    class Learner(NamedTuple):
        params: dict

    class State(NamedTuple):  # the parts of a TrainState a save reads
        learner: Learner
        best: None = None

    state = State(Learner({"w": np.ones(3, np.float32)}))
    mngr = checkpointing.manager(tmp_path, keep=3)
    checkpointing.save(mngr, 5, state)
    mngr.wait_until_finished()
    with pytest.raises(checkpointing.SaveError, match="not saved.*already holds checkpoint 5"):
        checkpointing.save(mngr, 2, state)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    with pytest.raises(checkpointing.SaveError, match="saving checkpoint 6 .* No space left on device"):
        checkpointing.save(mngr, 6, state)
    checkpointing.finish(mngr)


def test_a_locked_run_directory_is_refused_and_untouched(finished, tmp_path, capsys):
    """While another process holds a run directory, train --overwrite and --resume on it get one
    line and exit 2, and change nothing."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = tree_hash(tmp_path)
    lock = run_directory.lock_run_dir(out, create=False)  # as a running training process holds it
    try:
        for argv in (["--resume", str(out)], [*TINY, "--output-dir", str(out), "--overwrite"]):
            assert cli.main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "in use by another training process" in err, err
            assert tree_hash(tmp_path) == before
    finally:
        lock.close()
    assert cli.main(["--resume", str(out)]) == 0  # free again


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_over(tmp_path):
    """SIGKILL before any checkpoint (the default 60 s interval: the first minute of any run):
    --resume starts over from the saved config.json, says so, and drops the partial logs."""
    out = tmp_path / "run"
    proc = start([*LONG, "--checkpoint-min-interval", "600", "--output-dir", str(out)], tmp_path)
    wait_for(lambda: (out / run_directory.METRICS_FILE).exists() and len(chunks(out)) >= 2, proc)
    proc.kill()
    proc.wait()
    assert not steps(out)
    partial = len(chunks(out))

    resumed = subprocess.run([sys.executable, "-m", "purejaxdqn.train", "--resume", str(out)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "no complete checkpoint" in resumed.stdout and "starting it over from scratch" in resumed.stdout
    assert chunks(out) == list(range(40)) and partial >= 2
    assert [e["env_steps"] for e in run_directory.read_jsonl(out / run_directory.EVALS_FILE)] == list(range(4000, 40001, 4000))
    assert steps(out)[-1] == 40


def test_kill_during_a_save_resumes_from_the_previous_one_and_clears_the_partial_save(finished, tmp_path):
    """A kill during a save leaves orbax's temporary directory: resume ignores it, continues
    from the newest complete checkpoint and removes it."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    shutil.rmtree(out / run_directory.CHECKPOINT_DIR / "3")
    partial = out / run_directory.CHECKPOINT_DIR / "3.orbax-checkpoint-tmp-1764000000000000"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "junk").write_bytes(b"\x00" * 100)
    assert cli.main(["--resume", str(out)]) == 0
    assert steps(out) == [1, 2, 3] and not partial.exists()
    assert chunks(out) == [0, 1, 2]


def test_kill_after_the_last_save_resume_writes_the_summary(finished, tmp_path, capsys):
    """Killed after the final checkpoint but before summary.json: --resume runs no chunk and
    completes the directory, with the first process's timings kept."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    first = json.loads((out / run_directory.SUMMARY_FILE).read_text())
    (out / run_directory.SUMMARY_FILE).unlink()
    (out / run_directory.CURVES_FILE).unlink()
    assert cli.main(["--resume", str(out)]) == 0
    summary = json.loads((out / run_directory.SUMMARY_FILE).read_text())
    assert summary["final_eval_return_mean"] == first["final_eval_return_mean"]
    assert summary["segments"] == 2 and summary["resumed_from_chunk"] == 3
    assert summary["compile_s"] > first["compile_s"]  # both processes' compiles
    assert summary["run_s"] == pytest.approx(sum(r["chunk_s"] for r in run_directory.read_jsonl(out / run_directory.METRICS_FILE)) + summary["this_segment"]["run_s"])
    assert (out / run_directory.CURVES_FILE).exists() and chunks(out) == [0, 1, 2]


def test_resume_keeps_the_runs_own_checkpoint_cadence(finished, tmp_path):
    """The cadence is saved in config.json; a resumed run keeps it instead of the defaults
    (which would save only at the end: min interval 60 s)."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    for step in ("2", "3"):
        shutil.rmtree(out / run_directory.CHECKPOINT_DIR / step)
    assert json.loads((out / run_directory.CONFIG_FILE).read_text())["checkpoint"] == {"every": 1, "min_interval_s": 0.0, "keep": 3}
    assert cli.main(["--resume", str(out)]) == 0
    assert steps(out) == [1, 2, 3]


def test_a_full_disk_is_one_line_naming_the_file_and_the_intact_checkpoint(tmp_path, capsys, monkeypatch):
    """ENOSPC on a log write: exit 1, one line naming metrics.jsonl and the checkpoint that is
    intact; --resume then completes the run."""
    out = tmp_path / "run"
    real_open, calls = pathlib.Path.open, []

    def open_or_full(self, mode="r", *args, **kwargs):
        if self.name == run_directory.METRICS_FILE and "a" in mode:
            calls.append(1)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", open_or_full)
    assert cli.main([*TINY, "--checkpoint-min-interval", "0", "--output-dir", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "metrics.jsonl" in err and "No space left on device" in err and "checkpoint 1" in err and "--resume" in err
    monkeypatch.undo()
    assert cli.main(["--resume", str(out)]) == 0
    assert chunks(out) == [0, 1, 2] and steps(out) == [1, 2, 3]


def test_a_failed_checkpoint_save_is_one_line(tmp_path, capsys, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    assert cli.main([*TINY, "--output-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "saving checkpoint 3" in err and "No space left" in err, err


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_with_one_line_and_a_resumable_directory(tmp_path, capsys, sig, code):
    """Ctrl-C / SIGTERM mid-run: exit 130 / 143, one line saying how to resume; meanwhile a
    second process on the same directory is refused; --resume then ends the run unmixed."""
    out = tmp_path / "run"
    proc = start([*LONG, "--output-dir", str(out)], tmp_path)
    wait_for(lambda: (out / run_directory.CHECKPOINT_DIR).exists() and len(steps(out)) >= 1, proc)
    assert cli.main(["--resume", str(out)]) == 2  # a second process on the same directory
    assert "in use by another training process" in capsys.readouterr().err
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err[-2000:]
    assert signal.Signals(sig).name in err and f"--resume {out}" in err and "is intact" in err
    if sig == signal.SIGINT:
        assert cli.main(["--resume", str(out)]) == 0
        assert chunks(out) == list(range(40)) and steps(out)[-1] == 40
    else:
        checkpointing.latest_step(out)
        run_directory.check_logs(out)


def test_ctrl_c_in_the_first_minute_keeps_the_run(tmp_path):
    """With the default --checkpoint-min-interval (60 s) no save is due yet: the signal still
    lets the chunk in flight finish and saves it, so the README's `--resume` continues (not
    "starts over") and ends the run with every chunk logged once."""
    out = tmp_path / "run"
    args = [a for a in LONG if a not in ("--checkpoint-min-interval", "0")]
    proc = start([*args, "--output-dir", str(out)], tmp_path)
    wait_for(lambda: (out / run_directory.METRICS_FILE).exists() and len(chunks(out)) >= 2, proc)
    assert not (out / run_directory.CHECKPOINT_DIR).exists() or not steps(out)  # none due yet
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and len(err.strip().splitlines()) == 1, err[-2000:]
    saved = checkpointing.latest_step(out)
    assert f"checkpoint {saved} (after chunk {saved}) is intact" in err and 2 <= saved < 40
    assert chunks(out) == list(range(saved))  # the checkpoint is of the last chunk logged
    assert cli.main(["--resume", str(out)]) == 0
    assert chunks(out) == list(range(40)) and steps(out)[-1] == 40


def fail_writing(monkeypatch, name: str):
    """The first write of a file called `name` (or its temporary twin) fails as a full disk
    does, after creating the file empty."""
    import builtins
    import io

    real, failed = io.open, []

    def open_or_full(file, mode="r", *args, **kwargs):
        if not failed and Path(str(file)).name in (name, name + ".tmp") and any(m in mode for m in "wax"):
            failed.append(file)
            real(file, mode, *args, **kwargs).close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", open_or_full)
    monkeypatch.setattr(builtins, "open", open_or_full)
    return failed


WRITTEN = [run_directory.CONFIG_FILE, run_directory.SEGMENTS_FILE, run_directory.METRICS_FILE, run_directory.EVALS_FILE,
           run_directory.CURVES_FILE, run_directory.SUMMARY_FILE]  # fmt: skip


@pytest.mark.parametrize("name", WRITTEN)
def test_a_full_disk_on_any_file_train_writes_is_one_line_and_the_run_resumes(name, tmp_path, capsys, monkeypatch):
    """ENOSPC on each file a run writes: exit 1, one line naming the file, no temporary file
    left; config.json failing leaves nothing at all, any other file a run that --resume ends
    exactly as one never stopped."""
    out = tmp_path / "runs" / "run"
    failed = fail_writing(monkeypatch, name)
    assert cli.main([*TINY, "--checkpoint-min-interval", "0", "--output-dir", str(out)]) == 1
    monkeypatch.undo()
    err = capsys.readouterr().err.strip()
    assert failed and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert name in err and "No space left on device" in err, err
    assert not list(tmp_path.rglob("*.tmp"))
    if name == run_directory.CONFIG_FILE:
        assert "nothing was written" in err and not out.parent.exists()
        return
    assert "--resume" in err
    assert cli.main(["--resume", str(out)]) == 0
    assert chunks(out) == [0, 1, 2] and steps(out) == [1, 2, 3] and (out / run_directory.SUMMARY_FILE).is_file()


def test_a_full_disk_on_the_gif_keeps_the_evaluation_and_the_old_gif(finished, tmp_path, capsys, monkeypatch):
    from purejaxdqn import evaluate

    gif = tmp_path / "x.gif"
    gif.write_bytes(b"the old GIF")
    fail_writing(monkeypatch, gif.name)
    assert evaluate.main([str(finished), "--episodes", "2", "--gif", str(gif)]) == 1
    out, err = capsys.readouterr()
    assert "mean return" in out and len(err.strip().splitlines()) == 1 and "--gif: cannot write" in err, err
    assert gif.read_bytes() == b"the old GIF" and not list(tmp_path.glob("*.tmp"))


def test_a_failed_earlier_save_is_named_by_its_own_checkpoint(tmp_path, capsys, monkeypatch):
    """orbax reports a failed asynchronous save at the next one: the line names the checkpoint
    whose temporary directory is left, not the one being started."""
    real = ocp.CheckpointManager.save

    def earlier_failed(self, step, *args, **kwargs):
        if step == 2:  # started in the background, its files half written when the disk fills
            (Path(self.directory) / f"2{checkpointing.PARTIAL_MARK}-1").mkdir()
            return True
        if step == 3:  # orbax waits for the save before it, which failed
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", earlier_failed)
    assert cli.main([*TINY, "--checkpoint-min-interval", "0", "--output-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert "saving checkpoint 2 " in err and "checkpoint 1 (after chunk 1) is intact" in err, err


def test_an_emptied_step_directory_falls_back_to_the_newest_complete_checkpoint(finished, tmp_path, capsys):
    from purejaxdqn import evaluate

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / run_directory.CHECKPOINT_DIR / "99").mkdir()
    assert evaluate.main([str(run), "--episodes", "2"]) == 0
    assert "checkpoint after chunk 3" in capsys.readouterr().out
    assert cli.main(["--resume", str(run)]) == 0
    assert steps(run) == [1, 2, 3]  # the stray directory is gone: no later save collides with it
