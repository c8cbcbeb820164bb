"""Start-up and shut-down (issue #19, item 4): summary.json's split of the command's wall time,
what the command leaves unimported until it needs it, and the XLA:GPU default flags (item 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tiny import TINY

from purejaxdqn.host import hardware, progress

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
import startup

SPANS = ("interpreter", "imports", "backend_start", "plan", "prepare", "compile", "run", "checkpoint_saves", "logging",
         "summary_and_plot", "other")  # fmt: skip

# A tiny training run as the command line runs it (purejaxdqn.train.main), with a look at what is
# imported when training is done (just before the summary and the plot), and an exit handler that
# a finished single-process command never runs (it ends at once: train.main).
SPY = textwrap.dedent("""
    import atexit, json, sys
    from purejaxdqn import train
    from purejaxdqn.host import hardware, runner

    seen = {}
    finish = runner.Training._finish

    def spy(self, *args, **kwargs):
        seen.update(seaborn_deferred=hardware.deferred("seaborn"),
                    loaded=[m for m in ("seaborn", "scipy.stats", "pandas") if m in sys.modules and not hardware.deferred(m)])
        print("SEEN", json.dumps(seen))
        return finish(self, *args, **kwargs)

    runner.Training._finish = spy
    from purejaxdqn.cli import program
    import_environments = program.import_environments

    def imported():
        import_environments()
        seen.update(pending_after_imports=[m for m in hardware.RENDER_MODULES if hardware.deferred(m)])

    program.import_environments = imported
    sys.argv = ["purejaxdqn-train", *sys.argv[1:]]
    atexit.register(print, "INTERPRETER SHUTDOWN")
    sys.exit(train.main())
""")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run of the command (a few seconds of training, warm or cold cache alike)."""
    out = tmp_path_factory.mktemp("startup") / "run"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", SPY, *TINY, "--output-dir", str(out)], check=False, capture_output=True,
                          text=True, timeout=600, cwd=out.parent)  # fmt: skip
    external = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.split("SEEN", 1)[1].splitlines()[0])
    return out, json.loads((out / "summary.json").read_text()), seen, external, proc.stdout


def test_summary_splits_the_wall_time_into_named_parts(tiny_run):
    out, summary, _, external, _ = tiny_run
    split, wall = summary["wall_split_s"], summary["wall_s"]
    assert set(split) == set(SPANS)
    assert all(v >= 0 for v in split.values())
    assert sum(split.values()) == pytest.approx(wall, abs=1e-6)
    assert 0 < wall <= external  # process creation to summary.json's write, inside what the parent saw
    assert split["compile"] == summary["compile_s"] and split["run"] == summary["run_s"]
    assert split["checkpoint_saves"] == summary["checkpoint_save_s"]
    assert split["imports"] > 0 and split["summary_and_plot"] > 0
    cpu = summary["wall_split_cpu_s"]
    assert {"interpreter", "imports", "plan", "prepare", "summary_and_plot", "total"} <= set(cpu)
    assert all(v >= 0 for v in cpu.values()) and cpu["imports"] <= cpu["total"]
    # summary.json is written last, after curves.png; the other keys are still there
    assert (out / "summary.json").stat().st_mtime_ns >= (out / "curves.png").stat().st_mtime_ns
    assert {"compile_s", "run_s", "total_s", "env_steps_per_s", "settings"} <= set(summary)


def test_renderers_plotting_libraries_are_not_run_before_training_ends(tiny_run):
    """gymnax imports seaborn (and through it scipy.stats and pandas) and matplotlib for its
    renderers: the command leaves them unrun (matplotlib runs in the background from the first
    chunk on, for the plot); the run still checkpointed (orbax, imported during the run)."""
    out, _, seen, _, _ = tiny_run
    assert seen["pending_after_imports"] == list(hardware.RENDER_MODULES)  # matplotlib too, until the run's plot
    assert seen["seaborn_deferred"] is True
    assert seen["loaded"] == []
    assert (out / "curves.png").stat().st_size > 0
    assert (out / "checkpoints").is_dir()


def test_a_finished_command_ends_at_once_with_its_lines_written(tiny_run):
    """Single-process, a finished run skips the interpreter's shutdown (os._exit, ~0.1 s of
    teardown) once its files are closed; its last lines still reach stdout."""
    out, _, _, _, stdout = tiny_run
    assert stdout.rstrip().splitlines()[-1] == f"outputs: {out}"
    assert "INTERPRETER SHUTDOWN" not in stdout


def test_deferred_imports_run_a_module_at_its_first_use():
    code = textwrap.dedent("""
        import sys
        from purejaxdqn.host import hardware
        with hardware.deferred_imports(["colorsys", "json"]):
            import colorsys, json  # json was imported already (by now): left as it is
        assert hardware.deferred("colorsys") and not hardware.deferred("json")
        assert colorsys.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)  # first use: it runs now
        assert not hardware.deferred("colorsys")
        with hardware.deferred_imports(["colorsys", "wave", "xml", "xml.dom"]):
            import wave
            import xml.dom as dom1  # reads xml.dom on the package: both stay pending
            from xml import dom as dom2  # a deferred submodule asked of its pending package
        import wave  # imported again: still pending
        assert hardware.deferred("wave") and hardware.deferred("xml") and hardware.deferred("xml.dom") and dom1 is dom2
        hardware.run_deferred(["xml", "xml.dom", "json"]).join()  # in a background thread
        assert not hardware.deferred("xml") and not hardware.deferred("xml.dom")
        from xml.dom import minidom
        assert minidom.parseString("<a/>").documentElement.tagName == "a"
        assert wave.WAVE_FORMAT_PCM == 1 and not hardware.deferred("wave")  # its first use ran it
        with hardware.deferred_imports(["no_such_module_here"]):
            try:
                import no_such_module_here  # noqa: F401
            except ImportError:
                print("ok")
    """)
    code = "import json\n" + code
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_xla_flags_defaults_never_override_the_users():
    defaults = ("--xla_gpu_enable_command_buffer=FUSION", "--xla_gpu_graph_min_graph_size=2")
    assert hardware.xla_flags_with_defaults("", defaults) == (" ".join(defaults), defaults)
    user = "--xla_gpu_enable_command_buffer= --xla_force_host_platform_device_count=2"
    flags, added = hardware.xla_flags_with_defaults(user, defaults)
    assert added == ("--xla_gpu_graph_min_graph_size=2",)
    assert flags == user + " --xla_gpu_graph_min_graph_size=2"  # the user's own flags first, untouched
    assert hardware.xla_flags_with_defaults(user, ()) == (user, ())
    both = "--xla_gpu_enable_command_buffer=CUBLAS --xla_gpu_graph_min_graph_size=5"
    assert hardware.xla_flags_with_defaults(both, defaults) == (both, ())
    # a boolean flag the user turned off by name counts as set
    assert hardware.xla_flags_with_defaults("--noxla_gpu_autotune", ("--xla_gpu_autotune=true",))[1] == ()
    assert hardware.flag_name("--xla_gpu_autotune_level=0") == "xla_gpu_autotune_level"


def test_gpu_flags_are_added_only_on_a_gpu_and_said():
    defaults = ("--xla_gpu_enable_command_buffer=FUSION",)
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    assert hardware.add_gpu_xla_flags(defaults, env, gpu=False) == () and env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
    assert hardware.add_gpu_xla_flags(defaults, env, gpu=True) == defaults
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_gpu_enable_command_buffer=FUSION"
    assert hardware.add_gpu_xla_flags(defaults, env, gpu=True) == ()  # set now: nothing more to add
    empty: dict = {}
    assert hardware.add_gpu_xla_flags((), empty, gpu=True) == () and empty == {}
    assert hardware.gpu_wanted({"JAX_PLATFORMS": "cpu"}) is False
    # no GPU has measured a setting yet: the project's defaults stay empty until the GPU suite does
    assert hardware.GPU_XLA_FLAGS == ()
    assert all(f.startswith("--xla_gpu_") and "=" in f for f in hardware.GPU_XLA_FLAGS)


def test_the_cpu_backend_takes_xla_gpu_flags():
    """XLA:GPU flags are known to every jaxlib (the CPU one ignores them), so a default tuple
    never stops a CPU run; an unknown flag would abort it."""
    env = {**os.environ, "XLA_FLAGS": "--xla_gpu_enable_command_buffer=FUSION --xla_gpu_graph_min_graph_size=2",
           "JAX_PLATFORMS": "cpu"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", "import jax; print(float(jax.numpy.ones(1)[0]))"], env=env,
                          check=False, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "1.0", proc.stderr


def test_wall_clock_spans_add_up():
    clock = progress.WallClock()
    assert clock.split(run=1.0) == (0.0, {}) and clock.cpu_split() == {}
    clock.add("imports", 1.0)  # unstarted: nothing kept
    clock.start(0.25)
    with clock.phase("plan"):
        time.sleep(0.01)
    with clock.phase("plan"):  # a name used again adds up
        time.sleep(0.01)
    time.sleep(0.03)
    wall, parts = clock.split(run=0.01)
    assert parts["interpreter"] == 0.25 and parts["plan"] >= 0.02 and parts["run"] == 0.01 and parts["other"] > 0
    assert sum(parts.values()) == pytest.approx(wall)
    assert set(clock.cpu_split()) == {"interpreter", "plan", "total"}
    age = progress.process_age_s()
    assert age is None or 0 < age < 24 * 3600


def test_startup_statistics():
    rows = [{"external": 3.0, "run": 1.0}, {"external": 1.0, "run": 2.0}, {"external": 2.0}]
    assert startup.stats(rows) == {"external": {"median": 2.0, "min": 1.0, "max": 3.0}}


def test_a_module_running_in_the_background_is_waited_for_not_seen_half_made(tmp_path):
    """The plot may come before the background thread has run matplotlib: its first use in
    another thread waits for the module's code to finish instead of reading a half-made one."""
    (tmp_path / "slow_module_here.py").write_text("import time\nFIRST = 1\ntime.sleep(0.5)\nLAST = 2\n")
    code = textwrap.dedent("""
        import sys, time
        from purejaxdqn.host import hardware
        with hardware.deferred_imports(["slow_module_here"]):
            import slow_module_here
        thread = hardware.run_deferred(["slow_module_here"])
        time.sleep(0.1)  # the background thread is inside the module's sleep now
        assert slow_module_here.LAST == 2 and slow_module_here.FIRST == 1
        thread.join()
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
