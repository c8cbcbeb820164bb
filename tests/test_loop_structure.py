"""experiments/loop_structure.py reads compiled loops correctly, and the trainer's chunk program
runs no conditional and no loop of traced trip count per env step (the CPU stand-in for a GPU's
host round trips, issue #19): every preset's static chunk has none in its main loop nest, the
branching one (`--loop branching`, the A/B baseline) has its update and eval branches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from purejaxdqn.config import PRESETS
from purejaxdqn.envs import is_host_id

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))
import loop_structure


def compiled_loop(num_conds: int, traced_loop: bool = False, inner: int = 0):
    def body(c, i):
        for k in range(num_conds):  # each branch: a sin (one op at least), else unchanged
            c = jax.lax.cond((i + k) % 3 == 0, jnp.sin, lambda x: x, c)
        if traced_loop:  # a fori_loop of traced length: a while without a known trip count
            c = jax.lax.fori_loop(0, i % 4, lambda j, x: jnp.cos(x) * 1.1, c)
        if inner:  # a scan of static length: a while of known trip count `inner`
            c = jax.lax.scan(lambda x, _: (jnp.tanh(x) * 1.3 + 0.5, None), c, None, length=inner)[0]
        return c * 1.5 + 1.0, None

    return jax.jit(lambda c: jax.lax.scan(body, c, jnp.arange(50))[0]).lower(jnp.ones(4)).compile()


def test_counts_the_conditionals_of_the_main_loop_and_their_branches():
    for n in (0, 1, 3):
        report = loop_structure.loop_structure(compiled_loop(n))
        assert report["conditionals"] == n and report["body_by_opcode"].get("conditional", 0) == n
        assert all(len(b) == 2 and b[0] >= 1 for b in report["branch_ops"])
        assert report["body_ops"] >= n + 1
        assert report["per_env_step"]["conditionals"] == [n, n] and report["per_env_step"]["traced_loops"] == [0, 0]
        assert report["main_loop"]["trip_count"] == 50 and report["env_steps"] == 50
        lo, hi = report["per_env_step"]["ops"]
        assert (lo < hi) == (n > 0) and lo >= n + 1  # a taken branch launches more than an untaken one


def test_counts_loops_of_traced_trip_count_and_multiplies_known_ones():
    traced = loop_structure.loop_structure(compiled_loop(0, traced_loop=True))
    assert traced["per_env_step"]["traced_loops"] == [1, 1] and traced["per_env_step"]["conditionals"] == [0, 0]
    assert [loop["trip_count"] for loop in traced["loops"]] == [50, None]
    plain, nested = (loop_structure.loop_structure(compiled_loop(0, inner=k)) for k in (0, 7))
    (inner,) = [loop for loop in nested["loops"] if loop["depth"] == 1]
    assert inner["trip_count"] == 7 and inner["starts_per_chunk"] == [50, 50] and inner["main_nest"]
    assert nested["per_env_step"]["ops"][0] >= plain["per_env_step"]["ops"][0] + 7  # the inner body, 7 times
    assert nested["per_env_step"]["traced_loops"] == [0, 0]


def test_opcode_of_hlo_lines():
    assert loop_structure.opcode("  %add.1 = f32[4]{0} add(f32[4]{0} %a, f32[4]{0} %b)") == "add"
    assert loop_structure.opcode("  %w = (s32[], f32[4]{0}) while((s32[], f32[4]{0}) %t), condition=%c, body=%b") == "while"
    assert loop_structure.opcode("HloModule jit_f") is None
    line = '%w = (s32[]) while(%t), condition=%c, body=%b, backend_config={"known_trip_count":{"n":"2500"}}'
    assert loop_structure.trip_count(line) == 2500 and loop_structure.trip_count(line.split(", backend")[0]) is None


# The trainer's programs, compiled by runner.compile_program in two processes at once (the CPU
# has two cores; a MinAtar chunk takes ~10-30 s to compile here). Buffers are capped at 5,000
# rows (structure unchanged) and XLA's machine code is built at -O0 (`--fast-compile`: the
# optimized HLO read is the same).
HALVES = (
    ["breakout", "freeway", "freeway,original,minatar-paper", "reference", "cartpole", "minigrid-empty",
     "minigrid-doorkey", "snake", "atari,machado"],
    ["asterix", "space-invaders", "acrobot", "mountaincar", "rainbow", "reference:branching", "craftax-classic", "seaquest",
     "atari"],
)
SPECS = [spec for half in HALVES for spec in half if ":" not in spec]


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("structure")
    assert sorted(SPECS) == sorted(loop_structure.default_presets()), "a preset the test misses"
    compiled = {name for name, overrides in PRESETS.items() if not is_host_id(overrides.get("env_id", ""))}  # host presets: no chunk
    assert compiled <= {name for spec in SPECS for name in spec.split(",")}
    script = str(ROOT / "experiments" / "loop_structure.py")
    commands = [[sys.executable, script, "--presets", *half, "--fast-compile", "--buffer-size", "5000",
                 "--out", str(out / f"{i}.json")] for i, half in enumerate(HALVES)]  # fmt: skip
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in commands]
    reports = {}
    for i, proc in enumerate(procs):
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
        reports.update(json.loads((out / f"{i}.json").read_text())["programs"])
    return reports


@pytest.mark.parametrize("preset", SPECS)
def test_the_static_chunk_of_every_preset_runs_no_conditional_and_no_traced_loop_per_env_step(programs, preset):
    r = programs[preset]
    assert r["loop"] == "static", f"{preset}: the preset's chunk is not static ({r['schedule']})"
    assert r["covers_chunk"] and r["env_steps"] == r["iterations_per_chunk"]
    assert r["per_env_step"]["conditionals"] == [0, 0], loop_structure.summary_line(preset, r)
    assert r["per_env_step"]["traced_loops"] == [0, 0], loop_structure.summary_line(preset, r)
    main = [loop for loop in r["loops"] if loop["main_nest"]]
    assert all(loop["trip_count"] is not None for loop in main) and r["per_env_step"]["ops"][0] > 10


def test_the_branching_chunk_decides_updates_and_evaluations_per_env_step(programs):
    # The reference steps 10 envs per update round: a lax.cond for the update and one for the
    # evaluation, each env step; the evaluation's loop (traced trip count) in the eval branch.
    # (A MinAtar preset's branching chunk has a loop of traced trip count for its updates
    # instead: `loop_structure.py --presets breakout:branching`.)
    r = programs["reference --loop branching"]
    assert r["loop"] == "branching" and r["main_loop"]["trip_count"] == r["iterations_per_chunk"] == 2500
    assert r["per_env_step"]["conditionals"] == [2, 2] and r["per_env_step"]["traced_loops"] == [0, 1]
    assert sorted(max(b) > 10 for b in r["branch_ops"]) == [True, True]  # update, evaluation


@pytest.mark.parametrize("learning_starts, branches", [(1_000, 1), (10_000, 2)])
def test_chunks_shorter_than_an_eval_interval_stay_static_with_branches_once_per_chunk(learning_starts, branches):
    """reference over 100k env steps: 20 chunks of 5k, evaluations every 25k. The chunk is the
    static layout; outside its main loop nest, once per chunk, run the evaluation that may be
    due and, where learning_starts (10k) leaves the first chunk without updates, the branch
    between a warm-up chunk (no update rounds, fewer ops) and a learning one."""
    from purejaxdqn.config import from_preset

    config = from_preset("reference").replace(total_steps=100_000, buffer_size=5_000, learning_starts=learning_starts)
    report = loop_structure.chunk_report(config)
    assert report["loop"] == "static" and "eval_at_end=True" in report["schedule"] and report["covers_chunk"]
    assert report["per_env_step"]["conditionals"] == [0, 0] and report["per_env_step"]["traced_loops"] == [0, 0]
    assert report["once_per_chunk"]["conditionals"] == [branches, branches]
    if branches == 2:  # the warm-up branch: the same env steps with no update, well under the learning chunk's ops
        assert report["once_per_chunk"]["ops"][1] < 0.75 * report["per_env_step"]["ops"][0] * config.iterations_per_chunk
